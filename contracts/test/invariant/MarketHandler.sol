// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test, Vm} from "../utils/Test.sol";
import {JobMarket} from "../../src/JobMarket.sol";
import {NodeRegistry} from "../../src/NodeRegistry.sol";
import {PaymentVault} from "../../src/PaymentVault.sol";
import {IJobConsumer} from "../../src/interfaces/IJobConsumer.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";

/// @notice A consumer that reverts or burns its gas, chosen per call by the result hash.
contract HostileConsumer is IJobConsumer {
    function onJobResult(uint256, bytes32 resultHash, bytes calldata) external pure {
        if (uint256(resultHash) % 2 == 0) revert("hostile");
        while (true) {}
    }
}

/// @title MarketHandler
/// @notice Drives the real protocol for the invariant runner. Actors: payers (who also hold
///         the vault agents' spending keys), nodes and keepers. Every settlement amount is
///         recorded from the market's own events into ghost variables.
contract MarketHandler is Test {
    /// @notice What the ghosts know about a job.
    struct GhostJob {
        /// @notice The escrow taken at submit.
        uint256 escrow;
        /// @notice Collateral locked at claim (0 while unclaimed).
        uint256 collateral;
        /// @notice Whether an event moved the job to a terminal state.
        bool terminal;
        /// @notice Sum of what the terminal event paid out of the escrow (payout + fee + refund).
        uint256 paidOut;
        /// @notice From JobExpired: slashed collateral and its split.
        uint256 slashed;
        uint256 compensation;
    }

    JobMarket public immutable market;
    NodeRegistry public immutable nodes;
    PaymentVault public immutable vault;
    bytes32 public immutable modelId;
    address public immutable consumer;

    address[] public payers;
    address[] public nodeActors;
    address[] public keepers;
    address[] public agents;
    /// @notice Every account the market may credit (payers, nodes, keepers, treasury).
    address[] public creditable;

    uint256[] public jobIds;
    mapping(uint256 jobId => GhostJob ghost) public ghosts;

    uint256 public ghostSubmitted;
    uint256 public ghostSettled;
    uint256 public ghostExpired;
    uint256 public ghostCancelled;
    uint256 public ghostWithdrawn;
    mapping(bytes32 action => uint256 count) public calls;

    constructor(
        JobMarket market_,
        NodeRegistry nodes_,
        PaymentVault vault_,
        bytes32 modelId_,
        address[] memory payers_,
        address[] memory nodes__,
        address[] memory keepers_,
        address[] memory agents_,
        address treasury
    ) {
        market = market_;
        nodes = nodes_;
        vault = vault_;
        modelId = modelId_;
        consumer = address(new HostileConsumer());
        payers = payers_;
        nodeActors = nodes__;
        keepers = keepers_;
        agents = agents_;
        for (uint256 i; i < payers_.length; ++i) {
            creditable.push(payers_[i]);
        }
        for (uint256 i; i < nodes__.length; ++i) {
            creditable.push(nodes__[i]);
        }
        for (uint256 i; i < keepers_.length; ++i) {
            creditable.push(keepers_[i]);
        }
        creditable.push(treasury);
    }

    // ---------------------------------------------------------------- helpers

    function _pick(address[] storage actors, uint256 seed) internal view returns (address) {
        return actors[seed % actors.length];
    }

    function _job(uint256 seed) internal view returns (uint256) {
        return jobIds[seed % jobIds.length];
    }

    /// @dev The first job from a seeded start in `status`, or a seeded job when none is (so
    ///      the failing paths are driven too).
    function _jobIn(uint256 seed, IJobMarket.JobStatus status) internal view returns (uint256) {
        uint256 n = jobIds.length;
        for (uint256 i; i < n; ++i) {
            uint256 jobId = jobIds[(seed % n + i) % n];
            if (market.getJob(jobId).status == status) return jobId;
        }
        return _job(seed);
    }

    function _ids(uint256 seed, uint256 count) internal view returns (uint256[] memory ids) {
        ids = new uint256[](bound(count, 1, 8));
        for (uint256 i; i < ids.length; ++i) {
            ids[i] = _job(uint256(keccak256(abi.encode(seed, i))));
        }
    }

    /// @dev Reads the market's terminal events from the recorded logs into the ghosts.
    function _recordSettlements() internal {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter != address(market)) continue;
            bytes32 topic = logs[i].topics[0];
            uint256 jobId = uint256(logs[i].topics.length > 1 ? logs[i].topics[1] : bytes32(0));
            GhostJob storage g = ghosts[jobId];
            if (topic == IJobMarket.JobFinalized.selector) {
                (uint256 nodePayout, uint256 fee, uint256 refund) =
                    abi.decode(logs[i].data, (uint256, uint256, uint256));
                _terminal(g, nodePayout + fee + refund);
                ++ghostSettled;
            } else if (topic == IJobMarket.JobExpired.selector) {
                (uint256 refund, uint256 slashed, uint256 compensation) =
                    abi.decode(logs[i].data, (uint256, uint256, uint256));
                _terminal(g, refund);
                g.slashed = slashed;
                g.compensation = compensation;
                ++ghostExpired;
            } else if (topic == IJobMarket.JobCancelled.selector) {
                _terminal(g, abi.decode(logs[i].data, (uint256)));
                ++ghostCancelled;
            }
        }
    }

    function _terminal(GhostJob storage g, uint256 paidOut) internal {
        require(!g.terminal, "job settled twice");
        g.terminal = true;
        g.paidOut = paidOut;
    }

    // ---------------------------------------------------------------- actions

    /// @notice A payer submits a job, paid with ETH or from a vault agent's account.
    function submit(uint256 actorSeed, uint96 maxFee, uint256 duration, bool fromVault, uint8 callbackKind) external {
        address payer = _pick(payers, actorSeed);
        maxFee = uint96(bound(maxFee, 0.01 ether, 1 ether)); // some below the dearer nodes' prices
        bytes memory input = abi.encodePacked(actorSeed, maxFee);
        IJobMarket.JobRequest memory r = IJobMarket.JobRequest({
            modelId: modelId,
            inputHash: keccak256(input),
            input: input,
            inputURI: "",
            maxFee: maxFee,
            deadline: uint40(block.timestamp + bound(duration, 1, market.maxJobDuration())),
            mode: IJobMarket.VerificationMode.None,
            callback: callbackKind % 3 == 0 ? consumer : address(0),
            callbackGasLimit: callbackKind % 3 == 0 ? 50_000 : 0,
            vaultAgent: fromVault ? _pick(agents, actorSeed / 7) : address(0)
        });
        vm.deal(payer, payer.balance + maxFee);
        vm.prank(payer);
        try market.submitJob{value: fromVault ? 0 : maxFee}(r) returns (uint256 jobId) {
            jobIds.push(jobId);
            ghosts[jobId].escrow = maxFee;
            ++ghostSubmitted;
            ++calls["submit"];
        } catch {}
    }

    /// @notice A node claims a job.
    function claim(uint256 nodeSeed, uint256 jobSeed) external {
        if (jobIds.length == 0) return;
        uint256 jobId = _jobIn(jobSeed, IJobMarket.JobStatus.Open);
        vm.prank(_pick(nodeActors, nodeSeed));
        try market.claimJob(jobId) {
            ghosts[jobId].collateral = market.getJob(jobId).collateral;
            ++calls["claim"];
        } catch {}
    }

    /// @notice A job's claimer commits a result (inline or by URI).
    function commit(uint256 jobSeed, bytes32 resultHash, bool inlineOutput) external {
        if (jobIds.length == 0) return;
        uint256 jobId = _jobIn(jobSeed, IJobMarket.JobStatus.Claimed);
        address claimer = market.getJob(jobId).node;
        if (claimer == address(0)) return;
        bytes memory output = abi.encodePacked(resultHash);
        vm.prank(claimer);
        try market.commitResult(
            jobId, inlineOutput ? keccak256(output) : resultHash, inlineOutput ? output : bytes(""), "blob://o"
        ) {
            ++calls["commit"];
        } catch {}
    }

    /// @notice Time passes (up to 20 minutes: deadlines are up to an hour ahead).
    function warp(uint256 seconds_) external {
        vm.warp(block.timestamp + bound(seconds_, 0, 20 minutes));
        ++calls["warp"];
    }

    /// @notice A keeper finalizes one job (after waiting out its window, when `wait`).
    function finalize(uint256 keeperSeed, uint256 jobSeed, bool wait) external {
        if (jobIds.length == 0) return;
        uint256 jobId = _jobIn(jobSeed, IJobMarket.JobStatus.Committed);
        uint256 windowEnd = market.getJob(jobId).windowEnd;
        if (wait && windowEnd > block.timestamp) vm.warp(windowEnd);
        vm.recordLogs();
        vm.prank(_pick(keepers, keeperSeed));
        try market.finalize(jobId) {
            ++calls["finalize"];
        } catch {}
        _recordSettlements();
    }

    /// @notice A keeper finalizes a batch (some not finalizable, some repeated).
    function finalizeMany(uint256 keeperSeed, uint256 jobSeed, uint256 count) external {
        if (jobIds.length == 0) return;
        vm.recordLogs();
        vm.prank(_pick(keepers, keeperSeed));
        market.finalizeMany(_ids(jobSeed, count));
        ++calls["finalizeMany"];
        _recordSettlements();
    }

    /// @notice A keeper (or a node, after its own missed deadline) expires one job.
    function expire(uint256 callerSeed, uint256 jobSeed, bool byNode) external {
        if (jobIds.length == 0) return;
        uint256 jobId = _jobIn(jobSeed, jobSeed % 2 == 0 ? IJobMarket.JobStatus.Claimed : IJobMarket.JobStatus.Open);
        vm.recordLogs();
        // Picked before the prank: a prank applies to the very next call.
        vm.prank(byNode ? _pick(nodeActors, callerSeed) : _pick(keepers, callerSeed));
        try market.expire(jobId) {
            ++calls["expire"];
        } catch {}
        _recordSettlements();
    }

    /// @notice A keeper expires a batch.
    function expireMany(uint256 keeperSeed, uint256 jobSeed, uint256 count) external {
        if (jobIds.length == 0) return;
        vm.recordLogs();
        vm.prank(_pick(keepers, keeperSeed));
        market.expireMany(_ids(jobSeed, count));
        ++calls["expireMany"];
        _recordSettlements();
    }

    /// @notice A job's payer (a payer key, or a vault agent) cancels it.
    function cancel(uint256 jobSeed) external {
        if (jobIds.length == 0) return;
        uint256 jobId = _jobIn(jobSeed, IJobMarket.JobStatus.Open);
        vm.recordLogs();
        vm.prank(market.getJob(jobId).payer);
        try market.cancel(jobId) {
            ++calls["cancel"];
        } catch {}
        _recordSettlements();
    }

    /// @notice Someone the market owes withdraws.
    function withdraw(uint256 actorSeed) external {
        address account = _pick(creditable, actorSeed);
        uint256 amount = market.withdrawable(account);
        if (amount == 0) return;
        vm.prank(account);
        market.withdraw();
        ghostWithdrawn += amount;
        ++calls["withdraw"];
    }

    /// @notice A node starts unbonding up to 2 ether of its free stake (fewer claims will fit).
    function unbond(uint256 nodeSeed, uint256 amount) external {
        address n = _pick(nodeActors, nodeSeed);
        uint256 free = nodes.freeStake(n);
        if (free == 0) return;
        vm.prank(n);
        nodes.requestUnbond(bound(amount, 1, free < 2 ether ? free : 2 ether));
        ++calls["unbond"];
    }

    // ---------------------------------------------------------------- end of run

    /// @notice Brings every job to a terminal state as `caller` (a fresh, unprivileged account,
    ///         added to the creditable ones): warps past every deadline and window, then expires
    ///         and finalizes everything.
    function settleEverything(address caller) external {
        creditable.push(caller);
        vm.warp(block.timestamp + market.longestWindow() + 1);
        uint256[] memory ids = jobIds;
        vm.recordLogs();
        vm.startPrank(caller);
        market.expireMany(ids);
        market.finalizeMany(ids);
        vm.stopPrank();
        _recordSettlements();
    }

    // ---------------------------------------------------------------- views

    function jobCount() external view returns (uint256) {
        return jobIds.length;
    }

    function creditableCount() external view returns (uint256) {
        return creditable.length;
    }

    function nodeCount() external view returns (uint256) {
        return nodeActors.length;
    }

    function agentCount() external view returns (uint256) {
        return agents.length;
    }

    function ghost(uint256 jobId) external view returns (GhostJob memory) {
        return ghosts[jobId];
    }
}
