// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IModelRegistry} from "./IModelRegistry.sol";
import {INodeRegistry} from "./INodeRegistry.sol";

/// @title IPipelineJobs
/// @notice Pipelined jobs: one model's segments run by different staked nodes. The node of
///         segment i commits the hashes of its output activation (keccak256 of the activation
///         blob, and the boundary hash (SegmentProofs) of the circuit's fixed-point shadow); the node
///         of segment i + 1 must start from exactly those hashes, segment 0 from the job's input.
///         The last segment's blob hash is the job's result hash. Any committed segment can be
///         spot-checked: a challenger with a bond demands a proof, verified by the segment's
///         registered verifier on the committed boundary hashes; a missing proof slashes the
///         segment's bond. Each node is paid its segment's fee; a stalled segment ends the job
///         and refunds the unfinished part. See docs/pipeline.md.
interface IPipelineJobs {
    // ---------------------------------------------------------------- types

    /// @notice Where a pipelined job is.
    enum JobStatus {
        /// @notice No such job.
        None,
        /// @notice Segments are being claimed and committed in order.
        Active,
        /// @notice Every segment committed; the challenge window runs from `endedAt`.
        Completed,
        /// @notice A segment was not committed in time; the window for challenges of the
        ///         committed part runs from `endedAt`.
        Stalled,
        /// @notice Money credited (terminal).
        Finalized
    }

    /// @notice Where one segment of a job is.
    enum SegmentStatus {
        /// @notice Nobody has claimed it.
        Open,
        /// @notice A node claimed it and bonded `segmentBond`.
        Claimed,
        /// @notice Its node committed its output hashes.
        Committed,
        /// @notice A challenger demands a proof by `proofDeadline`.
        Challenged,
        /// @notice A valid proof was posted on chain; it cannot be challenged again.
        Proven,
        /// @notice Its bond was slashed (proof missing, or the segment stalled).
        Slashed
    }

    /// @notice What a payer asks for.
    struct PipelineRequest {
        /// @notice The registered model; every segment must have a verifier.
        bytes32 modelId;
        /// @notice keccak256 of the canonical input bytes (the blob name of the input).
        bytes32 inputHash;
        /// @notice the boundary hash (SegmentProofs) of the input as segment 0's circuit reads it.
        uint256 inputBoundaryHash;
        /// @notice One fee per segment, in wei; msg.value must equal their sum.
        uint96[] fees;
    }

    /// @notice A job's record (5 slots).
    struct PipelineJob {
        /// @notice Who paid; refunds and slash shares are credited to it.
        address payer;
        /// @notice How many segments the model has (1..64).
        uint8 segmentCount;
        /// @notice How many segments are committed (segments 0..committed-1).
        uint8 committed;
        /// @notice The first slashed committed segment, or `segmentCount` when none is.
        uint8 faultyFrom;
        /// @notice Challenges waiting for a proof.
        uint8 openChallenges;
        /// @notice Where the job is.
        JobStatus status;
        /// @notice Segment `committed` must be committed by then (unix seconds).
        uint40 stepDeadline;
        /// @notice When the job became Completed or Stalled (unix seconds); zero while Active.
        uint40 endedAt;
        /// @notice Fees not yet credited to anyone, in wei.
        uint128 escrow;
        /// @notice The model.
        bytes32 modelId;
        /// @notice keccak256 of the canonical input.
        bytes32 inputHash;
        /// @notice Boundary hash (SegmentProofs) of the input.
        uint256 inputBoundaryHash;
    }

    /// @notice One segment of a job (5 slots).
    struct SegmentSlot {
        /// @notice The node that claimed it (zero while Open).
        address node;
        /// @notice Its fee, in wei.
        uint96 fee;
        /// @notice Who challenged it (zero when never challenged).
        address challenger;
        /// @notice The node's bond still held, in wei (zero once released or slashed).
        uint96 bond;
        /// @notice The challenger's bond still held, in wei.
        uint96 challengeBond;
        /// @notice When it was committed (unix seconds).
        uint40 committedAt;
        /// @notice When the proof demanded by a challenge is due (unix seconds).
        uint40 proofDeadline;
        /// @notice Where it is.
        SegmentStatus status;
        /// @notice keccak256 of the output activation blob (the last segment: the result hash).
        bytes32 outputHash;
        /// @notice Boundary hash (SegmentProofs) of the circuit's output.
        uint256 outputBoundaryHash;
    }

    /// @notice What a node commits for its segment.
    struct SegmentCommit {
        /// @notice The blob hash it started from (the previous output, or the job's input).
        bytes32 inputHash;
        /// @notice The boundary hash it started from.
        uint256 inputBoundaryHash;
        /// @notice keccak256 of its output blob.
        bytes32 outputHash;
        /// @notice Boundary hash (SegmentProofs) of its circuit output.
        uint256 outputBoundaryHash;
    }

    // ---------------------------------------------------------------- events

    /// @notice `payer` submitted pipelined job `jobId` of `modelId` with `escrow` wei of fees.
    event PipelineJobSubmitted(
        uint256 indexed jobId,
        address indexed payer,
        bytes32 indexed modelId,
        bytes32 inputHash,
        uint256 inputBoundaryHash,
        uint256 segmentCount,
        uint256 escrow,
        uint256 stepDeadline,
        bytes input
    );
    /// @notice `node` claimed segment `index` of `jobId` with a bond of `bond` wei.
    event SegmentClaimed(uint256 indexed jobId, uint256 indexed index, address indexed node, uint256 bond);
    /// @notice `node` committed segment `index`; the next segment is due at `nextDeadline`.
    event SegmentCommitted(
        uint256 indexed jobId,
        uint256 indexed index,
        address indexed node,
        bytes32 outputHash,
        uint256 outputBoundaryHash,
        uint256 nextDeadline
    );
    /// @notice The last segment committed: `resultHash` is the job's result.
    event PipelineCompleted(uint256 indexed jobId, bytes32 resultHash, uint256 challengeWindowEnd);
    /// @notice Segment `index` was not committed by its deadline; `node` (zero: unclaimed) lost
    ///         its bond to the payer.
    event PipelineStalled(uint256 indexed jobId, uint256 indexed index, address indexed node, uint256 slashed);
    /// @notice `challenger` demands a proof of segment `index` by `proofDeadline`.
    event SegmentChallenged(
        uint256 indexed jobId, uint256 indexed index, address indexed challenger, uint256 proofDeadline
    );
    /// @notice A valid proof of segment `index` was posted by `prover`.
    event SegmentProven(uint256 indexed jobId, uint256 indexed index, address indexed prover);
    /// @notice Segment `index`'s node was slashed `amount` wei for a missing proof.
    event SegmentSlashed(uint256 indexed jobId, uint256 indexed index, address indexed node, uint256 amount);
    /// @notice The job's money was credited: `paid` to nodes, `refunded` to the payer.
    ///         `resultValid`: it completed and no segment was slashed.
    event PipelineFinalized(uint256 indexed jobId, bool resultValid, uint256 paid, uint256 refunded);
    /// @notice `account` withdrew `amount` wei.
    event Withdrawal(address indexed account, uint256 amount);

    // ---------------------------------------------------------------- errors

    /// @notice An address that must be set is zero.
    error ZeroAddress();
    /// @notice A window or bond that must be positive is zero.
    error ZeroParameter();
    /// @notice `duration` seconds exceed the `maximum`.
    error DurationTooLong(uint256 duration, uint256 maximum);
    /// @notice `amount` does not fit in uint96.
    error AmountTooLarge(uint256 amount);
    /// @notice `modelId` is not registered.
    error ModelNotRegistered(bytes32 modelId);
    /// @notice Segment `index` of `modelId` has no verifier, so it could not be spot-checked.
    error SegmentHasNoVerifier(bytes32 modelId, uint256 index);
    /// @notice `given` fees for a model of `expected` segments.
    error FeeCountMismatch(uint256 expected, uint256 given);
    /// @notice msg.value `given` differs from the `expected` amount.
    error WrongValue(uint256 expected, uint256 given);
    /// @notice Segment `index` has a zero fee.
    error ZeroFee(uint256 index);
    /// @notice The input hash is zero.
    error ZeroInputHash();
    /// @notice The inline input does not hash to the request's `inputHash`.
    error InputHashMismatch(bytes32 expected, bytes32 actual);
    /// @notice `value` is not an element of BN254's scalar field.
    error BoundaryHashOutOfField(uint256 value);
    /// @notice `jobId` does not exist.
    error UnknownJob(uint256 jobId);
    /// @notice `jobId` is `status`, which does not allow this.
    error WrongJobStatus(uint256 jobId, JobStatus status);
    /// @notice `index` is not below the job's `count` segments.
    error SegmentOutOfRange(uint256 jobId, uint256 index, uint256 count);
    /// @notice Segment `index` of `jobId` is `status`, which does not allow this.
    error WrongSegmentStatus(uint256 jobId, uint256 index, SegmentStatus status);
    /// @notice `node` has not registered in the NodeRegistry.
    error NodeNotRegistered(address node);
    /// @notice `node`'s bonded stake `stake` (stake minus unbonding) is below `minimum`.
    error NodeNotStaked(address node, uint256 stake, uint256 minimum);
    /// @notice `node` does not serve `modelId`.
    error ModelNotServed(address node, bytes32 modelId);
    /// @notice `caller` is not the node that claimed segment `index`.
    error NotSegmentNode(uint256 jobId, uint256 index, address caller);
    /// @notice Segment `index` comes before `expected`, the next segment to commit.
    error SegmentOutOfOrder(uint256 jobId, uint256 index, uint256 expected);
    /// @notice The segment's `deadline` has passed.
    error StepDeadlinePassed(uint256 jobId, uint256 deadline);
    /// @notice The step deadline `deadline` has not passed yet.
    error StepDeadlineNotPassed(uint256 jobId, uint256 deadline);
    /// @notice Wrong link: segment `index` claims to start from blob hash `given`, but the
    ///         previous output (or the input) is `expected`.
    error InputHashLinkMismatch(uint256 jobId, uint256 index, bytes32 expected, bytes32 given);
    /// @notice Wrong link: segment `index` claims to start from boundary hash `given`, but the
    ///         previous output boundary (or the input's) is `expected`.
    error BoundaryLinkMismatch(uint256 jobId, uint256 index, uint256 expected, uint256 given);
    /// @notice The output blob hash is zero.
    error ZeroOutputHash(uint256 jobId, uint256 index);
    /// @notice The challenge window closed at `windowEnd`.
    error ChallengeWindowClosed(uint256 jobId, uint256 windowEnd);
    /// @notice The challenge window is open until `windowEnd`.
    error ChallengeWindowOpen(uint256 jobId, uint256 windowEnd);
    /// @notice `count` challenges of the job still wait for a proof.
    error ChallengesOpen(uint256 jobId, uint256 count);
    /// @notice The proof of segment `index` was due at `deadline`, which has passed.
    error ProofDeadlinePassed(uint256 jobId, uint256 index, uint256 deadline);
    /// @notice The proof of segment `index` is due at `deadline`, which has not passed.
    error ProofDeadlineNotPassed(uint256 jobId, uint256 index, uint256 deadline);
    /// @notice `verifier` rejected the proof of segment `index`.
    error ProofRejected(uint256 jobId, uint256 index, address verifier);
    /// @notice The proof of segment `index` commits to boundaries whose hashes (`inputHash`,
    ///         `outputHash`) are not the committed ones.
    error ProofBoundaryMismatch(uint256 jobId, uint256 index, uint256 inputHash, uint256 outputHash);
    /// @notice `account` has nothing to withdraw.
    error NothingToWithdraw(address account);
    /// @notice Sending `amount` wei to `to` failed.
    error TransferFailed(address to, uint256 amount);

    // ---------------------------------------------------------------- payer

    /// @notice Submits a pipelined job, escrowing msg.value (= Σ fees). `input` is the
    ///         canonical input inline (emitted only), or empty when it is in the blob store.
    /// @return jobId The new job's id (ids start at 1).
    function submitJob(PipelineRequest calldata request, bytes calldata input) external payable returns (uint256 jobId);

    // ---------------------------------------------------------------- nodes

    /// @notice Claims segment `index` of an Active job with msg.value == `segmentBond`. The
    ///         caller must be registered and staked in the NodeRegistry and serve the model.
    function claimSegment(uint256 jobId, uint256 index) external payable;

    /// @notice Commits segment `index` (the next one in order) by its claimer, before the step
    ///         deadline. The commit's input hashes must equal the previous segment's output
    ///         hashes (segment 0: the job's input hashes).
    function commitSegment(uint256 jobId, uint256 index, SegmentCommit calldata commit) external;

    // ---------------------------------------------------------------- anyone

    /// @notice Demands a proof of committed segment `index` with msg.value == `challengeBond`.
    ///         Open while the job is Active, then for `challengeWindow` after it ends.
    function challengeSegment(uint256 jobId, uint256 index) external payable;

    /// @notice Posts the proof of a challenged segment, checked by the segment's registered
    ///         verifier with instances [input boundary hash, output boundary hash] as committed.
    ///         A rejected proof reverts and changes nothing. The challenger's bond goes to the
    ///         segment's node.
    function proveSegment(uint256 jobId, uint256 index, bytes calldata proof) external;

    /// @notice After a challenged segment's proof deadline: slashes its bond, half to the
    ///         challenger (with its bond back), half to the payer. Later segments then count as
    ///         built on a bad input: their fees go back to the payer at finalize.
    function slashUnproven(uint256 jobId, uint256 index) external;

    /// @notice After the step deadline of an Active job: ends it (Stalled); the stalled
    ///         segment's claimer, if any, loses its bond to the payer.
    function expire(uint256 jobId) external;

    /// @notice After the challenge window of a Completed or Stalled job with no open
    ///         challenge: credits each segment before the first fault (and before the stall)
    ///         its fee and bond, refunds the other fees to the payer and returns the other bonds.
    function finalize(uint256 jobId) external;

    /// @notice Sends the caller everything credited to it.
    function withdraw() external;

    // ---------------------------------------------------------------- views

    /// @notice The ModelRegistry read for segments and verifiers.
    function modelRegistry() external view returns (IModelRegistry);
    /// @notice The NodeRegistry checked for node stakes and served models.
    function nodeRegistry() external view returns (INodeRegistry);
    /// @notice Exact bond of a segment claim, in wei.
    function segmentBond() external view returns (uint256);
    /// @notice Exact bond of a challenge, in wei.
    function challengeBond() external view returns (uint256);
    /// @notice Seconds a segment has to be committed after the previous step.
    function segmentWindow() external view returns (uint256);
    /// @notice Seconds after a job ends during which its segments can be challenged.
    function challengeWindow() external view returns (uint256);
    /// @notice Seconds a challenged node has to post its proof.
    function proofWindow() external view returns (uint256);
    /// @notice How many jobs were submitted (the last id).
    function jobCount() external view returns (uint256);
    /// @notice Wei credited to `account`, withdrawable.
    function withdrawable(address account) external view returns (uint256);
    /// @notice Job `jobId`'s record (reverts UnknownJob).
    function getJob(uint256 jobId) external view returns (PipelineJob memory);
    /// @notice Segment `index` of job `jobId` (reverts UnknownJob, SegmentOutOfRange).
    function getSegment(uint256 jobId, uint256 index) external view returns (SegmentSlot memory);
}
