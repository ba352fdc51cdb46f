// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IModelRegistry} from "./interfaces/IModelRegistry.sol";
import {INodeRegistry} from "./interfaces/INodeRegistry.sol";
import {IRedundantJobs} from "./interfaces/IRedundantJobs.sol";

/// @title RedundantJobs
/// @notice k-of-n redundant jobs with commit-reveal, self-contained: it holds each job's fee
///         (msg.value) and the bonds its nodes post, and checks in the NodeRegistry that a
///         node is staked and serves the model. Reveals open only after every seat has
///         committed (or the commit deadline), and a commitment binds the node's address, so
///         no node can copy another's answer. See docs/redundancy.md.
/// @dev Value leaves only by `withdraw` (pull payments). Solvency: `address(this).balance ==
///      totalOwed()` after every call (fees and bonds of open jobs + Σ withdrawable). Every
///      job ends Settled or Refunded through `finalize`, which anyone may call once all seats
///      have revealed, quorum became impossible, or the reveal deadline has passed.
contract RedundantJobs is IRedundantJobs, ReentrancyGuardTransient {
    // ---------------------------------------------------------------- constants

    /// @notice Most seats a job may have (bounds the loop in `finalize`).
    uint8 public constant MAX_NODES = 16;

    /// @notice Longest time between a submit and the reveal deadline.
    uint256 public constant MAX_DURATION = 30 days;

    // ---------------------------------------------------------------- immutables

    /// @notice Stakes and served models of nodes (read only).
    INodeRegistry public immutable nodeRegistry;

    /// @notice Registered models (read only).
    IModelRegistry public immutable modelRegistry;

    // ---------------------------------------------------------------- state

    /// @dev Number of jobs; the last id.
    uint256 internal _jobCount;

    /// @dev Fees and bonds held for jobs that are still Open.
    uint256 internal _totalEscrow;

    /// @dev Σ withdrawable.
    uint256 internal _totalWithdrawable;

    /// @dev Jobs by id (1-indexed).
    mapping(uint256 jobId => Job) internal _jobs;

    /// @dev Seat holders of each job, in commit order.
    mapping(uint256 jobId => address[]) internal _nodes;

    /// @dev Seats by job and node.
    mapping(uint256 jobId => mapping(address node => Seat)) internal _seats;

    /// @dev Reveals per result hash, per job.
    mapping(uint256 jobId => mapping(bytes32 resultHash => uint256 count)) internal _votes;

    /// @inheritdoc IRedundantJobs
    mapping(address account => uint256 amount) public withdrawable;

    // ---------------------------------------------------------------- constructor

    /// @param nodes The NodeRegistry whose staked nodes may take seats.
    /// @param models The ModelRegistry a job's model must be registered in.
    constructor(INodeRegistry nodes, IModelRegistry models) {
        if (address(nodes) == address(0) || address(models) == address(0)) revert ZeroAddress();
        nodeRegistry = nodes;
        modelRegistry = models;
    }

    // ---------------------------------------------------------------- requester

    /// @inheritdoc IRedundantJobs
    function submit(Request calldata request) external payable nonReentrant returns (uint256 jobId) {
        _checkRequest(request);
        jobId = ++_jobCount;
        Job storage job = _jobs[jobId];
        job.payer = msg.sender;
        job.status = Status.Open;
        job.k = request.k;
        job.n = request.n;
        job.commitDeadline = request.commitDeadline;
        job.revealDeadline = request.revealDeadline;
        // forge-lint: disable-next-line(unsafe-typecast)
        job.fee = uint96(msg.value); // checked ≤ type(uint96).max in _checkRequest
        job.bond = request.bond;
        job.modelId = request.modelId;
        job.inputHash = request.inputHash;
        _totalEscrow += msg.value;
        _emitSubmitted(jobId, request);
    }

    /// @notice Reverts with the first rule `request` (and msg.value) breaks.
    /// @param request The request.
    function _checkRequest(Request calldata request) internal view {
        if (!modelRegistry.isRegistered(request.modelId)) revert ModelNotRegistered(request.modelId);
        if (msg.value == 0) revert ZeroFee();
        if (msg.value > type(uint96).max) revert ValueMismatch(type(uint96).max, msg.value);
        uint256 k = request.k;
        uint256 n = request.n;
        if (k == 0 || k > n || n > MAX_NODES || 2 * k <= n) revert InvalidQuorum(k, n, MAX_NODES);
        uint256 minimumBond = msg.value / n;
        if (request.bond < minimumBond || request.bond == 0) revert BondTooLow(request.bond, minimumBond);
        // forge-lint: disable-next-line(block-timestamp)
        if (request.commitDeadline <= block.timestamp) {
            revert DeadlineInPast(request.commitDeadline, block.timestamp);
        }
        uint256 latest = block.timestamp + MAX_DURATION;
        if (request.revealDeadline <= request.commitDeadline || request.revealDeadline > latest) {
            revert InvalidRevealDeadline(request.revealDeadline, uint256(request.commitDeadline) + 1, latest);
        }
        if (request.input.length != 0) {
            bytes32 actual = keccak256(request.input);
            if (actual != request.inputHash) revert InputHashMismatch(request.inputHash, actual);
        } else if (bytes(request.inputURI).length == 0) {
            revert MissingInput();
        }
    }

    /// @notice Emits RedundantJobSubmitted (its own frame keeps the stack shallow).
    /// @param jobId The job.
    /// @param request The request.
    function _emitSubmitted(uint256 jobId, Request calldata request) internal {
        emit RedundantJobSubmitted(
            jobId,
            msg.sender,
            request.modelId,
            request.inputHash,
            request.input,
            request.inputURI,
            msg.value,
            request.k,
            request.n,
            request.bond,
            request.commitDeadline,
            request.revealDeadline
        );
    }

    // ---------------------------------------------------------------- node

    /// @inheritdoc IRedundantJobs
    /// @dev Until the commit deadline (inclusive), while a seat is free. The node must be
    ///      registered with at least the registry's minimum stake still bonded, and serve the
    ///      model at a price ≤ fee / n (its share if all n agree).
    function commit(uint256 jobId, bytes32 commitment) external payable nonReentrant {
        Job storage job = _openJob(jobId);
        if (msg.value != job.bond) revert ValueMismatch(job.bond, msg.value);
        if (commitment == bytes32(0)) revert ZeroHash();
        uint256 commitDeadline = job.commitDeadline;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp > commitDeadline) revert CommitClosed(jobId, commitDeadline);
        uint256 n = job.n;
        if (job.commits >= n) revert JobFull(jobId, n);
        Seat storage seat = _seats[jobId][msg.sender];
        if (seat.commitment != bytes32(0)) revert AlreadyCommitted(jobId, msg.sender);
        _checkNode(msg.sender, job.modelId, job.fee / n);

        seat.commitment = commitment;
        _nodes[jobId].push(msg.sender);
        uint8 commits = job.commits + 1;
        job.commits = commits;
        _totalEscrow += msg.value;
        emit Committed(jobId, msg.sender, commitment, commits);
    }

    /// @notice Reverts unless `node` is staked and serves `modelId` at a price ≤ `share`.
    /// @param node The node.
    /// @param modelId The job's model.
    /// @param share The fee per node if all seats agree.
    function _checkNode(address node, bytes32 modelId, uint256 share) internal view {
        INodeRegistry.Node memory info = nodeRegistry.getNode(node);
        if (!info.registered || info.stake - info.unbonding < nodeRegistry.minStake()) revert NodeNotStaked(node);
        (bool served, uint256 price) = nodeRegistry.priceOf(node, modelId);
        if (!served) revert ModelNotServed(node, modelId);
        if (price > share) revert PriceAboveShare(node, price, share);
    }

    /// @inheritdoc IRedundantJobs
    /// @dev Seat holders only, once, after all n commits or the commit deadline, until the
    ///      reveal deadline (inclusive). The commitment binds msg.sender, so another node's
    ///      (resultHash, salt) cannot open a copied commitment.
    function reveal(uint256 jobId, bytes32 resultHash, bytes32 salt, bytes calldata output) external nonReentrant {
        Job storage job = _openJob(jobId);
        Seat storage seat = _seats[jobId][msg.sender];
        bytes32 commitment = seat.commitment;
        if (commitment == bytes32(0)) revert NotCommitted(jobId, msg.sender);
        if (seat.revealed != bytes32(0)) revert AlreadyRevealed(jobId, msg.sender);
        uint256 commits = job.commits;
        uint256 commitDeadline = job.commitDeadline;
        // forge-lint: disable-next-line(block-timestamp)
        if (commits < job.n && block.timestamp <= commitDeadline) {
            revert RevealNotOpen(jobId, commits, commitDeadline);
        }
        uint256 revealDeadline = job.revealDeadline;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp > revealDeadline) revert RevealClosed(jobId, revealDeadline);
        if (resultHash == bytes32(0)) revert ZeroHash();
        if (keccak256(abi.encode(resultHash, salt, msg.sender)) != commitment) {
            revert CommitmentMismatch(jobId, msg.sender);
        }
        if (output.length != 0) {
            bytes32 actual = keccak256(output);
            if (actual != resultHash) revert OutputHashMismatch(resultHash, actual);
        }

        seat.revealed = resultHash;
        job.reveals += 1;
        uint256 votes = ++_votes[jobId][resultHash];
        if (votes == job.k) job.winner = resultHash; // 2k > n: at most one hash gets here
        emit Revealed(jobId, msg.sender, resultHash, output);
    }

    // ---------------------------------------------------------------- anyone

    /// @inheritdoc IRedundantJobs
    /// @dev With a winner: each agreeing node is credited its bond plus fee / agreeing; the
    ///      other seats' bonds and the rounding dust go to the payer. Without: the fee goes
    ///      back, nodes that revealed get their bond back plus an equal part of the bonds of
    ///      nodes that never revealed (their output is public now; a requester whose own
    ///      nodes withhold reveals pays for it), the rounding dust to the payer.
    function finalize(uint256 jobId) external nonReentrant {
        Job storage job = _openJob(jobId);
        if (!_ready(job)) revert NotReady(jobId);

        bytes32 winner = job.winner;
        uint256 fee = job.fee;
        uint256 bond = job.bond;
        address[] storage seated = _nodes[jobId];
        uint256 seats = seated.length;
        _totalEscrow -= fee + bond * seats;

        uint256 agreeing = winner == bytes32(0) ? 0 : _votes[jobId][winner];
        uint256 share = agreeing == 0 ? 0 : fee / agreeing;
        uint256 slashed;
        for (uint256 i; i < seats; ++i) {
            address node = seated[i];
            bytes32 revealed = _seats[jobId][node].revealed;
            if (winner != bytes32(0) ? revealed == winner : revealed != bytes32(0)) {
                _credit(node, bond + share);
            } else {
                slashed += bond;
                emit BondSlashed(jobId, node, bond);
            }
        }
        address payer = job.payer;
        if (agreeing != 0) {
            job.status = Status.Settled;
            _credit(payer, slashed + (fee - share * agreeing));
            emit RedundantJobSettled(jobId, winner, agreeing, share, slashed);
        } else {
            job.status = Status.Refunded;
            _credit(payer, fee + _shareAmongRevealers(jobId, job.reveals, slashed));
            emit RedundantJobRefunded(jobId, fee, slashed);
        }
    }

    /// @notice Credits every seat of job `jobId` that revealed an equal part of `slashed`.
    /// @param jobId The job.
    /// @param revealers How many seats revealed.
    /// @param slashed Wei to share.
    /// @return dust What is left (all of it when nobody revealed), for the payer.
    function _shareAmongRevealers(uint256 jobId, uint256 revealers, uint256 slashed) internal returns (uint256 dust) {
        if (revealers == 0) return slashed;
        uint256 part = slashed / revealers;
        if (part == 0) return slashed;
        address[] storage seated = _nodes[jobId];
        for (uint256 i; i < seated.length; ++i) {
            if (_seats[jobId][seated[i]].revealed != bytes32(0)) _credit(seated[i], part);
        }
        return slashed - part * revealers;
    }

    /// @inheritdoc IRedundantJobs
    /// @dev Zeroes the balance before the transfer.
    function withdraw() external nonReentrant {
        uint256 amount = withdrawable[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        withdrawable[msg.sender] = 0;
        _totalWithdrawable -= amount;
        emit Withdrawal(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed(msg.sender, amount);
    }

    // ---------------------------------------------------------------- internal

    /// @notice Job `jobId`'s storage; reverts unless it is Open.
    /// @param jobId The job.
    /// @return job The job's storage.
    function _openJob(uint256 jobId) internal view returns (Job storage job) {
        job = _jobs[jobId];
        Status status = job.status;
        if (status != Status.Open) {
            if (status == Status.None) revert JobNotFound(jobId);
            revert JobClosed(jobId, status);
        }
    }

    /// @notice Whether an Open job's outcome is fixed: every seat filled and revealed, quorum
    ///         out of reach after the commit deadline (fewer than k seats), or the reveal
    ///         deadline passed.
    /// @param job The job's storage.
    /// @return Whether `finalize` may settle it now.
    function _ready(Job storage job) internal view returns (bool) {
        uint256 commits = job.commits;
        if (commits == job.n && job.reveals == commits) return true;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp > job.revealDeadline) return true;
        // forge-lint: disable-next-line(block-timestamp)
        return block.timestamp > job.commitDeadline && (commits < job.k || job.reveals == commits);
    }

    /// @notice Adds `amount` to `account`'s withdrawable balance (skips zero).
    /// @param account The receiver.
    /// @param amount Wei.
    function _credit(address account, uint256 amount) internal {
        if (amount != 0) {
            withdrawable[account] += amount;
            _totalWithdrawable += amount;
        }
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IRedundantJobs
    function commitmentOf(bytes32 resultHash, bytes32 salt, address node) external pure returns (bytes32) {
        return keccak256(abi.encode(resultHash, salt, node));
    }

    /// @inheritdoc IRedundantJobs
    function getJob(uint256 jobId) external view returns (Job memory) {
        return _jobs[jobId];
    }

    /// @inheritdoc IRedundantJobs
    function nodesOf(uint256 jobId) external view returns (address[] memory) {
        return _nodes[jobId];
    }

    /// @inheritdoc IRedundantJobs
    function seatOf(uint256 jobId, address node) external view returns (Seat memory) {
        return _seats[jobId][node];
    }

    /// @inheritdoc IRedundantJobs
    function canFinalize(uint256 jobId) external view returns (bool) {
        Job storage job = _jobs[jobId];
        return job.status == Status.Open && _ready(job);
    }

    /// @inheritdoc IRedundantJobs
    function totalOwed() external view returns (uint256) {
        return _totalEscrow + _totalWithdrawable;
    }

    /// @inheritdoc IRedundantJobs
    function jobCount() external view returns (uint256) {
        return _jobCount;
    }
}
