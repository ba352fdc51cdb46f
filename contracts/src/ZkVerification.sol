// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IJobMarket} from "./interfaces/IJobMarket.sol";
import {IModelRegistry} from "./interfaces/IModelRegistry.sol";
import {IZkVerification} from "./interfaces/IZkVerification.sol";
import {SegmentProofs} from "./libraries/SegmentProofs.sol";

/// @title ZkVerification
/// @notice Verifies the JobMarket's zk jobs. At commit the node posts the k + 1 boundary
///         hashes of its run (hashes of the KZG commitments to the activations between
///         segments, see SegmentProofs);
///         the first must equal the input boundary hash of the request. A block hash that did
///         not exist at commit then picks the segment to prove (zk-spot), or every segment must
///         be proven (zk-full). Proofs are checked by the segment's registered verifier, after
///         checking that they commit to the committed boundaries, or off chain by an attester
///         whose verdict anyone can dispute. A job whose proofs are missing at the deadline is
///         slashed. See docs/protocol.md, "Verification".
/// @dev Holds only dispute bonds: `address(this).balance == Σ open bonds + Σ withdrawable`.
///      The market (fixed at deployment) is trusted; verifiers are called with STATICCALL.
contract ZkVerification is IZkVerification, Ownable2Step, ReentrancyGuardTransient {
    // ---------------------------------------------------------------- constants

    /// @notice BN254's scalar field order: boundary hashes are elements of this field.
    uint256 public constant SNARK_SCALAR_FIELD =
        SegmentProofs.SNARK_SCALAR_FIELD;

    /// @notice Longest window or period the constructor accepts.
    uint256 public constant MAX_DURATION = 365 days;

    /// @notice Largest challenge delay, in blocks: the seed block's hash must stay readable
    ///         (BLOCKHASH reaches 256 blocks back) for a while after it exists.
    uint256 public constant MAX_CHALLENGE_DELAY = 128;

    // ---------------------------------------------------------------- immutables

    /// @inheritdoc IZkVerification
    IJobMarket public immutable market;

    /// @inheritdoc IZkVerification
    IModelRegistry public immutable modelRegistry;

    /// @inheritdoc IZkVerification
    uint256 public immutable proofWindow;

    /// @inheritdoc IZkVerification
    uint256 public immutable challengeDelay;

    /// @inheritdoc IZkVerification
    uint256 public immutable disputeWindow;

    /// @inheritdoc IZkVerification
    uint256 public immutable disputeBond;

    /// @inheritdoc IZkVerification
    uint256 public immutable arbitrationPeriod;

    // ---------------------------------------------------------------- state

    /// @inheritdoc IZkVerification
    mapping(address account => bool allowed) public isAttester;

    /// @inheritdoc IZkVerification
    mapping(address account => uint256 amount) public withdrawable;

    /// @notice Verification records of zk jobs, by market job id.
    mapping(uint256 jobId => ZkJob zkJob) internal _zkJobs;

    /// @notice Open disputes, by job and kind.
    mapping(uint256 jobId => mapping(DisputeKind kind => Dispute dispute)) internal _disputes;

    // ---------------------------------------------------------------- modifiers

    /// @notice Reverts NotMarket unless msg.sender is the market.
    modifier onlyMarket() {
        if (msg.sender != address(market)) revert NotMarket(msg.sender);
        _;
    }

    /// @notice Reverts NotAttester unless msg.sender is an attester.
    modifier onlyAttester() {
        if (!isAttester[msg.sender]) revert NotAttester(msg.sender);
        _;
    }

    // ---------------------------------------------------------------- constructor

    /// @notice Deploys the module for `market_` (bind it there with `setVerification`); the
    ///         deployer owns it (attester set, output arbitration).
    /// @param market_ The JobMarket; the model registry is read from it.
    /// @param proofWindow_ Seconds after a commit (or an escalation) within which proofs are due.
    /// @param challengeDelay_ Blocks between the commit block and the seed block (1..128).
    /// @param disputeWindow_ Seconds after a Valid attestation within which it can be disputed.
    /// @param disputeBond_ Exact bond of a dispute, in wei (fits in uint96).
    /// @param arbitrationPeriod_ Seconds the owner has to rule on an output dispute.
    constructor(
        IJobMarket market_,
        uint256 proofWindow_,
        uint256 challengeDelay_,
        uint256 disputeWindow_,
        uint256 disputeBond_,
        uint256 arbitrationPeriod_
    ) Ownable(msg.sender) {
        if (address(market_) == address(0)) revert ZeroAddress();
        if (proofWindow_ == 0) revert ZeroProofWindow();
        if (proofWindow_ > MAX_DURATION) revert DurationTooLong(proofWindow_, MAX_DURATION);
        if (disputeWindow_ > MAX_DURATION) revert DurationTooLong(disputeWindow_, MAX_DURATION);
        if (arbitrationPeriod_ > MAX_DURATION) revert DurationTooLong(arbitrationPeriod_, MAX_DURATION);
        if (challengeDelay_ == 0 || challengeDelay_ > MAX_CHALLENGE_DELAY) {
            revert ChallengeDelayOutOfRange(challengeDelay_, MAX_CHALLENGE_DELAY);
        }
        if (disputeBond_ > type(uint96).max) revert WrongBond(disputeBond_, type(uint96).max);
        market = market_;
        modelRegistry = market_.modelRegistry();
        proofWindow = proofWindow_;
        challengeDelay = challengeDelay_;
        disputeWindow = disputeWindow_;
        disputeBond = disputeBond_;
        arbitrationPeriod = arbitrationPeriod_;
    }

    // ---------------------------------------------------------------- internal

    /// @notice The record of a zk job with committed boundary hashes (reverts otherwise).
    /// @param jobId The job.
    /// @return z The record's storage.
    function _committed(uint256 jobId) internal view returns (ZkJob storage z) {
        z = _zkJobs[jobId];
        if (z.boundaryRoot == bytes32(0)) {
            if (z.segmentCount == 0) revert NotZkJob(jobId);
            revert NotCommitted(jobId);
        }
    }

    /// @notice The market's job, which must be Committed or Disputed.
    /// @param jobId The job.
    /// @return job The market's record.
    function _activeJob(uint256 jobId) internal view returns (IJobMarket.Job memory job) {
        job = market.getJob(jobId);
        if (job.status != IJobMarket.JobStatus.Committed && job.status != IJobMarket.JobStatus.Disputed) {
            revert JobNotActive(jobId, job.status);
        }
    }

    /// @notice A mask with the low `count` bits set (count ≤ 64, ModelRegistry.MAX_SEGMENTS).
    function _allSegments(uint256 count) internal pure returns (uint64) {
        return uint64((uint256(1) << count) - 1);
    }

    /// @notice The challenge `z` gets in this block (does not store it). Reverts
    ///         ChallengeNotReady while the seed block does not exist.
    /// @param jobId The job (mixed into the draw, so jobs committed together are challenged
    ///        independently).
    /// @param z The job's record (zk-spot, committed, not drawn).
    /// @return mask One bit, or every segment when the seed's hash is out of reach.
    /// @return seed The seed block's hash (zero when out of reach).
    function _challengeOf(uint256 jobId, ZkJob storage z) internal view returns (uint64 mask, bytes32 seed) {
        uint256 seedBlock = z.seedBlock;
        if (block.number <= seedBlock) revert ChallengeNotReady(jobId, seedBlock, block.number);
        seed = blockhash(seedBlock);
        uint256 count = z.segmentCount;
        if (seed == bytes32(0)) return (_allSegments(count), seed);
        uint256 segment = uint256(keccak256(abi.encode(seed, jobId))) % count;
        // forge-lint: disable-next-line(unsafe-typecast)
        mask = uint64(uint256(1) << segment); // segment < count <= 64
    }

    /// @notice The required segments of `z`, drawing (and storing) the challenge if needed.
    /// @param jobId The job.
    /// @param z The job's record (committed).
    /// @return mask The required segments.
    function _required(uint256 jobId, ZkJob storage z) internal returns (uint64 mask) {
        mask = z.requiredMask;
        if (mask != 0) return mask;
        bytes32 seed;
        (mask, seed) = _challengeOf(jobId, z);
        z.requiredMask = mask;
        if (seed == bytes32(0)) {
            emit ChallengeSeedExpired(jobId, z.seedBlock);
        } else {
            uint256 segment;
            while ((mask >> segment) != 1) ++segment;
            emit SegmentChallenged(jobId, segment, seed);
        }
    }

    /// @notice Whether every required segment of `z` is proven on chain.
    function _provenOnChain(ZkJob storage z) internal view returns (bool) {
        uint64 required = z.requiredMask;
        return required != 0 && z.provenMask & required == required;
    }

    /// @notice Whether `z`'s verification no longer needs anything from the node: proven on
    ///         chain, or attested Valid without escalation.
    function _satisfied(ZkJob storage z) internal view returns (bool) {
        return _provenOnChain(z) || (z.attestation == Attestation.Valid && !z.onChainRequired);
    }

    /// @notice Whether job `jobId` has a `kind` dispute open.
    function _isOpen(uint256 jobId, DisputeKind kind) internal view returns (bool) {
        return _disputes[jobId][kind].disputer != address(0);
    }

    /// @notice Closes job `jobId`'s `kind` dispute, crediting its bond to `bondTo` (or, when
    ///         zero, to the disputer). Does nothing when none is open.
    /// @return open Whether a dispute was open.
    function _close(uint256 jobId, DisputeKind kind, DisputeOutcome outcome, address bondTo)
        internal
        returns (bool open)
    {
        Dispute memory d = _disputes[jobId][kind];
        if (d.disputer == address(0)) return false;
        delete _disputes[jobId][kind];
        address to = bondTo == address(0) ? d.disputer : bondTo;
        withdrawable[to] += d.bond;
        emit DisputeResolved(jobId, kind, outcome, to);
        return true;
    }

    /// @notice Opens a `kind` dispute on job `jobId` for msg.sender with msg.value as bond, and
    ///         puts the job in dispute at the market unless the other kind already did.
    function _open(uint256 jobId, DisputeKind kind, uint256 resolveBy) internal {
        if (msg.value != disputeBond) revert WrongBond(msg.value, disputeBond);
        if (_isOpen(jobId, kind)) revert DisputeAlreadyOpen(jobId, kind);
        // forge-lint: disable-next-line(unsafe-typecast)
        _disputes[jobId][kind] =
            Dispute({disputer: msg.sender, bond: uint96(msg.value), openedAt: uint40(block.timestamp)});
        emit DisputeOpened(jobId, kind, msg.sender, msg.value, resolveBy);
        DisputeKind other = kind == DisputeKind.Output ? DisputeKind.Attestation : DisputeKind.Output;
        if (!_isOpen(jobId, other)) market.setDisputed(jobId, true);
    }

    /// @notice After a dispute of job `jobId` closed in the node's favour: back to Committed
    ///         at the market unless the other kind is still open.
    function _clearIfNoDispute(uint256 jobId, DisputeKind closed) internal {
        DisputeKind other = closed == DisputeKind.Output ? DisputeKind.Attestation : DisputeKind.Output;
        if (!_isOpen(jobId, other)) market.setDisputed(jobId, false);
    }

    /// @notice Reverts unless `boundaryHashes` are the committed ones (hash to `committed`),
    ///         `proof` opens with commitments whose hashes are
    ///         `[boundaryHashes[segment], boundaryHashes[segment + 1]]`, and segment
    ///         `segment`'s verifier accepts it.
    function _checkProof(
        uint256 jobId,
        uint256 segment,
        bytes32 modelId,
        bytes32 committed,
        bytes calldata proof,
        uint256[] calldata boundaryHashes
    ) internal view {
        bytes32 given = keccak256(abi.encodePacked(boundaryHashes));
        if (given != committed) revert BoundaryHashesMismatch(jobId, committed, given);
        address verifier = modelRegistry.getSegment(modelId, segment).verifier;
        if (proof.length < SegmentProofs.BOUNDARY_BYTES) revert ProofRejected(jobId, segment, verifier);
        (uint256 inputHash, uint256 outputHash) = SegmentProofs.boundaries(proof);
        // k + 1 hashes (the root matched) and segment < k (it is required), so both exist.
        if (inputHash != boundaryHashes[segment] || outputHash != boundaryHashes[segment + 1]) {
            revert ProofBoundaryMismatch(jobId, segment, inputHash, outputHash);
        }
        if (!SegmentProofs.verify(verifier, proof)) revert ProofRejected(jobId, segment, verifier);
    }

    // ---------------------------------------------------------------- market hooks

    /// @inheritdoc IZkVerification
    function onSubmit(uint256 jobId, bytes32 modelId, IJobMarket.VerificationMode mode, ZkParams calldata params)
        external
        onlyMarket
    {
        uint256 inputBoundaryHash = params.inputBoundaryHash;
        if (inputBoundaryHash >= SNARK_SCALAR_FIELD) revert InputBoundaryHashOutOfField(inputBoundaryHash);
        IModelRegistry.Segment[] memory segments = modelRegistry.getSegments(modelId);
        uint256 count = segments.length;
        for (uint256 i; i < count; ++i) {
            if (segments[i].verifier == address(0)) revert SegmentHasNoVerifier(modelId, i);
        }
        ZkJob storage z = _zkJobs[jobId];
        z.inputBoundaryHash = inputBoundaryHash;
        // forge-lint: disable-next-line(unsafe-typecast)
        z.segmentCount = uint8(count); // 1..64 (ModelRegistry.MAX_SEGMENTS)
        z.full = mode == IJobMarket.VerificationMode.ZkFull;
        z.attested = params.attested;
        emit ZkJobOpened(jobId, modelId, mode, inputBoundaryHash, params.attested, count);
    }

    /// @inheritdoc IZkVerification
    function onCommit(uint256 jobId, uint256[] calldata boundaryHashes) external onlyMarket {
        ZkJob storage z = _zkJobs[jobId];
        uint256 count = z.segmentCount;
        if (count == 0) revert NotZkJob(jobId);
        if (boundaryHashes.length != count + 1) revert BoundaryCountMismatch(jobId, count + 1, boundaryHashes.length);
        uint256 expected = z.inputBoundaryHash;
        if (boundaryHashes[0] != expected) revert InputBoundaryMismatch(jobId, expected, boundaryHashes[0]);

        uint256 seedBlock = block.number + challengeDelay;
        uint256 deadline = block.timestamp + proofWindow;
        z.boundaryRoot = keccak256(abi.encodePacked(boundaryHashes));
        // Both fit: block numbers and timestamps are far below 2^40; the additions are bounded.
        // forge-lint: disable-next-line(unsafe-typecast)
        z.seedBlock = uint64(seedBlock);
        // forge-lint: disable-next-line(unsafe-typecast)
        z.proofDeadline = uint40(deadline);
        if (z.full) z.requiredMask = _allSegments(count);
        emit BoundaryHashesCommitted(jobId, boundaryHashes, seedBlock, deadline);
    }

    /// @inheritdoc IZkVerification
    /// @dev An open dispute also blocks finalize: the market's job is then Disputed.
    function canFinalize(uint256 jobId) external view returns (bool) {
        ZkJob storage z = _zkJobs[jobId];
        if (_provenOnChain(z)) return true;
        if (z.attestation != Attestation.Valid || z.onChainRequired) return false;
        // forge-lint: disable-next-line(block-timestamp)
        return block.timestamp >= uint256(z.attestedAt) + disputeWindow;
    }

    // ---------------------------------------------------------------- external: anyone

    /// @inheritdoc IZkVerification
    function challenge(uint256 jobId) external returns (uint64 requiredMask) {
        ZkJob storage z = _committed(jobId);
        if (z.full) revert NotSpotCheck(jobId);
        if (z.requiredMask != 0) revert ChallengeAlreadyDrawn(jobId, z.requiredMask);
        return _required(jobId, z);
    }

    /// @inheritdoc IZkVerification
    /// @dev A rejected proof reverts and changes nothing: anyone may post, so a bad post must
    ///      not hurt the node; it is the deadline passing without a valid proof that slashes.
    function submitProof(uint256 jobId, uint256 segment, bytes calldata proof, uint256[] calldata boundaryHashes)
        external
        nonReentrant
    {
        ZkJob storage z = _committed(jobId);
        IJobMarket.Job memory job = _activeJob(jobId);
        uint256 deadline = z.proofDeadline;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp > deadline) revert ProofDeadlinePassed(jobId, deadline);
        uint64 required = _required(jobId, z);
        // forge-lint: disable-next-line(unsafe-typecast)
        uint64 bit = segment < 64 ? uint64(uint256(1) << segment) : 0;
        if (required & bit == 0) revert SegmentNotRequired(jobId, segment, required);
        if (z.provenMask & bit != 0) revert SegmentAlreadyProven(jobId, segment);
        _checkProof(jobId, segment, job.modelId, z.boundaryRoot, proof, boundaryHashes);

        uint64 proven = z.provenMask | bit;
        z.provenMask = proven;
        emit SegmentProven(jobId, segment, msg.sender);
        if (proven & required == required && _close(jobId, DisputeKind.Attestation, DisputeOutcome.Rejected, job.node))
        {
            _clearIfNoDispute(jobId, DisputeKind.Attestation);
        }
    }

    /// @inheritdoc IZkVerification
    function slashUnproven(uint256 jobId) external nonReentrant {
        ZkJob storage z = _committed(jobId);
        uint256 deadline = z.proofDeadline;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp <= deadline) revert ProofDeadlineNotPassed(jobId, deadline);
        if (_satisfied(z)) revert AlreadyVerified(jobId);
        emit ProofDeadlineMissed(jobId, z.requiredMask, z.provenMask);
        _close(jobId, DisputeKind.Attestation, DisputeOutcome.Upheld, address(0));
        _close(jobId, DisputeKind.Output, DisputeOutcome.Dismissed, address(0));
        market.slashJob(jobId, msg.sender); // reverts unless Committed or Disputed
    }

    /// @inheritdoc IZkVerification
    function disputeAttestation(uint256 jobId) external payable nonReentrant {
        ZkJob storage z = _committed(jobId);
        _activeJob(jobId);
        if (z.attestation != Attestation.Valid || z.onChainRequired) revert NoValidAttestation(jobId);
        if (_provenOnChain(z)) revert AlreadyVerified(jobId);
        uint256 windowEnd = uint256(z.attestedAt) + disputeWindow;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp >= windowEnd) revert DisputeWindowOver(jobId, windowEnd);
        uint256 deadline = block.timestamp + proofWindow;
        z.onChainRequired = true;
        // forge-lint: disable-next-line(unsafe-typecast)
        z.proofDeadline = uint40(deadline);
        _open(jobId, DisputeKind.Attestation, deadline);
    }

    /// @inheritdoc IZkVerification
    function disputeOutput(uint256 jobId) external payable nonReentrant {
        _committed(jobId);
        IJobMarket.Job memory job = _activeJob(jobId);
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp >= job.windowEnd) revert DisputeWindowOver(jobId, job.windowEnd);
        _open(jobId, DisputeKind.Output, block.timestamp + arbitrationPeriod);
    }

    /// @inheritdoc IZkVerification
    function dismissOutputDispute(uint256 jobId) external nonReentrant {
        Dispute memory d = _disputes[jobId][DisputeKind.Output];
        if (d.disputer == address(0)) revert NoOpenDispute(jobId, DisputeKind.Output);
        uint256 endsAt = uint256(d.openedAt) + arbitrationPeriod;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp < endsAt) revert ArbitrationNotOver(jobId, endsAt);
        _close(jobId, DisputeKind.Output, DisputeOutcome.Dismissed, address(0));
        _clearIfNoDispute(jobId, DisputeKind.Output);
    }

    /// @inheritdoc IZkVerification
    /// @dev The balance is zeroed before the transfer.
    function withdraw() external nonReentrant {
        uint256 amount = withdrawable[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        withdrawable[msg.sender] = 0;
        emit Withdrawal(msg.sender, amount);
        (bool success,) = msg.sender.call{value: amount}("");
        if (!success) revert TransferFailed(msg.sender, amount);
    }

    // ---------------------------------------------------------------- external: node

    /// @inheritdoc IZkVerification
    function publishProof(uint256 jobId, string calldata uri) external {
        _committed(jobId);
        if (market.getJob(jobId).node != msg.sender) revert NotNode(jobId, msg.sender);
        emit ProofPublished(jobId, msg.sender, uri);
    }

    // ---------------------------------------------------------------- external: attester

    /// @inheritdoc IZkVerification
    /// @dev Draws the challenge first (zk-spot) so the verdict is about a fixed segment.
    function attest(uint256 jobId, bool valid) external onlyAttester {
        ZkJob storage z = _committed(jobId);
        if (!z.attested) revert NotAttestedJob(jobId);
        if (z.attestation != Attestation.None) revert AlreadyAttested(jobId, z.attestation);
        uint256 deadline = z.proofDeadline;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp > deadline) revert ProofDeadlinePassed(jobId, deadline);
        _required(jobId, z);
        Attestation verdict = valid ? Attestation.Valid : Attestation.Invalid;
        z.attester = msg.sender;
        z.attestedAt = uint40(block.timestamp);
        z.attestation = verdict;
        if (!valid) {
            z.onChainRequired = true;
            uint256 extended = block.timestamp + proofWindow;
            // forge-lint: disable-next-line(unsafe-typecast)
            if (extended > deadline) z.proofDeadline = uint40(extended);
        }
        emit Attested(jobId, msg.sender, verdict);
    }

    // ---------------------------------------------------------------- external: owner

    /// @inheritdoc IZkVerification
    function setAttester(address attester, bool allowed) external onlyOwner {
        if (attester == address(0)) revert ZeroAddress();
        isAttester[attester] = allowed;
        emit AttesterSet(attester, allowed);
    }

    /// @inheritdoc IZkVerification
    function resolveOutputDispute(uint256 jobId, bool upheld) external onlyOwner nonReentrant {
        Dispute memory d = _disputes[jobId][DisputeKind.Output];
        if (d.disputer == address(0)) revert NoOpenDispute(jobId, DisputeKind.Output);
        if (upheld) {
            _close(jobId, DisputeKind.Output, DisputeOutcome.Upheld, address(0));
            _close(jobId, DisputeKind.Attestation, DisputeOutcome.Dismissed, address(0));
            market.slashJob(jobId, d.disputer);
        } else {
            _close(jobId, DisputeKind.Output, DisputeOutcome.Rejected, market.getJob(jobId).node);
            _clearIfNoDispute(jobId, DisputeKind.Output);
        }
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IZkVerification
    function getZkJob(uint256 jobId) external view returns (ZkJob memory) {
        return _zkJobs[jobId];
    }

    /// @inheritdoc IZkVerification
    function getDispute(uint256 jobId, DisputeKind kind) external view returns (Dispute memory) {
        return _disputes[jobId][kind];
    }

    /// @inheritdoc IZkVerification
    function requiredSegments(uint256 jobId) external view returns (uint64) {
        ZkJob storage z = _zkJobs[jobId];
        uint64 mask = z.requiredMask;
        if (mask != 0 || z.boundaryRoot == bytes32(0) || block.number <= z.seedBlock) return mask;
        (mask,) = _challengeOf(jobId, z);
        return mask;
    }
}
