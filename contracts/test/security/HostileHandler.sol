// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "../utils/Test.sol";
import {HostileActor} from "./mocks/HostileActor.sol";
import {JobMarket} from "../../src/JobMarket.sol";
import {NodeRegistry} from "../../src/NodeRegistry.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {INodeRegistry} from "../../src/interfaces/INodeRegistry.sol";

/// @title HostileHandler
/// @notice Drives the real market for the invariant runner with every payee a HostileActor
///         (payers, nodes, keepers and the treasury) whose behaviour on payment the runner
///         switches at random: accept, refuse, burn all gas, re-enter withdraw / finalizeMany /
///         expireMany / cancel / withdrawUnbonded. Around every action it measures, per actor,
///         the ETH the market and the registry paid it and checks it against what the actor was
///         owed before the action (its market balance, its unbonding stake).
contract HostileHandler is Test {
    JobMarket public immutable market;
    NodeRegistry public immutable nodes;
    bytes32 public immutable modelId;
    /// @notice An EOA keeper: its settlement calls must never revert.
    address public immutable honestKeeper;

    HostileActor[] public payers;
    HostileActor[] public nodeActors;
    HostileActor[] public keepers;
    /// @notice Every actor above, and the treasury.
    HostileActor[] public actors;

    uint256[] public jobIds;

    /// @notice ETH the market paid each actor (through `withdraw`).
    mapping(address actor => uint256 amount) public ghostPaidByMarket;
    /// @notice ETH the registry paid each actor (unbonded stake).
    mapping(address actor => uint256 amount) public ghostPaidByRegistry;
    /// @notice Σ of each actor's credits: its market balance's rise plus what it was paid.
    mapping(address actor => uint256 amount) public ghostCredited;
    /// @notice Actions in which an actor received more from the market than its balance
    ///         before the action, or more from the registry than its unbonding stake, or
    ///         whose balance fell by more than it was paid; must stay 0.
    uint256 public ghostMispaid;
    /// @notice Settlement calls (finalizeMany / expireMany) that reverted; must stay 0.
    uint256 public ghostSettlementReverts;

    constructor(
        JobMarket market_,
        NodeRegistry nodes_,
        bytes32 modelId_,
        address honestKeeper_,
        HostileActor treasury_,
        HostileActor[] memory payers_,
        HostileActor[] memory nodes__,
        HostileActor[] memory keepers_
    ) {
        market = market_;
        nodes = nodes_;
        modelId = modelId_;
        honestKeeper = honestKeeper_;
        actors.push(treasury_);
        for (uint256 i; i < payers_.length; ++i) {
            payers.push(payers_[i]);
            actors.push(payers_[i]);
        }
        for (uint256 i; i < nodes__.length; ++i) {
            nodeActors.push(nodes__[i]);
            actors.push(nodes__[i]);
        }
        for (uint256 i; i < keepers_.length; ++i) {
            keepers.push(keepers_[i]);
            actors.push(keepers_[i]);
        }
    }

    // ---------------------------------------------------------------- bookkeeping

    /// @dev Per actor, over the wrapped action: what the market and the registry paid it
    ///      (measured on the actor's side), checked against what it was owed before; and its
    ///      credits (balance rise + market payments: exact even when both happen in one action).
    modifier tracked() {
        uint256 n = actors.length;
        uint256[4][] memory before = new uint256[4][](n);
        for (uint256 i; i < n; ++i) {
            HostileActor a = actors[i];
            before[i] = [
                market.withdrawable(address(a)),
                nodes.getNode(address(a)).unbonding,
                a.receivedFrom(address(market)),
                a.receivedFrom(address(nodes))
            ];
        }
        _;
        for (uint256 i; i < n; ++i) {
            HostileActor a = actors[i];
            uint256 fromMarket = a.receivedFrom(address(market)) - before[i][2];
            uint256 fromRegistry = a.receivedFrom(address(nodes)) - before[i][3];
            uint256 accounted = market.withdrawable(address(a)) + fromMarket;
            if (fromMarket > before[i][0] || fromRegistry > before[i][1] || accounted < before[i][0]) {
                ++ghostMispaid;
                continue;
            }
            ghostPaidByMarket[address(a)] += fromMarket;
            ghostPaidByRegistry[address(a)] += fromRegistry;
            ghostCredited[address(a)] += accounted - before[i][0];
        }
    }

    /// @dev The first of up to eight jobs from `seed` on (cyclically) in `status`, or 0.
    function _jobIn(uint256 seed, IJobMarket.JobStatus status) internal view returns (uint256) {
        uint256 n = jobIds.length;
        for (uint256 i; i < n && i < 8; ++i) {
            uint256 jobId = jobIds[(seed % n + i) % n];
            if (market.getJob(jobId).status == status) return jobId;
        }
        return 0;
    }

    /// @dev The first actor from `seed` on (cyclically) with a market balance, else `seed`'s.
    function _actorToPay(uint256 seed) internal view returns (HostileActor) {
        uint256 n = actors.length;
        for (uint256 i; i < n; ++i) {
            HostileActor a = actors[(seed % n + i) % n];
            if (market.withdrawable(address(a)) != 0) return a;
        }
        return actors[seed % n];
    }

    /// @dev Up to the last four job ids (the re-entry targets).
    function _recentIds() internal view returns (uint256[] memory ids) {
        uint256 n = jobIds.length < 4 ? jobIds.length : 4;
        ids = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            ids[i] = jobIds[jobIds.length - 1 - i];
        }
    }

    // ---------------------------------------------------------------- actions

    function submit(uint256 payerSeed, uint256 fee) external tracked {
        HostileActor p = payers[payerSeed % payers.length];
        uint96 maxFee = uint96(bound(fee, 0.001 ether, 0.5 ether));
        IJobMarket.JobRequest memory r = IJobMarket.JobRequest({
            modelId: modelId,
            inputHash: keccak256(hex"01"),
            input: hex"01",
            inputURI: "",
            maxFee: maxFee,
            deadline: uint40(block.timestamp + 1 hours),
            mode: IJobMarket.VerificationMode.None,
            callback: address(0),
            callbackGasLimit: 0,
            vaultAgent: address(0)
        });
        vm.deal(address(p), address(p).balance + maxFee);
        bytes memory ret = p.exec(address(market), maxFee, abi.encodeCall(IJobMarket.submitJob, (r)));
        jobIds.push(abi.decode(ret, (uint256)));
    }

    function claim(uint256 nodeSeed, uint256 jobSeed) external tracked {
        uint256 jobId = _jobIn(jobSeed, IJobMarket.JobStatus.Open);
        if (jobId == 0) return;
        HostileActor n = nodeActors[nodeSeed % nodeActors.length];
        try n.exec(address(market), 0, abi.encodeCall(IJobMarket.claimJob, (jobId))) {} catch {}
    }

    function commit(uint256 jobSeed) external tracked {
        uint256 jobId = _jobIn(jobSeed, IJobMarket.JobStatus.Claimed);
        if (jobId == 0) return;
        address claimer = market.getJob(jobId).node;
        bytes memory data = abi.encodeCall(IJobMarket.commitResult, (jobId, keccak256(hex"02"), hex"02", ""));
        try HostileActor(payable(claimer)).exec(address(market), 0, data) {} catch {}
    }

    /// @notice Time passes: up to 40 minutes, or (one call in six) a whole unbonding period.
    function warp(uint256 seconds_) external {
        vm.warp(block.timestamp + (seconds_ % 6 == 0 ? nodes.unbondingPeriod() : bound(seconds_, 0, 40 minutes)));
    }

    function cancel(uint256 jobSeed) external tracked {
        uint256 jobId = _jobIn(jobSeed, IJobMarket.JobStatus.Open);
        if (jobId == 0) return;
        address payer = market.getJob(jobId).payer;
        try HostileActor(payable(payer)).exec(address(market), 0, abi.encodeCall(IJobMarket.cancel, (jobId))) {}
            catch {}
    }

    /// @notice finalizeMany or expireMany over every job, from a hostile keeper or the EOA one.
    function settle(uint256 keeperSeed, bool expire) external tracked {
        bytes memory data = expire
            ? abi.encodeCall(IJobMarket.expireMany, (jobIds))
            : abi.encodeCall(IJobMarket.finalizeMany, (jobIds));
        bool ok;
        if (keeperSeed % 3 == 2) {
            vm.prank(honestKeeper);
            (ok,) = address(market).call(data);
        } else {
            try keepers[keeperSeed % keepers.length].exec(address(market), 0, data) {
                ok = true;
            } catch {}
        }
        if (!ok) ++ghostSettlementReverts;
    }

    function withdraw(uint256 actorSeed, uint256 gasSeed) external tracked {
        HostileActor a = _actorToPay(actorSeed);
        uint256 gas = bound(gasSeed, 200_000, 3_000_000);
        try a.exec{gas: gas}(address(market), 0, abi.encodeCall(IJobMarket.withdraw, ())) {} catch {}
    }

    function unbond(uint256 nodeSeed, uint256 amount) external tracked {
        HostileActor n = nodeActors[nodeSeed % nodeActors.length];
        uint256 free = nodes.freeStake(address(n));
        if (free == 0) return;
        bytes memory data = abi.encodeCall(INodeRegistry.requestUnbond, (bound(amount, 1, free)));
        try n.exec(address(nodes), 0, data) {} catch {}
    }

    function withdrawUnbonded(uint256 nodeSeed) external tracked {
        HostileActor n = nodeActors[nodeSeed % nodeActors.length];
        try n.exec(address(nodes), 0, abi.encodeCall(INodeRegistry.withdrawUnbonded, ())) {} catch {}
    }

    /// @notice Switches an actor's behaviour; a re-entrant one targets the latest jobs.
    function setMode(uint256 actorSeed, uint256 modeSeed) external {
        HostileActor a = actors[actorSeed % actors.length];
        HostileActor.Mode mode = HostileActor.Mode(modeSeed % 4);
        a.setMode(mode);
        a.clearReentries();
        if (mode != HostileActor.Mode.Reenter) return;
        uint256[] memory ids = _recentIds();
        a.addReentry(address(market), abi.encodeCall(IJobMarket.withdraw, ()));
        a.addReentry(address(market), abi.encodeCall(IJobMarket.finalizeMany, (ids)));
        a.addReentry(address(market), abi.encodeCall(IJobMarket.expireMany, (ids)));
        if (ids.length != 0) a.addReentry(address(market), abi.encodeCall(IJobMarket.cancel, (ids[0])));
        a.addReentry(address(nodes), abi.encodeCall(INodeRegistry.withdrawUnbonded, ()));
    }

    // ---------------------------------------------------------------- after a run

    /// @notice Every actor accepts payment again, and `settler` settles every job once its
    ///         time has come (past every deadline, window and unbonding period).
    function settleAll(address settler) external tracked {
        for (uint256 i; i < actors.length; ++i) {
            actors[i].setMode(HostileActor.Mode.Accept);
        }
        vm.warp(block.timestamp + 8 days);
        vm.startPrank(settler);
        market.finalizeMany(jobIds);
        market.expireMany(jobIds);
        vm.stopPrank();
    }

    /// @notice Every actor withdraws its market balance and its unbonded stake.
    function withdrawAll() external tracked {
        for (uint256 i; i < actors.length; ++i) {
            HostileActor a = actors[i];
            if (market.withdrawable(address(a)) != 0) {
                a.exec(address(market), 0, abi.encodeCall(IJobMarket.withdraw, ()));
            }
            if (nodes.getNode(address(a)).unbonding != 0) {
                a.exec(address(nodes), 0, abi.encodeCall(INodeRegistry.withdrawUnbonded, ()));
            }
        }
    }

    // ---------------------------------------------------------------- views

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    function jobCount() external view returns (uint256) {
        return jobIds.length;
    }
}
