// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IJobMarket} from "./IJobMarket.sol";
import {IModelRegistry} from "./IModelRegistry.sol";

/// @title IZkVerification
/// @notice Verification of zk jobs (zk-spot, zk-full) for the JobMarket: the boundary hashes a
///         node commits, the segment the chain challenges, the ezkl proofs checked against the
///         committed hashes by each segment's registered verifier, off-chain attestation, and
///         disputes. The market holds the money and the job's status; this module tells it when
///         a zk job may be finalized and asks it to slash. See docs/protocol.md, "Verification".
interface IZkVerification {
    // ---------------------------------------------------------------- types

    /// @notice What a requester adds to a zk job's request (`JobMarket.submitZkJob`).
    struct ZkParams {
        /// @notice The first boundary hash: the hash of the KZG commitment (SegmentProofs) to the job's input quantized
        ///         as segment 0's circuit reads it (computed off chain from the model's public
        ///         settings). The node's committed boundary hashes must start with it.
        uint256 inputBoundaryHash;
        /// @notice True: proofs are checked off chain by an attester, and on chain only when
        ///         the attester rejects them or someone disputes its attestation.
        bool attested;
    }

    /// @notice An attester's verdict on a job's proofs.
    enum Attestation {
        None,
        Valid,
        Invalid
    }

    /// @notice What a dispute is about.
    enum DisputeKind {
        /// @notice "The attested proofs are not valid": resolved on chain by posting them.
        Attestation,
        /// @notice "The last boundary hash is not the boundary hash of the committed output":
        ///         resolved by the owner (arbitration), dismissed if it does not rule in time.
        Output
    }

    /// @notice How a dispute ended.
    enum DisputeOutcome {
        /// @notice The disputer was right; its bond is returned (the node is slashed).
        Upheld,
        /// @notice The disputer was wrong; its bond goes to the node.
        Rejected,
        /// @notice No ruling (arbitration timed out, or the job was slashed for another
        ///         reason); the bond is returned.
        Dismissed
    }

    /// @notice A zk job's verification record (4 slots).
    struct ZkJob {
        /// @notice ZkParams.inputBoundaryHash from the request.
        uint256 inputBoundaryHash;
        /// @notice keccak256(abi.encodePacked(boundaryHashes)) of the commit; zero before it.
        bytes32 boundaryRoot;
        /// @notice Bit i set: segment i must be proven on chain. Zero until the challenge is
        ///         drawn (zk-spot); every segment from the commit on (zk-full).
        uint64 requiredMask;
        /// @notice Bit i set: segment i's proof passed its verifier on chain.
        uint64 provenMask;
        /// @notice The block whose hash draws the challenge (commit block + challengeDelay).
        uint64 seedBlock;
        /// @notice Latest time (unix seconds) for the proofs (or the attestation).
        uint40 proofDeadline;
        /// @notice The model's number of segments k (the commit carries k + 1 hashes).
        uint8 segmentCount;
        /// @notice zk-full (every segment) rather than zk-spot (one challenged segment).
        bool full;
        /// @notice Proofs checked off chain by an attester (ZkParams.attested).
        bool attested;
        /// @notice The attester that gave the verdict (zero before it).
        address attester;
        /// @notice When the verdict was given.
        uint40 attestedAt;
        /// @notice The verdict.
        Attestation attestation;
        /// @notice An attested job whose proofs must now be posted on chain (the attester
        ///         said Invalid, or its Valid was disputed).
        bool onChainRequired;
    }

    /// @notice An open dispute.
    struct Dispute {
        /// @notice Who disputed (zero: no dispute open).
        address disputer;
        /// @notice The bond it posted, in wei.
        uint96 bond;
        /// @notice When (unix seconds).
        uint40 openedAt;
    }

    // ---------------------------------------------------------------- events

    /// @notice Job `jobId` asks for zk verification of `modelId` (`segmentCount` segments).
    event ZkJobOpened(
        uint256 indexed jobId,
        bytes32 indexed modelId,
        IJobMarket.VerificationMode mode,
        uint256 inputBoundaryHash,
        bool attested,
        uint256 segmentCount
    );
    /// @notice The node committed `boundaryHashes` (k + 1 boundary hashes) for job `jobId`;
    ///         the challenge is drawn from the hash of `seedBlock`; proofs are due by `proofDeadline`.
    event BoundaryHashesCommitted(
        uint256 indexed jobId, uint256[] boundaryHashes, uint256 seedBlock, uint256 proofDeadline
    );
    /// @notice Segment `segment` of job `jobId` must be proven (drawn from `seed`).
    event SegmentChallenged(uint256 indexed jobId, uint256 segment, bytes32 seed);
    /// @notice The hash of `seedBlock` was out of reach (over 256 blocks old) when the challenge
    ///         of job `jobId` was drawn: every segment must be proven.
    event ChallengeSeedExpired(uint256 indexed jobId, uint256 seedBlock);
    /// @notice Segment `segment`'s proof of job `jobId` passed its verifier (posted by `submitter`).
    event SegmentProven(uint256 indexed jobId, uint256 segment, address indexed submitter);
    /// @notice The node of job `jobId` published its proofs at `uri` (content-addressed blob).
    event ProofPublished(uint256 indexed jobId, address indexed node, string uri);
    /// @notice `attester` judged the proofs of job `jobId` `attestation`.
    event Attested(uint256 indexed jobId, address indexed attester, Attestation attestation);
    /// @notice `disputer` opened a `kind` dispute on job `jobId` with `bond` wei; it must be
    ///         resolved by `resolveBy` (a proof deadline, or the end of arbitration).
    event DisputeOpened(
        uint256 indexed jobId, DisputeKind kind, address indexed disputer, uint256 bond, uint256 resolveBy
    );
    /// @notice The `kind` dispute on job `jobId` ended with `outcome`; its bond went to `bondTo`.
    event DisputeResolved(uint256 indexed jobId, DisputeKind kind, DisputeOutcome outcome, address bondTo);
    /// @notice Job `jobId` had not proven `requiredMask` (only `provenMask`) by its deadline.
    event ProofDeadlineMissed(uint256 indexed jobId, uint64 requiredMask, uint64 provenMask);
    /// @notice `attester` was added (`allowed`) to or removed from the attester set.
    event AttesterSet(address indexed attester, bool allowed);
    /// @notice `account` withdrew `amount` wei of bonds owed to it.
    event Withdrawal(address indexed account, uint256 amount);

    // ---------------------------------------------------------------- errors

    /// @notice `caller` is not the market.
    error NotMarket(address caller);
    /// @notice `caller` is not an attester.
    error NotAttester(address caller);
    /// @notice `caller` is not the node of job `jobId`.
    error NotNode(uint256 jobId, address caller);
    /// @notice An address parameter is zero.
    error ZeroAddress();
    /// @notice A duration parameter is above `maximum`.
    error DurationTooLong(uint256 duration, uint256 maximum);
    /// @notice The proof window must be positive.
    error ZeroProofWindow();
    /// @notice `delay` blocks is outside [1, `maximum`].
    error ChallengeDelayOutOfRange(uint256 delay, uint256 maximum);
    /// @notice The input boundary hash `value` is not an element of BN254's scalar field.
    error InputBoundaryHashOutOfField(uint256 value);
    /// @notice Segment `index` of `modelId` has no verifier, so it cannot be proven.
    error SegmentHasNoVerifier(bytes32 modelId, uint256 index);
    /// @notice Job `jobId` is not a zk job.
    error NotZkJob(uint256 jobId);
    /// @notice Job `jobId` has no committed boundary hashes yet.
    error NotCommitted(uint256 jobId);
    /// @notice Job `jobId` is not Committed or Disputed in the market (`status`).
    error JobNotActive(uint256 jobId, IJobMarket.JobStatus status);
    /// @notice A commit for job `jobId` must carry `expected` (k + 1) boundary hashes, not `actual`.
    error BoundaryCountMismatch(uint256 jobId, uint256 expected, uint256 actual);
    /// @notice The first committed hash `actual` is not the request's input boundary hash `expected`.
    error InputBoundaryMismatch(uint256 jobId, uint256 expected, uint256 actual);
    /// @notice The boundary hashes given hash to `given`, not to the committed `committed`.
    error BoundaryHashesMismatch(uint256 jobId, bytes32 committed, bytes32 given);
    /// @notice Job `jobId` is zk-full: it has no challenge to draw.
    error NotSpotCheck(uint256 jobId);
    /// @notice The challenge of job `jobId` is drawn from the hash of `seedBlock`, which does
    ///         not exist yet at `currentBlock`.
    error ChallengeNotReady(uint256 jobId, uint256 seedBlock, uint256 currentBlock);
    /// @notice The challenge of job `jobId` is already drawn (`requiredMask`).
    error ChallengeAlreadyDrawn(uint256 jobId, uint64 requiredMask);
    /// @notice Segment `segment` is not one job `jobId` must prove (`requiredMask`).
    error SegmentNotRequired(uint256 jobId, uint256 segment, uint64 requiredMask);
    /// @notice Segment `segment` of job `jobId` is already proven.
    error SegmentAlreadyProven(uint256 jobId, uint256 segment);
    /// @notice `verifier` rejected the proof of segment `segment` of job `jobId` against the
    ///         committed boundary hashes.
    error ProofRejected(uint256 jobId, uint256 segment, address verifier);
    /// @notice The proof of segment `segment` of job `jobId` commits to boundaries whose hashes
    ///         (`inputHash`, `outputHash`) are not the committed ones.
    error ProofBoundaryMismatch(uint256 jobId, uint256 segment, uint256 inputHash, uint256 outputHash);
    /// @notice The proof deadline of job `jobId` (`deadline`) has passed.
    error ProofDeadlinePassed(uint256 jobId, uint256 deadline);
    /// @notice The proof deadline of job `jobId` (`deadline`) has not passed.
    error ProofDeadlineNotPassed(uint256 jobId, uint256 deadline);
    /// @notice Job `jobId`'s verification is already satisfied.
    error AlreadyVerified(uint256 jobId);
    /// @notice Job `jobId` did not ask for attestation.
    error NotAttestedJob(uint256 jobId);
    /// @notice Job `jobId` already has the verdict `attestation`.
    error AlreadyAttested(uint256 jobId, Attestation attestation);
    /// @notice Job `jobId` has no undisputed Valid attestation to dispute.
    error NoValidAttestation(uint256 jobId);
    /// @notice The dispute window of job `jobId` ended at `endedAt`.
    error DisputeWindowOver(uint256 jobId, uint256 endedAt);
    /// @notice A `kind` dispute is already open on job `jobId`.
    error DisputeAlreadyOpen(uint256 jobId, DisputeKind kind);
    /// @notice No `kind` dispute is open on job `jobId`.
    error NoOpenDispute(uint256 jobId, DisputeKind kind);
    /// @notice A dispute bond must be exactly `required` wei, not `sent`.
    error WrongBond(uint256 sent, uint256 required);
    /// @notice The arbitration of job `jobId`'s output dispute runs until `endsAt`.
    error ArbitrationNotOver(uint256 jobId, uint256 endsAt);
    /// @notice `account` has nothing to withdraw.
    error NothingToWithdraw(address account);
    /// @notice Sending `amount` wei to `to` failed.
    error TransferFailed(address to, uint256 amount);

    // ---------------------------------------------------------------- market hooks

    /// @notice Records a zk job at submit (market only). Reverts unless every segment of
    ///         `modelId` has a verifier and the input boundary hash is a field element.
    /// @param jobId The new job.
    /// @param modelId Its model.
    /// @param mode ZkSpot or ZkFull (the market checked).
    /// @param params The requester's zk parameters.
    function onSubmit(uint256 jobId, bytes32 modelId, IJobMarket.VerificationMode mode, ZkParams calldata params)
        external;

    /// @notice Records the node's boundary hashes at commit (market only): k + 1 of them, the
    ///         first equal to the request's input boundary hash. Starts the proof deadline and
    ///         fixes the block whose hash will draw the challenge.
    /// @param jobId The job being committed.
    /// @param boundaryHashes h_0..h_k: segment 0's input hash, then each segment's output hash.
    function onCommit(uint256 jobId, uint256[] calldata boundaryHashes) external;

    /// @notice Whether the market may finalize zk job `jobId` (its window being over): every
    ///         required segment proven on chain, or an undisputed Valid attestation whose
    ///         dispute window is over.
    function canFinalize(uint256 jobId) external view returns (bool);

    // ---------------------------------------------------------------- anyone

    /// @notice Draws the challenged segment of zk-spot job `jobId` once the seed block exists:
    ///         keccak256(abi.encode(blockhash(seedBlock), jobId)) % k; every segment when that
    ///         hash is out of reach (over 256 blocks old). Anyone; `submitProof` and `attest`
    ///         draw it too when nobody has.
    /// @return requiredMask The segments that must be proven (one bit, or all).
    function challenge(uint256 jobId) external returns (uint64 requiredMask);

    /// @notice Posts the proof of segment `segment` of job `jobId`, by its proof deadline.
    ///         Anyone may post it (a proof is public data). `boundaryHashes` must be the
    ///         committed ones (checked against the commitment). The proof opens with its
    ///         input and output commitments, whose hashes must be
    ///         `boundaryHashes[segment]` and `boundaryHashes[segment + 1]`
    ///         (ProofBoundaryMismatch; see SegmentProofs); the segment's verifier must then
    ///         accept it (ProofRejected otherwise).
    function submitProof(uint256 jobId, uint256 segment, bytes calldata proof, uint256[] calldata boundaryHashes)
        external;

    /// @notice After the proof deadline of job `jobId`, with its verification not satisfied:
    ///         the market slashes the node (whole escrow back to the payer, the payer's share of
    ///         the collateral as compensation, the rest to msg.sender). Anyone.
    function slashUnproven(uint256 jobId) external;

    /// @notice Disputes the Valid attestation of job `jobId` within `disputeWindow` of it, with
    ///         a bond of exactly `disputeBond`: the required proofs must then be posted on chain
    ///         within `proofWindow`, or the node is slashed. Bond: back to the disputer if the
    ///         node is slashed, to the node if the proofs verify.
    function disputeAttestation(uint256 jobId) external payable;

    /// @notice Disputes that job `jobId`'s last boundary hash is the boundary hash of its
    ///         committed output, before the job's challenge window ends, with a bond of exactly
    ///         `disputeBond`. The owner rules (`resolveOutputDispute`) within `arbitrationPeriod`.
    function disputeOutput(uint256 jobId) external payable;

    /// @notice Dismisses an output dispute the owner did not rule on within
    ///         `arbitrationPeriod` (bond back to the disputer). Anyone.
    function dismissOutputDispute(uint256 jobId) external;

    /// @notice Sends msg.sender the bonds owed to it.
    function withdraw() external;

    // ---------------------------------------------------------------- node

    /// @notice The node of job `jobId` announces where its proofs are (for attesters and
    ///         auditors). Records nothing but the event.
    function publishProof(uint256 jobId, string calldata uri) external;

    // ---------------------------------------------------------------- attester

    /// @notice An attester's verdict on job `jobId`'s proofs (checked off chain with ezkl
    ///         against the committed boundary hashes), by the proof deadline. Invalid makes
    ///         on-chain proofs due within `proofWindow`; it slashes nothing by itself.
    function attest(uint256 jobId, bool valid) external;

    // ---------------------------------------------------------------- owner

    /// @notice Adds `attester` to (`allowed`) or removes it from the attester set.
    function setAttester(address attester, bool allowed) external;

    /// @notice Rules on job `jobId`'s output dispute: `upheld` slashes the node (bond back to
    ///         the disputer, which also takes the caller's share of the slash); otherwise the
    ///         bond goes to the node.
    function resolveOutputDispute(uint256 jobId, bool upheld) external;

    // ---------------------------------------------------------------- views

    /// @notice The market this module verifies for.
    function market() external view returns (IJobMarket);
    /// @notice The market's model registry (segments and their verifiers).
    function modelRegistry() external view returns (IModelRegistry);
    /// @notice Seconds after the commit (or an escalation) within which proofs are due.
    function proofWindow() external view returns (uint256);
    /// @notice Blocks between the commit block and the block whose hash draws the challenge.
    function challengeDelay() external view returns (uint256);
    /// @notice Seconds after a Valid attestation within which it can be disputed.
    function disputeWindow() external view returns (uint256);
    /// @notice The bond a dispute must post, in wei.
    function disputeBond() external view returns (uint256);
    /// @notice Seconds the owner has to rule on an output dispute.
    function arbitrationPeriod() external view returns (uint256);
    /// @notice Whether `account` is an attester.
    function isAttester(address account) external view returns (bool);
    /// @notice Bonds owed to `account`, in wei.
    function withdrawable(address account) external view returns (uint256);
    /// @notice Job `jobId`'s verification record (all zero for a job that is not zk).
    function getZkJob(uint256 jobId) external view returns (ZkJob memory);
    /// @notice Job `jobId`'s open `kind` dispute (zero disputer when none).
    function getDispute(uint256 jobId, DisputeKind kind) external view returns (Dispute memory);
    /// @notice The segments job `jobId` must prove as of now: the drawn mask, or the one
    ///         `challenge` would draw in this block; zero while the seed block does not exist.
    function requiredSegments(uint256 jobId) external view returns (uint64);
}
