// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {MarketFixture} from "../utils/MarketFixture.sol";
import {StdInvariant} from "../utils/Test.sol";
import {HostileHandler} from "./HostileHandler.sol";
import {HostileActor} from "./mocks/HostileActor.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {INodeRegistry} from "../../src/interfaces/INodeRegistry.sol";

/// @title HostileInvariantTest
/// @notice Random sequences of submits, claims, commits, time, settlements, cancels,
///         withdrawals and unbonds where every payer, node, keeper and the treasury is a
///         contract whose behaviour on payment changes at random (accept, refuse, burn all gas,
///         re-enter). Must hold after every call: each contract holds exactly what it owes; no
///         actor was ever paid more than it was owed before the call (nothing paid twice through
///         re-entry); and no settlement call ever reverted. After every run: everything settles
///         and everyone is paid exactly what it was credited, leaving the market empty.
/// @dev `FOUNDRY_PROFILE=long` runs this at 10k runs, with the other invariant suites.
contract HostileInvariantTest is MarketFixture {
    HostileHandler internal handler;
    address internal honestKeeper = makeAddr("honestKeeper");

    function setUp() public override {
        super.setUp();
        HostileActor hostileTreasury = _actor("hostileTreasury");
        vm.prank(deployer);
        market.setTreasury(address(hostileTreasury));

        HostileActor[] memory payers = new HostileActor[](3);
        HostileActor[] memory nodeActors = new HostileActor[](2);
        HostileActor[] memory keepers = new HostileActor[](2);
        for (uint256 i; i < 3; ++i) {
            payers[i] = _actor(string.concat("hostilePayer", vm.toString(i)));
        }
        for (uint256 i; i < 2; ++i) {
            nodeActors[i] = _actor(string.concat("hostileNode", vm.toString(i)));
            vm.deal(address(nodeActors[i]), 20 ether);
            nodeActors[i].exec(address(nodes), 20 ether, abi.encodeCall(INodeRegistry.register, ()));
            nodeActors[i].exec(
                address(nodes), 0, abi.encodeCall(INodeRegistry.setModelPrice, (modelId, (i + 1) * 0.001 ether))
            );
            keepers[i] = _actor(string.concat("hostileKeeper", vm.toString(i)));
        }

        handler = new HostileHandler(market, nodes, modelId, honestKeeper, hostileTreasury, payers, nodeActors, keepers);
        // Hostile from the start; `setMode` keeps changing it during the run.
        HostileActor.Mode[8] memory modes = [
            HostileActor.Mode.Revert, // treasury
            HostileActor.Mode.Reenter, // payers
            HostileActor.Mode.BurnGas,
            HostileActor.Mode.Accept,
            HostileActor.Mode.Reenter, // nodes
            HostileActor.Mode.Revert,
            HostileActor.Mode.Reenter, // keepers
            HostileActor.Mode.BurnGas
        ];
        for (uint256 i; i < modes.length; ++i) {
            handler.setMode(i, uint256(modes[i]));
        }
        targetContract(address(handler));
        // Weighted: jobs need submits, claims and commits to get far; payouts need withdrawals.
        bytes4[] memory selectors = new bytes4[](22);
        selectors[0] = HostileHandler.submit.selector;
        selectors[1] = HostileHandler.submit.selector;
        selectors[2] = HostileHandler.submit.selector;
        selectors[3] = HostileHandler.claim.selector;
        selectors[4] = HostileHandler.claim.selector;
        selectors[5] = HostileHandler.claim.selector;
        selectors[6] = HostileHandler.commit.selector;
        selectors[7] = HostileHandler.commit.selector;
        selectors[8] = HostileHandler.warp.selector;
        selectors[9] = HostileHandler.warp.selector;
        selectors[10] = HostileHandler.settle.selector;
        selectors[11] = HostileHandler.settle.selector;
        selectors[12] = HostileHandler.cancel.selector;
        selectors[13] = HostileHandler.withdraw.selector;
        selectors[14] = HostileHandler.withdraw.selector;
        selectors[15] = HostileHandler.withdraw.selector;
        selectors[16] = HostileHandler.withdraw.selector;
        selectors[17] = HostileHandler.unbond.selector;
        selectors[18] = HostileHandler.unbond.selector;
        selectors[19] = HostileHandler.withdrawUnbonded.selector;
        selectors[20] = HostileHandler.withdrawUnbonded.selector;
        selectors[21] = HostileHandler.setMode.selector;
        targetSelector(StdInvariant.FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    function _actor(string memory name) internal returns (HostileActor a) {
        a = new HostileActor();
        vm.label(address(a), name);
    }

    // ---------------------------------------------------------------- invariants

    /// @notice One campaign checks all three properties after every call (forge runs each
    ///         invariant_* function as a campaign of its own; one keeps the default run short).
    function invariant_hostilePayeesCannotExtractOrBlock() public view {
        _assertSolvent();
        _assertNothingPaidTwice();
        _assertSettlementNeverBlocked();
    }

    /// @notice market ETH == escrow + Σ withdrawable; registry ETH == Σ stakes.
    function _assertSolvent() internal view {
        uint256 owed = market.totalEscrow() + market.withdrawable(honestKeeper);
        uint256 stakes = nodes.getNode(node).stake;
        for (uint256 i; i < handler.actorCount(); ++i) {
            address a = address(handler.actors(i));
            owed += market.withdrawable(a);
            stakes += nodes.getNode(a).stake;
        }
        assertEq(address(market).balance, owed, "market ETH != escrow + withdrawable");
        assertEq(address(nodes).balance, stakes, "registry ETH != stakes");
    }

    /// @notice No actor was ever paid by the market more than its balance before the action,
    ///         nor by the registry more than its unbonding stake (no wei paid twice through
    ///         re-entry), nor had its balance cut by more than it was paid.
    function _assertNothingPaidTwice() internal view {
        assertEq(handler.ghostMispaid(), 0, "an actor was paid more than it was owed, or less than debited");
        for (uint256 i; i < handler.actorCount(); ++i) {
            HostileActor a = handler.actors(i);
            uint256 paid = handler.ghostPaidByMarket(address(a));
            assertEq(a.received(), paid + handler.ghostPaidByRegistry(address(a)), "received != paid out");
            assertEq(market.withdrawable(address(a)), handler.ghostCredited(address(a)) - paid, "ledger");
        }
    }

    /// @notice No finalizeMany / expireMany ever reverted, whatever the payees did.
    function _assertSettlementNeverBlocked() internal view {
        assertEq(handler.ghostSettlementReverts(), 0, "a settlement call reverted");
    }

    /// @notice After every run: all jobs settle, everyone withdraws, and each actor got exactly
    ///         what it was credited (plus its unbonded stake); the market is left empty.
    function afterInvariant() public {
        handler.settleAll(honestKeeper);
        handler.withdrawAll();
        if (market.withdrawable(honestKeeper) != 0) {
            vm.prank(honestKeeper);
            market.withdraw();
        }
        assertEq(market.totalEscrow(), 0, "escrow left");
        for (uint256 i; i < handler.jobCount(); ++i) {
            uint8 status = uint8(market.getJob(handler.jobIds(i)).status);
            assertGe(status, uint8(IJobMarket.JobStatus.Settled), "job not terminal");
        }
        for (uint256 i; i < handler.actorCount(); ++i) {
            HostileActor a = handler.actors(i);
            assertEq(market.withdrawable(address(a)), 0);
            assertEq(handler.ghostPaidByMarket(address(a)), handler.ghostCredited(address(a)), "paid != credited");
            assertEq(nodes.getNode(address(a)).locked, 0, "collateral left locked");
        }
        assertEq(address(market).balance, 0, "market ETH after withdrawals");
        _assertSolvent();
    }
}
