// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {MarketFixture} from "./utils/MarketFixture.sol";
import {IJobMarket} from "../src/interfaces/IJobMarket.sol";

/// @title JobMarketFuzzTest
/// @notice Money conservation to the wei over fees from 1 wei to 2^96 - 1, any price, fee,
///         collateral and slash split, and the deadline / window edges over any timings.
contract JobMarketFuzzTest is MarketFixture {
    uint256 internal constant UINT96_MAX = type(uint96).max;

    /// @dev Deploys with fuzzed money parameters (collateral kept within uint96 for `maxFee`),
    ///      prices the node at `price` and gives it enough free stake for the collateral.
    function _deployFor(uint96 maxFee, uint256 price, uint256 feeBps, uint256 collateralBps, uint256 minCollateral)
        internal
        returns (uint256 collateral)
    {
        Params memory p = _defaultParams();
        p.feeBps = uint16(bound(feeBps, 0, 1000));
        uint256 maxCollateralBps = UINT96_MAX * 10_000 / maxFee;
        p.collateralBps = uint16(bound(collateralBps, 0, maxCollateralBps < 65_535 ? maxCollateralBps : 65_535));
        p.minJobCollateral = bound(minCollateral, 0, UINT96_MAX);
        _deploy(p);

        collateral = market.collateralFor(maxFee);
        vm.deal(node, collateral);
        vm.startPrank(node);
        if (collateral != 0) nodes.addStake{value: collateral}();
        nodes.setModelPrice(modelId, price);
        vm.stopPrank();
    }

    /// @dev Submits a `maxFee` job, from the vault (topped up) or with ETH from `payer`.
    function _submitFuzzed(uint96 maxFee, bool fromVault) internal returns (uint256) {
        if (fromVault) {
            vm.deal(funder, maxFee);
            vm.prank(funder);
            vault.deposit{value: maxFee}(agent);
            return _submitFromVault(maxFee);
        }
        vm.deal(payer, maxFee);
        return _submit(maxFee);
    }

    /// @dev What the payer got back: its market balance, or its vault account's growth.
    function _payerReceived(bool fromVault, uint256 vaultBefore) internal view returns (uint256) {
        if (fromVault) return vault.getAccount(agent).balance - vaultBefore;
        return market.withdrawable(payer);
    }

    function testFuzz_finalize_splitsEscrowExactly(
        uint96 maxFee,
        uint256 price,
        uint256 feeBps,
        uint256 collateralBps,
        uint256 minCollateral,
        bool fromVault
    ) public {
        maxFee = uint96(bound(maxFee, 1, UINT96_MAX));
        price = bound(price, 0, maxFee);
        uint256 collateral = _deployFor(maxFee, price, feeBps, collateralBps, minCollateral);
        uint256 jobId = _submitFuzzed(maxFee, fromVault);
        uint256 vaultBefore = vault.getAccount(agent).balance;
        _claim(jobId);
        assertEq(nodes.getNode(node).locked, collateral);
        _commit(jobId);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.prank(keeper);
        market.finalize(jobId);

        uint256 nodePayout = market.withdrawable(node);
        uint256 fee = market.withdrawable(treasury);
        uint256 refund = _payerReceived(fromVault, vaultBefore);
        assertEq(fee, price * market.getJob(jobId).feeBps / 10_000, "fee");
        assertEq(nodePayout, price - fee, "node payout");
        assertEq(refund, maxFee - price, "refund");
        assertEq(nodePayout + fee + refund, maxFee, "parts != escrow");
        assertEq(nodes.getNode(node).locked, 0, "collateral still locked");
        assertEq(market.totalEscrow(), 0);
        _assertSolvent(_accounts());
    }

    function testFuzz_expire_slashSplitSumsExactly(
        uint96 maxFee,
        uint256 collateralBps,
        uint256 minCollateral,
        uint16 slashPayerBps,
        bool fromVault
    ) public {
        maxFee = uint96(bound(maxFee, 1, UINT96_MAX));
        Params memory p = _defaultParams();
        p.slashPayerBps = uint16(bound(slashPayerBps, 0, 10_000));
        uint256 maxCollateralBps = UINT96_MAX * 10_000 / maxFee;
        p.collateralBps = uint16(bound(collateralBps, 0, maxCollateralBps < 65_535 ? maxCollateralBps : 65_535));
        p.minJobCollateral = bound(minCollateral, 0, UINT96_MAX);
        _deploy(p);
        uint256 collateral = market.collateralFor(maxFee);
        vm.deal(node, collateral);
        vm.startPrank(node);
        if (collateral != 0) nodes.addStake{value: collateral}();
        nodes.setModelPrice(modelId, maxFee / 2);
        vm.stopPrank();

        uint256 jobId = _submitFuzzed(maxFee, fromVault);
        uint256 vaultBefore = vault.getAccount(agent).balance;
        uint256 registryBefore = address(nodes).balance;
        _claim(jobId);
        vm.warp(market.getJob(jobId).deadline + 1);
        vm.prank(keeper);
        market.expire(jobId);

        uint256 compensation = collateral * p.slashPayerBps / 10_000;
        uint256 keeperReward = market.withdrawable(keeper);
        assertEq(keeperReward, collateral - compensation, "keeper reward");
        assertEq(_payerReceived(fromVault, vaultBefore), uint256(maxFee) + compensation, "payer refund");
        assertEq(compensation + keeperReward, collateral, "split != slashed");
        assertEq(address(nodes).balance, registryBefore - collateral, "registry ETH");
        assertEq(nodes.getNode(node).stake, NODE_STAKE, "stake after slash");
        assertEq(market.totalEscrow(), 0);
        _assertSolvent(_accounts());
    }

    function testFuzz_cancel_refundsWholeEscrow(uint96 maxFee, bool fromVault) public {
        maxFee = uint96(bound(maxFee, 1, UINT96_MAX));
        uint256 jobId = _submitFuzzed(maxFee, fromVault);
        uint256 vaultBefore = vault.getAccount(agent).balance;
        vm.prank(fromVault ? agent : payer);
        market.cancel(jobId);
        assertEq(_payerReceived(fromVault, vaultBefore), maxFee);
        assertEq(market.totalEscrow(), 0);
        _assertSolvent(_accounts());
    }

    function testFuzz_collateralFor_isFloorOrBps(uint96 maxFee, uint256 collateralBps, uint256 minCollateral) public {
        maxFee = uint96(bound(maxFee, 1, UINT96_MAX));
        _deployFor(maxFee, 0, FEE_BPS, collateralBps, minCollateral);
        uint256 proportional = uint256(maxFee) * market.collateralBps() / 10_000;
        uint256 floor = market.minJobCollateral();
        assertEq(market.collateralFor(maxFee), proportional > floor ? proportional : floor);
    }

    function testFuzz_timings_deadlineAndWindowEdges(
        uint256 challengeWindow,
        uint256 maxJobDuration,
        uint256 deadlineOffset,
        uint256 commitDelay
    ) public {
        Params memory p = _defaultParams();
        p.challengeWindow = bound(challengeWindow, 0, 365 days);
        p.maxJobDuration = bound(maxJobDuration, 1, 365 days);
        _deploy(p);

        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        r.deadline = uint40(block.timestamp + bound(deadlineOffset, 1, p.maxJobDuration));
        vm.prank(payer);
        uint256 jobId = market.submitJob{value: MAX_FEE}(r);
        vm.prank(payer);
        uint256 idle = market.submitJob{value: MAX_FEE}(r);
        _claim(jobId);

        // Commit anywhere up to the deadline (inclusive).
        vm.warp(block.timestamp + bound(commitDelay, 0, r.deadline - block.timestamp));
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.DeadlineNotPassed.selector, idle, r.deadline));
        market.expire(idle);
        _commit(jobId);
        uint256 windowEnd = block.timestamp + p.challengeWindow;
        assertEq(market.getJob(jobId).windowEnd, windowEnd);

        if (p.challengeWindow != 0) {
            vm.warp(windowEnd - 1);
            vm.expectRevert(abi.encodeWithSelector(IJobMarket.WindowNotOver.selector, jobId, windowEnd));
            market.finalize(jobId);
        }
        vm.warp(windowEnd > r.deadline ? windowEnd : r.deadline + 1);
        market.finalize(jobId);
        assertEq(market.expireMany(_single(idle)), 1);
        assertEq(market.totalEscrow(), 0);
        _assertSolvent(_accounts());
    }

    function testFuzz_commit_revertsAfterDeadline(uint256 lateBy) public {
        uint256 jobId = _submit();
        _claim(jobId);
        uint256 deadline = market.getJob(jobId).deadline;
        vm.warp(deadline + bound(lateBy, 1, 365 days));
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.DeadlinePassed.selector, jobId, deadline));
        _commit(jobId);
    }

    function testFuzz_submitJobs_escrowEqualsSumOfFees(uint96[8] memory fees, uint8 count) public {
        uint256 n = bound(count, 1, 8);
        IJobMarket.JobRequest[] memory rs = new IJobMarket.JobRequest[](n);
        uint256 total;
        for (uint256 i; i < n; ++i) {
            rs[i] = _request(uint96(bound(fees[i], 1, UINT96_MAX / 8)));
            total += rs[i].maxFee;
        }
        vm.deal(payer, total);
        vm.prank(payer);
        uint256 first = market.submitJobs{value: total}(rs);
        assertEq(market.totalEscrow(), total);
        assertEq(market.jobCount(), first + n - 1);
        _assertSolvent(_accounts());
    }

    function _single(uint256 id) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](1);
        ids[0] = id;
    }
}
