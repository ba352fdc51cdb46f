// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {MarketFixture} from "../utils/MarketFixture.sol";
import {MarketHandler} from "./MarketHandler.sol";
import {StdInvariant} from "../utils/Test.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IPaymentVault} from "../../src/interfaces/IPaymentVault.sol";

/// @title MarketInvariantTest
/// @notice Solvency and conservation of ETH across the market, the node registry and the vault
///         under random sequences of submits (ETH or vault), claims, commits (with hostile
///         callbacks), time, finalizes, expiries, cancels, unbonds and withdrawals; and, after
///         every run, that an unprivileged caller can settle everything and nothing is left.
contract MarketInvariantTest is MarketFixture {
    MarketHandler internal handler;

    function setUp() public override {
        super.setUp();
        address[] memory payers = new address[](3);
        address[] memory nodeActors = new address[](3);
        address[] memory keepers = new address[](2);
        address[] memory agents = new address[](2);
        for (uint256 i; i < 3; ++i) {
            payers[i] = makeAddr(string.concat("payer", vm.toString(i)));
            nodeActors[i] = makeAddr(string.concat("node", vm.toString(i)));
            _stakeNode(nodeActors[i], 20 ether, (i + 1) * 0.01 ether);
        }
        keepers[0] = makeAddr("keeper0");
        keepers[1] = makeAddr("keeper1");
        for (uint256 i; i < 2; ++i) {
            agents[i] = makeAddr(string.concat("agent", vm.toString(i)));
            _openVaultFor(agents[i], payers);
        }

        handler = new MarketHandler(market, nodes, vault, modelId, payers, nodeActors, keepers, agents, treasury);
        targetContract(address(handler));
        // Submit, claim and commit weigh more, so that jobs get far along their lifecycle.
        bytes4[] memory selectors = new bytes4[](16);
        selectors[0] = MarketHandler.submit.selector;
        selectors[1] = MarketHandler.submit.selector;
        selectors[2] = MarketHandler.submit.selector;
        selectors[3] = MarketHandler.claim.selector;
        selectors[4] = MarketHandler.claim.selector;
        selectors[5] = MarketHandler.claim.selector;
        selectors[6] = MarketHandler.commit.selector;
        selectors[7] = MarketHandler.commit.selector;
        selectors[8] = MarketHandler.warp.selector;
        selectors[9] = MarketHandler.finalize.selector;
        selectors[10] = MarketHandler.finalizeMany.selector;
        selectors[11] = MarketHandler.expire.selector;
        selectors[12] = MarketHandler.expireMany.selector;
        selectors[13] = MarketHandler.cancel.selector;
        selectors[14] = MarketHandler.withdraw.selector;
        selectors[15] = MarketHandler.unbond.selector;
        targetSelector(StdInvariant.FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    /// @dev A vault account for `who` with a tight-ish policy (some pulls fail), spendable by `keys`.
    function _openVaultFor(address who, address[] memory keys) internal {
        vm.deal(funder, 30 ether);
        vm.prank(funder);
        IPaymentVault.Policy memory policy = IPaymentVault.Policy({
            maxFeePerJob: 0.8 ether, budgetPerPeriod: 20 ether, periodLength: 1 hours, anyModel: true
        });
        vault.openAccount{value: 30 ether}(who, policy, new bytes32[](0), keys);
    }

    // ---------------------------------------------------------------- invariants

    /// @notice (a) Each contract holds exactly what it owes: market ETH == totalEscrow +
    ///         Σ withdrawable; registry ETH == Σ stakes; vault ETH == Σ account balances.
    function invariant_solvency() public view {
        uint256 owed = market.totalEscrow();
        for (uint256 i; i < handler.creditableCount(); ++i) {
            owed += market.withdrawable(handler.creditable(i));
        }
        assertEq(address(market).balance, owed, "market ETH != escrow + withdrawable");

        uint256 stakes = nodes.getNode(node).stake;
        for (uint256 i; i < handler.nodeCount(); ++i) {
            stakes += nodes.getNode(handler.nodeActors(i)).stake;
        }
        assertEq(address(nodes).balance, stakes, "registry ETH != stakes");

        uint256 balances = vault.getAccount(agent).balance;
        for (uint256 i; i < handler.agentCount(); ++i) {
            balances += vault.getAccount(handler.agents(i)).balance;
        }
        assertEq(address(vault).balance, balances, "vault ETH != balances");
    }

    /// @notice (b) Every settled job paid out exactly its escrow (finalize: nodePayout + fee +
    ///         refund; expire and cancel: the whole escrow back), a slash split sums to the
    ///         slashed collateral, and totalEscrow is the escrow of the jobs still open.
    function invariant_conservation() public view {
        uint256 openEscrow;
        for (uint256 i; i < handler.jobCount(); ++i) {
            uint256 jobId = handler.jobIds(i);
            MarketHandler.GhostJob memory g = handler.ghost(jobId);
            IJobMarket.JobStatus status = market.getJob(jobId).status;
            bool terminal = uint8(status) >= uint8(IJobMarket.JobStatus.Settled);
            assertEq(terminal, g.terminal, "status and events disagree");
            if (!terminal) {
                openEscrow += g.escrow;
                continue;
            }
            assertEq(g.paidOut, g.escrow, "paid out != escrow");
            if (status == IJobMarket.JobStatus.Expired) {
                assertEq(g.slashed, g.collateral, "slashed != collateral");
                assertLe(g.compensation, g.slashed);
            }
        }
        assertEq(market.totalEscrow(), openEscrow, "totalEscrow != open escrow");
        assertEq(market.jobCount(), handler.jobCount(), "job count");
    }

    /// @notice (c) After every run: an unprivileged caller settles every job once its time has
    ///         come; then no escrow is left, the market holds exactly Σ withdrawable, and once
    ///         everyone withdraws it holds nothing.
    function afterInvariant() public {
        address stranger = makeAddr("stranger");
        handler.settleEverything(stranger);

        assertEq(market.totalEscrow(), 0, "escrow left");
        uint256 owed;
        for (uint256 i; i < handler.jobCount(); ++i) {
            uint8 status = uint8(market.getJob(handler.jobIds(i)).status);
            assertGe(status, uint8(IJobMarket.JobStatus.Settled), "job not terminal");
        }
        for (uint256 i; i < handler.creditableCount(); ++i) {
            owed += market.withdrawable(handler.creditable(i));
        }
        assertEq(address(market).balance, owed, "market ETH != withdrawable");
        invariant_conservation();

        for (uint256 i; i < handler.creditableCount(); ++i) {
            address account = handler.creditable(i);
            if (market.withdrawable(account) == 0) continue;
            vm.prank(account);
            market.withdraw();
        }
        assertEq(address(market).balance, 0, "market ETH after withdrawals");
        for (uint256 i; i < handler.nodeCount(); ++i) {
            assertEq(nodes.getNode(handler.nodeActors(i)).locked, 0, "collateral still locked");
        }
    }
}
