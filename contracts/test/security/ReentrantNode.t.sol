// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {HostileFixture} from "./HostileFixture.sol";
import {HostileActor} from "./mocks/HostileActor.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {INodeRegistry} from "../../src/interfaces/INodeRegistry.sol";

/// @title ReentrantNodeTest
/// @notice Nodes that are hostile contracts: re-entering claim / commit / withdrawUnbonded /
///         requestUnbond from their stake withdrawal and from their market payout, refusing
///         payment, burning the gas they are sent. Also the one consumer gap Callback.t.sol
///         leaves: a consumer re-entering every settlement entry point from its callback.
///         Must hold: no wei paid twice or early, the registry's stake accounting exact, and
///         every other job and node unaffected.
contract ReentrantNodeTest is HostileFixture {
    uint256 internal constant STAKE = 10 ether;
    uint256 internal constant COLLATERAL = uint256(MAX_FEE) * COLLATERAL_BPS / 10_000;
    uint256 internal constant COMPENSATION = COLLATERAL * SLASH_PAYER_BPS / 10_000;
    uint256 internal constant KEEPER_REWARD = COLLATERAL - COMPENSATION;

    function _unbond(HostileActor n, uint256 amount) internal {
        n.exec(address(nodes), 0, abi.encodeCall(INodeRegistry.requestUnbond, (amount)));
    }

    function _withdrawUnbondedCall() internal pure returns (bytes memory) {
        return abi.encodeCall(INodeRegistry.withdrawUnbonded, ());
    }

    function _assertNode(address who, uint256 stake, uint256 locked, uint256 unbonding) internal view {
        INodeRegistry.Node memory n = nodes.getNode(who);
        assertEq(n.stake, stake, "stake");
        assertEq(n.locked, locked, "locked");
        assertEq(n.unbonding, unbonding, "unbonding");
    }

    function test_withdrawUnbonded_nodeReenteringClaimCommitUnbondKeepsStakeExact() public {
        HostileActor n = _hostile("reentrantNode", HostileActor.Mode.Accept);
        _stakeAs(n, STAKE, PRICE);
        _unbond(n, 4 ether);
        vm.warp(block.timestamp + UNBONDING_PERIOD);
        uint256 toClaim = _submit();
        uint256 toCommit = _submit();
        _claimAs(n, toCommit);

        n.setMode(HostileActor.Mode.Reenter);
        n.addReentry(address(nodes), _withdrawUnbondedCall());
        n.addReentry(address(market), abi.encodeCall(IJobMarket.claimJob, (toClaim)));
        n.addReentry(address(market), _commitCall(toCommit));
        n.addReentry(address(nodes), abi.encodeCall(INodeRegistry.requestUnbond, (5 ether)));
        n.addReentry(address(nodes), abi.encodeCall(INodeRegistry.requestUnbond, (1 ether)));
        n.addReentry(address(market), abi.encodeCall(IJobMarket.withdraw, ()));
        n.exec(address(nodes), 0, _withdrawUnbondedCall());

        // Stake leaves before the call, so the re-entries see 6 ether: claiming and unbonding
        // work on what is really free, and nothing is paid twice.
        assertEq(n.received(), 4 ether, "paid once");
        _assertReentryRefused(n, 0, abi.encodeWithSelector(ReentrancyGuard.ReentrancyGuardReentrantCall.selector));
        _assertReentryOk(n, 1);
        _assertReentryOk(n, 2);
        _assertReentryOk(n, 3);
        uint256 free = 6 ether - 2 * COLLATERAL - 5 ether;
        _assertReentryRefused(
            n, 4, abi.encodeWithSelector(INodeRegistry.InsufficientFreeStake.selector, address(n), 1 ether, free)
        );
        _assertReentryRefused(n, 5, abi.encodeWithSelector(IJobMarket.NothingToWithdraw.selector, address(n)));
        _assertNode(address(n), 6 ether, 2 * COLLATERAL, 5 ether);
        _assertStatus(toClaim, IJobMarket.JobStatus.Claimed);
        _assertStatus(toCommit, IJobMarket.JobStatus.Committed);
        _assertAllSolvent();

        vm.warp(market.getJob(toClaim).deadline + 1);
        vm.startPrank(keeper);
        market.finalize(toCommit);
        market.expire(toClaim);
        vm.stopPrank();
        (, uint256 payout,) = _split(PRICE, MAX_FEE);
        _assertNode(address(n), 6 ether - COLLATERAL, 0, 5 ether);
        n.setMode(HostileActor.Mode.Accept);
        _withdrawAs(n);
        assertEq(n.received(), 4 ether + payout);
        assertEq(market.withdrawable(keeper), KEEPER_REWARD);
        assertEq(address(nodes).balance, NODE_STAKE + 6 ether - COLLATERAL);
        _assertAllSolvent();
    }

    function test_withdraw_nodeReenteringFromItsPayoutIsPaidExactlyOnce() public {
        HostileActor n = _hostile("reentrantNode", HostileActor.Mode.Accept);
        _stakeAs(n, STAKE, PRICE);
        _unbond(n, 1 ether);
        uint256 stale = _submit();
        vm.warp(block.timestamp + UNBONDING_PERIOD);
        uint256 paid = _submit();
        uint256 other = _submit();
        uint256 open = _submit();
        _claimAs(n, paid);
        _commitAs(n, paid);
        _claimAs(n, other);
        _commitAs(n, other);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.prank(keeper);
        market.finalize(paid);
        (, uint256 payout,) = _split(PRICE, MAX_FEE);

        n.setMode(HostileActor.Mode.Reenter);
        n.addReentry(address(market), abi.encodeCall(IJobMarket.withdraw, ()));
        n.addReentry(address(market), abi.encodeCall(IJobMarket.finalize, (other)));
        n.addReentry(address(market), abi.encodeCall(IJobMarket.finalizeMany, (_ids(other))));
        n.addReentry(address(market), abi.encodeCall(IJobMarket.expire, (stale)));
        n.addReentry(address(market), abi.encodeCall(IJobMarket.claimJob, (open)));
        n.addReentry(address(market), _commitCall(open));
        n.addReentry(address(nodes), _withdrawUnbondedCall());
        _withdrawAs(n);

        assertEq(n.received(), payout + 1 ether, "payout once, plus its own unbonded stake");
        for (uint256 i; i < 4; ++i) {
            _assertGuarded(n, i);
        }
        for (uint256 i = 4; i < 7; ++i) {
            _assertReentryOk(n, i); // claim and commit are not value moves; the registry is separate
        }
        assertEq(market.withdrawable(address(n)), 0);
        _assertStatus(other, IJobMarket.JobStatus.Committed);
        _assertStatus(stale, IJobMarket.JobStatus.Open);
        _assertStatus(open, IJobMarket.JobStatus.Committed);
        _assertNode(address(n), STAKE - 1 ether, 2 * COLLATERAL, 0);
        _assertAllSolvent();

        vm.warp(market.getJob(open).deadline + 1);
        vm.startPrank(keeper);
        assertEq(market.finalizeMany(_ids(other, open)), 2);
        market.expire(stale);
        vm.stopPrank();
        _withdrawAs(n);
        assertEq(n.received(), 3 * payout + 1 ether);
        _assertNode(address(n), STAKE - 1 ether, 0, 0);
        assertEq(market.totalEscrow(), 0);
        _assertAllSolvent();
    }

    function test_refusingNode_isSettledAndSlashedButBlocksOnlyItself() public {
        _assertNodeBlocksOnlyItself(HostileActor.Mode.Revert);
    }

    function test_gasBurningNode_isSettledAndSlashedButBlocksOnlyItself() public {
        _assertNodeBlocksOnlyItself(HostileActor.Mode.BurnGas);
    }

    /// @dev A node contract in `mode` serves one job and abandons another; both settle, the
    ///      slash reaches the market (not the node), and only the node's own withdrawals fail.
    function _assertNodeBlocksOnlyItself(HostileActor.Mode mode) internal {
        HostileActor n = _hostile("hostileNode", HostileActor.Mode.Accept);
        _stakeAs(n, STAKE, PRICE);
        _unbond(n, 2 ether);
        vm.warp(block.timestamp + UNBONDING_PERIOD);
        uint256 served = _submit();
        uint256 abandoned = _submit();
        _claimAs(n, served);
        _commitAs(n, served);
        _claimAs(n, abandoned);
        uint256 honest = _committedJob();
        n.setMode(mode);
        vm.warp(market.getJob(abandoned).deadline + 1);

        vm.startPrank(keeper);
        assertEq(market.finalizeMany(_ids(served, honest)), 2);
        market.expire(abandoned);
        vm.stopPrank();

        (, uint256 payout, uint256 refund) = _split(PRICE, MAX_FEE);
        assertEq(market.withdrawable(address(n)), payout);
        assertEq(market.withdrawable(node), payout);
        assertEq(market.withdrawable(keeper), KEEPER_REWARD);
        assertEq(market.withdrawable(payer), 2 * refund + MAX_FEE + COMPENSATION);
        _assertNode(address(n), STAKE - COLLATERAL, 0, 2 ether);

        vm.expectRevert(abi.encodeWithSelector(IJobMarket.TransferFailed.selector, address(n), payout));
        n.exec{gas: 1_000_000}(address(market), 0, abi.encodeCall(IJobMarket.withdraw, ()));
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.TransferFailed.selector, address(n), 2 ether));
        n.exec{gas: 1_000_000}(address(nodes), 0, _withdrawUnbondedCall());
        _assertNode(address(n), STAKE - COLLATERAL, 0, 2 ether);
        assertEq(market.withdrawable(address(n)), payout);
        _assertAllSolvent();

        vm.prank(node);
        market.withdraw();
        assertEq(node.balance, payout);
        n.setMode(HostileActor.Mode.Accept);
        n.exec(address(nodes), 0, _withdrawUnbondedCall());
        _withdrawAs(n);
        assertEq(n.received(), 2 ether + payout);
        _assertAllSolvent();
    }

    function test_commitCallback_consumerReenteringEveryEntryPointMovesNoExtraWei() public {
        HostileActor consumer = _hostile("reentrantConsumer", HostileActor.Mode.Reenter);
        uint256 stale = _submit();
        _claim(stale);
        vm.warp(block.timestamp + 30 minutes);
        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        r.callback = address(consumer);
        r.callbackGasLimit = 1_000_000;
        vm.prank(payer);
        uint256 jobId = market.submitJob{value: MAX_FEE}(r);
        _claim(jobId);
        vm.warp(market.getJob(stale).deadline + 1); // stale is expirable, jobId still open to commit

        bytes memory committed =
            abi.encodeWithSelector(IJobMarket.InvalidJobStatus.selector, jobId, IJobMarket.JobStatus.Committed);
        consumer.addReentry(address(market), abi.encodeCall(IJobMarket.expire, (jobId)));
        consumer.addReentry(address(market), abi.encodeCall(IJobMarket.cancel, (jobId)));
        consumer.addReentry(address(market), abi.encodeCall(IJobMarket.claimJob, (jobId)));
        consumer.addReentry(address(market), _commitCall(jobId));
        consumer.addReentry(address(market), abi.encodeCall(IJobMarket.finalize, (jobId)));
        consumer.addReentry(address(market), abi.encodeCall(IJobMarket.withdraw, ()));
        consumer.addReentry(address(market), abi.encodeCall(IJobMarket.expire, (stale)));
        consumer.addReentry(address(market), abi.encodeCall(IJobMarket.withdraw, ()));
        _commit(jobId);

        uint256 windowEnd = block.timestamp + CHALLENGE_WINDOW;
        for (uint256 i; i < 4; ++i) {
            _assertReentryRefused(consumer, i, committed);
        }
        _assertReentryRefused(consumer, 4, abi.encodeWithSelector(IJobMarket.WindowNotOver.selector, jobId, windowEnd));
        _assertReentryRefused(
            consumer, 5, abi.encodeWithSelector(IJobMarket.NothingToWithdraw.selector, address(consumer))
        );
        _assertReentryOk(consumer, 6); // expiring a stale job is open to anyone, the callback too
        _assertReentryOk(consumer, 7);
        assertEq(consumer.received(), KEEPER_REWARD, "only the keeper reward it earned");
        _assertStatus(jobId, IJobMarket.JobStatus.Committed);

        vm.warp(windowEnd);
        vm.prank(keeper);
        market.finalize(jobId);
        (uint256 fee, uint256 payout, uint256 refund) = _split(PRICE, MAX_FEE);
        assertEq(market.withdrawable(node), payout);
        assertEq(market.withdrawable(treasury), fee);
        assertEq(market.withdrawable(payer), refund + MAX_FEE + COMPENSATION);
        assertEq(market.withdrawable(address(consumer)), 0);
        assertEq(market.totalEscrow(), 0);
        _assertAllSolvent();
    }
}
