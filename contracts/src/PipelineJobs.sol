// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IModelRegistry} from "./interfaces/IModelRegistry.sol";
import {INodeRegistry} from "./interfaces/INodeRegistry.sol";
import {IPipelineJobs} from "./interfaces/IPipelineJobs.sol";
import {SegmentProofs} from "./libraries/SegmentProofs.sol";

/// @title PipelineJobs
/// @notice One model's segments run by different nodes (see IPipelineJobs and
///         docs/pipeline.md). Self-contained: it holds the fees in escrow, the nodes' segment
///         bonds and the challengers' bonds, and pays out by pull (`withdraw`). It reads the
///         NodeRegistry (registered, staked, serves the model) and the ModelRegistry (segments
///         and their verifiers) but changes neither.
/// @dev Invariant: `address(this).balance == Σ job.escrow + Σ segment.bond +
///      Σ segment.challengeBond + Σ withdrawable`. Every job ends Finalized through calls
///      anyone can make: `expire` (a stalled step), `slashUnproven` (a missing proof),
///      `finalize` (after the challenge window).
contract PipelineJobs is IPipelineJobs, ReentrancyGuardTransient {
    // ---------------------------------------------------------------- constants

    /// @notice BN254's scalar field order: boundary hashes are elements of this field.
    uint256 public constant SNARK_SCALAR_FIELD =
        SegmentProofs.SNARK_SCALAR_FIELD;

    /// @notice Longest window the constructor accepts.
    uint256 public constant MAX_DURATION = 365 days;

    /// @notice Share of a slashed bond that goes to the challenger (the rest to the payer).
    uint256 public constant CHALLENGER_SHARE_BPS = 5000;

    // ---------------------------------------------------------------- immutables

    /// @inheritdoc IPipelineJobs
    IModelRegistry public immutable modelRegistry;
    /// @inheritdoc IPipelineJobs
    INodeRegistry public immutable nodeRegistry;
    /// @inheritdoc IPipelineJobs
    uint256 public immutable segmentBond;
    /// @inheritdoc IPipelineJobs
    uint256 public immutable challengeBond;
    /// @inheritdoc IPipelineJobs
    uint256 public immutable segmentWindow;
    /// @inheritdoc IPipelineJobs
    uint256 public immutable challengeWindow;
    /// @inheritdoc IPipelineJobs
    uint256 public immutable proofWindow;

    // ---------------------------------------------------------------- state

    /// @inheritdoc IPipelineJobs
    uint256 public jobCount;
    /// @inheritdoc IPipelineJobs
    mapping(address account => uint256 amount) public withdrawable;

    /// @notice Jobs by id.
    mapping(uint256 jobId => PipelineJob job) internal _jobs;
    /// @notice Segments by job and index.
    mapping(uint256 jobId => mapping(uint256 index => SegmentSlot slot)) internal _segments;

    // ---------------------------------------------------------------- constructor

    /// @param modelRegistry_ Where models, segments and verifiers are registered.
    /// @param nodeRegistry_ Where nodes stake and declare the models they serve.
    /// @param segmentBond_ Exact bond a node posts per claimed segment (wei, > 0, uint96).
    /// @param challengeBond_ Exact bond of a challenge (wei, > 0, uint96).
    /// @param segmentWindow_ Seconds each segment has after the previous step.
    /// @param challengeWindow_ Seconds after a job ends during which segments can be challenged.
    /// @param proofWindow_ Seconds a challenged node has to post its proof.
    constructor(
        IModelRegistry modelRegistry_,
        INodeRegistry nodeRegistry_,
        uint256 segmentBond_,
        uint256 challengeBond_,
        uint256 segmentWindow_,
        uint256 challengeWindow_,
        uint256 proofWindow_
    ) {
        if (address(modelRegistry_) == address(0) || address(nodeRegistry_) == address(0)) {
            revert ZeroAddress();
        }
        if (segmentBond_ == 0 || challengeBond_ == 0 || segmentWindow_ == 0 || proofWindow_ == 0) {
            revert ZeroParameter();
        }
        if (segmentBond_ > type(uint96).max) revert AmountTooLarge(segmentBond_);
        if (challengeBond_ > type(uint96).max) revert AmountTooLarge(challengeBond_);
        if (segmentWindow_ > MAX_DURATION) revert DurationTooLong(segmentWindow_, MAX_DURATION);
        if (challengeWindow_ > MAX_DURATION) revert DurationTooLong(challengeWindow_, MAX_DURATION);
        if (proofWindow_ > MAX_DURATION) revert DurationTooLong(proofWindow_, MAX_DURATION);
        modelRegistry = modelRegistry_;
        nodeRegistry = nodeRegistry_;
        segmentBond = segmentBond_;
        challengeBond = challengeBond_;
        segmentWindow = segmentWindow_;
        challengeWindow = challengeWindow_;
        proofWindow = proofWindow_;
    }

    // ---------------------------------------------------------------- internal

    /// @notice The job `jobId` (reverts UnknownJob).
    function _job(uint256 jobId) internal view returns (PipelineJob storage job) {
        job = _jobs[jobId];
        if (job.status == JobStatus.None) revert UnknownJob(jobId);
    }

    /// @notice Segment `index` of `job` (reverts SegmentOutOfRange).
    function _segment(uint256 jobId, PipelineJob storage job, uint256 index)
        internal
        view
        returns (SegmentSlot storage)
    {
        if (index >= job.segmentCount) {
            revert SegmentOutOfRange(jobId, index, job.segmentCount);
        }
        return _segments[jobId][index];
    }

    /// @notice Reverts unless `node` is registered, bonded at least `minStake` (stake not
    ///         unbonding) and serves `modelId` in the NodeRegistry.
    function _checkNode(address node, bytes32 modelId) internal view {
        INodeRegistry.Node memory n = nodeRegistry.getNode(node);
        if (!n.registered) revert NodeNotRegistered(node);
        uint256 bonded = uint256(n.stake) - n.unbonding;
        uint256 minimum = nodeRegistry.minStake();
        if (bonded < minimum) revert NodeNotStaked(node, bonded, minimum);
        (bool served,) = nodeRegistry.priceOf(node, modelId);
        if (!served) revert ModelNotServed(node, modelId);
    }

    /// @notice When the challenge window of `job` closes (max uint while it is Active).
    function _windowEnd(PipelineJob storage job) internal view returns (uint256) {
        if (job.status == JobStatus.Active) return type(uint256).max;
        return uint256(job.endedAt) + challengeWindow;
    }

    /// @notice The boundary hash segment `index` starts from.
    function _inputBoundary(uint256 jobId, PipelineJob storage job, uint256 index) internal view returns (uint256) {
        return index == 0 ? job.inputBoundaryHash : _segments[jobId][index - 1].outputBoundaryHash;
    }

    // ---------------------------------------------------------------- payer

    /// @inheritdoc IPipelineJobs
    function submitJob(PipelineRequest calldata request, bytes calldata input)
        external
        payable
        nonReentrant
        returns (uint256 jobId)
    {
        bytes32 modelId = request.modelId;
        if (!modelRegistry.isRegistered(modelId)) revert ModelNotRegistered(modelId);
        if (request.inputHash == bytes32(0)) revert ZeroInputHash();
        if (input.length != 0 && keccak256(input) != request.inputHash) {
            revert InputHashMismatch(request.inputHash, keccak256(input));
        }
        if (request.inputBoundaryHash >= SNARK_SCALAR_FIELD) {
            revert BoundaryHashOutOfField(request.inputBoundaryHash);
        }
        jobId = ++jobCount;
        (uint256 count, uint256 total) = _storeFees(jobId, modelId, request.fees);
        if (msg.value != total) revert WrongValue(total, msg.value);

        uint256 deadline = block.timestamp + segmentWindow;
        PipelineJob storage job = _jobs[jobId];
        job.payer = msg.sender;
        // forge-lint: disable-next-line(unsafe-typecast)
        job.segmentCount = uint8(count); // <= 64
        // forge-lint: disable-next-line(unsafe-typecast)
        job.faultyFrom = uint8(count);
        job.status = JobStatus.Active;
        // forge-lint: disable-next-line(unsafe-typecast)
        job.stepDeadline = uint40(deadline); // timestamps are far below 2^40
        // forge-lint: disable-next-line(unsafe-typecast)
        job.escrow = uint128(total); // <= 64 * 2^96
        job.modelId = modelId;
        job.inputHash = request.inputHash;
        job.inputBoundaryHash = request.inputBoundaryHash;
        _emitSubmitted(jobId, request, count, total, input);
    }

    /// @notice Emits PipelineJobSubmitted (its own frame: the event has many fields).
    function _emitSubmitted(
        uint256 jobId,
        PipelineRequest calldata request,
        uint256 count,
        uint256 total,
        bytes calldata input
    ) internal {
        emit PipelineJobSubmitted(
            jobId,
            msg.sender,
            request.modelId,
            request.inputHash,
            request.inputBoundaryHash,
            count,
            total,
            _jobs[jobId].stepDeadline,
            input
        );
    }

    /// @notice Checks the model's segments (each needs a verifier) against `fees` and stores
    ///         each segment's fee.
    /// @return count The model's segment count (1..64, ModelRegistry.MAX_SEGMENTS).
    /// @return total Σ fees.
    function _storeFees(uint256 jobId, bytes32 modelId, uint96[] calldata fees)
        internal
        returns (uint256 count, uint256 total)
    {
        IModelRegistry.Segment[] memory segments = modelRegistry.getSegments(modelId);
        count = segments.length;
        if (fees.length != count) revert FeeCountMismatch(count, fees.length);
        for (uint256 i; i < count; ++i) {
            if (segments[i].verifier == address(0)) revert SegmentHasNoVerifier(modelId, i);
            uint96 fee = fees[i];
            if (fee == 0) revert ZeroFee(i);
            total += fee;
            _segments[jobId][i].fee = fee;
        }
    }

    // ---------------------------------------------------------------- nodes

    /// @inheritdoc IPipelineJobs
    function claimSegment(uint256 jobId, uint256 index) external payable nonReentrant {
        PipelineJob storage job = _job(jobId);
        if (job.status != JobStatus.Active) revert WrongJobStatus(jobId, job.status);
        SegmentSlot storage seg = _segment(jobId, job, index);
        if (seg.status != SegmentStatus.Open) revert WrongSegmentStatus(jobId, index, seg.status);
        if (msg.value != segmentBond) revert WrongValue(segmentBond, msg.value);
        _checkNode(msg.sender, job.modelId);
        seg.node = msg.sender;
        // forge-lint: disable-next-line(unsafe-typecast)
        seg.bond = uint96(msg.value); // == segmentBond <= uint96 max
        seg.status = SegmentStatus.Claimed;
        emit SegmentClaimed(jobId, index, msg.sender, msg.value);
    }

    /// @inheritdoc IPipelineJobs
    function commitSegment(uint256 jobId, uint256 index, SegmentCommit calldata commit) external nonReentrant {
        PipelineJob storage job = _job(jobId);
        if (job.status != JobStatus.Active) revert WrongJobStatus(jobId, job.status);
        SegmentSlot storage seg = _segment(jobId, job, index);
        uint256 expected = job.committed;
        if (index != expected) revert SegmentOutOfOrder(jobId, index, expected);
        if (seg.node != msg.sender) revert NotSegmentNode(jobId, index, msg.sender);
        uint256 deadline = job.stepDeadline;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp > deadline) revert StepDeadlinePassed(jobId, deadline);

        bytes32 inputHash = index == 0 ? job.inputHash : _segments[jobId][index - 1].outputHash;
        if (commit.inputHash != inputHash) revert InputHashLinkMismatch(jobId, index, inputHash, commit.inputHash);
        uint256 inputBoundary = _inputBoundary(jobId, job, index);
        if (commit.inputBoundaryHash != inputBoundary) {
            revert BoundaryLinkMismatch(jobId, index, inputBoundary, commit.inputBoundaryHash);
        }
        if (commit.outputHash == bytes32(0)) revert ZeroOutputHash(jobId, index);
        if (commit.outputBoundaryHash >= SNARK_SCALAR_FIELD) revert BoundaryHashOutOfField(commit.outputBoundaryHash);

        seg.status = SegmentStatus.Committed;
        seg.committedAt = uint40(block.timestamp);
        seg.outputHash = commit.outputHash;
        seg.outputBoundaryHash = commit.outputBoundaryHash;
        uint256 next = block.timestamp + segmentWindow;
        // forge-lint: disable-next-line(unsafe-typecast)
        job.committed = uint8(index + 1); // < 64
        if (index + 1 == job.segmentCount) {
            job.status = JobStatus.Completed;
            job.endedAt = uint40(block.timestamp);
            emit SegmentCommitted(jobId, index, msg.sender, commit.outputHash, commit.outputBoundaryHash, 0);
            emit PipelineCompleted(jobId, commit.outputHash, block.timestamp + challengeWindow);
        } else {
            // forge-lint: disable-next-line(unsafe-typecast)
            job.stepDeadline = uint40(next);
            emit SegmentCommitted(jobId, index, msg.sender, commit.outputHash, commit.outputBoundaryHash, next);
        }
    }

    // ---------------------------------------------------------------- anyone

    /// @inheritdoc IPipelineJobs
    function challengeSegment(uint256 jobId, uint256 index) external payable nonReentrant {
        PipelineJob storage job = _job(jobId);
        if (job.status == JobStatus.Finalized) revert WrongJobStatus(jobId, job.status);
        uint256 windowEnd = _windowEnd(job);
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp >= windowEnd) revert ChallengeWindowClosed(jobId, windowEnd);
        SegmentSlot storage seg = _segment(jobId, job, index);
        if (seg.status != SegmentStatus.Committed) revert WrongSegmentStatus(jobId, index, seg.status);
        if (msg.value != challengeBond) revert WrongValue(challengeBond, msg.value);
        uint256 deadline = block.timestamp + proofWindow;
        seg.status = SegmentStatus.Challenged;
        seg.challenger = msg.sender;
        // forge-lint: disable-next-line(unsafe-typecast)
        seg.challengeBond = uint96(msg.value); // == challengeBond <= uint96 max
        // forge-lint: disable-next-line(unsafe-typecast)
        seg.proofDeadline = uint40(deadline);
        ++job.openChallenges; // <= 64 segments
        emit SegmentChallenged(jobId, index, msg.sender, deadline);
    }

    /// @inheritdoc IPipelineJobs
    /// @dev Anyone may post the proof: a rejected one reverts, so a bad post cannot hurt the node.
    function proveSegment(uint256 jobId, uint256 index, bytes calldata proof) external nonReentrant {
        PipelineJob storage job = _job(jobId);
        SegmentSlot storage seg = _segment(jobId, job, index);
        if (seg.status != SegmentStatus.Challenged) revert WrongSegmentStatus(jobId, index, seg.status);
        uint256 deadline = seg.proofDeadline;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp > deadline) revert ProofDeadlinePassed(jobId, index, deadline);
        address verifier = modelRegistry.getSegment(job.modelId, index).verifier;
        if (proof.length < SegmentProofs.BOUNDARY_BYTES) revert ProofRejected(jobId, index, verifier);
        (uint256 inputHash, uint256 outputHash) = SegmentProofs.boundaries(proof);
        if (inputHash != _inputBoundary(jobId, job, index) || outputHash != seg.outputBoundaryHash) {
            revert ProofBoundaryMismatch(jobId, index, inputHash, outputHash);
        }
        if (!SegmentProofs.verify(verifier, proof)) revert ProofRejected(jobId, index, verifier);

        uint256 bond = seg.challengeBond;
        seg.status = SegmentStatus.Proven;
        seg.challengeBond = 0;
        --job.openChallenges;
        withdrawable[seg.node] += bond;
        emit SegmentProven(jobId, index, msg.sender);
    }

    /// @inheritdoc IPipelineJobs
    function slashUnproven(uint256 jobId, uint256 index) external nonReentrant {
        PipelineJob storage job = _job(jobId);
        SegmentSlot storage seg = _segment(jobId, job, index);
        if (seg.status != SegmentStatus.Challenged) revert WrongSegmentStatus(jobId, index, seg.status);
        uint256 deadline = seg.proofDeadline;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp <= deadline) revert ProofDeadlineNotPassed(jobId, index, deadline);

        uint256 bond = seg.bond;
        uint256 toChallenger = bond * CHALLENGER_SHARE_BPS / 10_000;
        uint256 returned = seg.challengeBond;
        seg.status = SegmentStatus.Slashed;
        seg.bond = 0;
        seg.challengeBond = 0;
        --job.openChallenges;
        // forge-lint: disable-next-line(unsafe-typecast)
        if (index < job.faultyFrom) job.faultyFrom = uint8(index); // < 64
        withdrawable[seg.challenger] += toChallenger + returned;
        withdrawable[job.payer] += bond - toChallenger;
        emit SegmentSlashed(jobId, index, seg.node, bond);
    }

    /// @inheritdoc IPipelineJobs
    function expire(uint256 jobId) external nonReentrant {
        PipelineJob storage job = _job(jobId);
        if (job.status != JobStatus.Active) revert WrongJobStatus(jobId, job.status);
        uint256 deadline = job.stepDeadline;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp <= deadline) revert StepDeadlineNotPassed(jobId, deadline);
        uint256 index = job.committed;
        SegmentSlot storage seg = _segments[jobId][index];
        address node = seg.node;
        uint256 slashed;
        if (seg.status == SegmentStatus.Claimed) {
            slashed = seg.bond;
            seg.bond = 0;
            seg.status = SegmentStatus.Slashed;
            withdrawable[job.payer] += slashed;
        }
        job.status = JobStatus.Stalled;
        job.endedAt = uint40(block.timestamp);
        emit PipelineStalled(jobId, index, node, slashed);
    }

    /// @inheritdoc IPipelineJobs
    function finalize(uint256 jobId) external nonReentrant {
        PipelineJob storage job = _job(jobId);
        JobStatus status = job.status;
        if (status != JobStatus.Completed && status != JobStatus.Stalled) revert WrongJobStatus(jobId, status);
        uint256 windowEnd = _windowEnd(job);
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp < windowEnd) revert ChallengeWindowOpen(jobId, windowEnd);
        if (job.openChallenges != 0) revert ChallengesOpen(jobId, job.openChallenges);

        uint256 count = job.segmentCount;
        uint256 faultyFrom = job.faultyFrom;
        uint256 paidUpTo = job.committed < faultyFrom ? job.committed : faultyFrom;
        uint256 paid;
        uint256 refunded;
        job.status = JobStatus.Finalized;
        job.escrow = 0;
        for (uint256 i; i < count; ++i) {
            SegmentSlot storage seg = _segments[jobId][i];
            uint256 fee = seg.fee;
            uint256 bond = seg.bond;
            seg.bond = 0;
            if (i < paidUpTo) {
                paid += fee;
                withdrawable[seg.node] += fee + bond;
            } else {
                refunded += fee;
                if (bond != 0) withdrawable[seg.node] += bond;
            }
        }
        if (refunded != 0) withdrawable[job.payer] += refunded;
        emit PipelineFinalized(jobId, status == JobStatus.Completed && faultyFrom == count, paid, refunded);
    }

    /// @inheritdoc IPipelineJobs
    /// @dev The balance is zeroed before the transfer.
    function withdraw() external nonReentrant {
        uint256 amount = withdrawable[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        withdrawable[msg.sender] = 0;
        emit Withdrawal(msg.sender, amount);
        (bool success,) = msg.sender.call{value: amount}("");
        if (!success) revert TransferFailed(msg.sender, amount);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IPipelineJobs
    function getJob(uint256 jobId) external view returns (PipelineJob memory) {
        return _job(jobId);
    }

    /// @inheritdoc IPipelineJobs
    function getSegment(uint256 jobId, uint256 index) external view returns (SegmentSlot memory) {
        PipelineJob storage job = _job(jobId);
        return _segment(jobId, job, index);
    }
}
