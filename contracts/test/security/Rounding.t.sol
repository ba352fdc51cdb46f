// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {MarketFixture} from "../utils/MarketFixture.sol";
import {MarketStandIn} from "./mocks/MarketStandIn.sol";
import {JobMarket} from "../../src/JobMarket.sol";
import {NodeRegistry} from "../../src/NodeRegistry.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IModelRegistry} from "../../src/interfaces/IModelRegistry.sol";
import {INodeRegistry} from "../../src/interfaces/INodeRegistry.sol";
import {IPaymentVault} from "../../src/interfaces/IPaymentVault.sol";

/// @title RoundingTest
/// @notice Fee and slash arithmetic from 1 wei to the largest value each type admits (maxFee,
///         price and collateral: uint96; stakes and vault balances: uint128): every split sums
///         to the wei, the protocol fee and the payer's compensation round down, no dust stays
///         in any contract once everyone has withdrawn, and a value above its type's range is
///         refused at the door. JobMarketFuzz.t.sol already fuzzes single jobs; this file adds
///         mixed batches, the exact rounding edges, registry slashes up to 2^128 - 1 and the
///         range limits. The bounds are written down in docs/security.md.
contract RoundingTest is MarketFixture {
    uint256 internal constant UINT96_MAX = type(uint96).max;
    uint256 internal constant UINT128_MAX = type(uint128).max;
    uint256 internal constant MAX_JOBS = 6;

    /// @dev How a fuzzed job ends.
    enum Outcome {
        Finalized,
        ExpiredClaimed,
        ExpiredOpen,
        Cancelled
    }

    /// @dev One fuzzed job and who serves it.
    struct Plan {
        uint256 jobId;
        uint96 maxFee;
        uint256 price;
        uint256 feeBps;
        Outcome outcome;
        bool fromVault;
        address node;
        uint256 collateral;
    }

    /// @dev What the test expects each party to be owed.
    struct Expected {
        uint256 treasury;
        uint256 keeper;
        uint256 payer;
        uint256 vaultRefunds;
        uint256 escrow;
        uint256 slashed;
        uint256 nodeStakes;
    }

    // ---------------------------------------------------------------- mixed batches

    function testFuzz_mixedSettlement_splitsSumExactlyAndLeaveNoDust(
        uint96[MAX_JOBS] memory fees,
        uint96[MAX_JOBS] memory prices,
        uint16[MAX_JOBS] memory feeBps,
        uint8[MAX_JOBS] memory outcomes,
        uint8 vaultFlags,
        uint16 collateralBps,
        uint96 minCollateral,
        uint16 slashPayerBps,
        uint8 count
    ) public {
        Params memory p = _defaultParams();
        p.collateralBps = collateralBps; // any uint16: maxFee <= 2^93 keeps collateral in uint96
        p.minJobCollateral = bound(minCollateral, 0, UINT96_MAX / 8);
        p.slashPayerBps = uint16(bound(slashPayerBps, 0, 10_000));
        _deploy(p);

        Plan[] memory plans = new Plan[](bound(count, 1, MAX_JOBS));
        for (uint256 i; i < plans.length; ++i) {
            plans[i] = _open(i, fees[i], prices[i], feeBps[i], Outcome(outcomes[i] % 4), (vaultFlags >> i) & 1 == 1);
        }
        uint256 agentBefore = vault.getAccount(agent).balance;
        vm.warp(block.timestamp + MAX_JOB_DURATION + 1);

        uint256[] memory ids = new uint256[](plans.length);
        for (uint256 i; i < plans.length; ++i) {
            ids[i] = plans[i].jobId;
            if (plans[i].outcome != Outcome.Cancelled) continue;
            vm.prank(plans[i].fromVault ? agent : payer);
            market.cancel(plans[i].jobId);
        }
        vm.startPrank(keeper);
        market.finalizeMany(ids);
        market.expireMany(ids);
        vm.stopPrank();

        Expected memory e = _expected(plans, p.slashPayerBps);
        assertEq(market.withdrawable(treasury), e.treasury, "treasury");
        assertEq(market.withdrawable(keeper), e.keeper, "keeper");
        assertEq(market.withdrawable(payer), e.payer, "payer");
        assertEq(vault.getAccount(agent).balance - agentBefore, e.vaultRefunds, "vault refunds");
        uint256 credited = e.treasury + e.keeper + e.payer + e.vaultRefunds;
        for (uint256 i; i < plans.length; ++i) {
            uint256 fee = plans[i].price * plans[i].feeBps / 10_000;
            uint256 payout = plans[i].outcome == Outcome.Finalized ? plans[i].price - fee : 0;
            assertEq(market.withdrawable(plans[i].node), payout, "node payout");
            assertEq(nodes.getNode(plans[i].node).locked, 0, "collateral left locked");
            credited += payout;
        }
        assertEq(credited, e.escrow + e.slashed, "credits != escrow + slashed");
        assertEq(market.totalEscrow(), 0);

        _withdrawEveryone(plans);
        assertEq(address(market).balance, 0, "dust left in the market");
        assertEq(address(nodes).balance, e.nodeStakes, "registry ETH != stakes");
        assertEq(address(vault).balance, vault.getAccount(agent).balance, "vault ETH != balance");
    }

    /// @dev Opens job `i` as fuzzed: a fresh node priced for it, the fee snapshot set, then
    ///      submitted (ETH or vault), and claimed / committed as its outcome needs.
    function _open(uint256 i, uint96 fee, uint96 price, uint16 bps, Outcome outcome, bool fromVault)
        internal
        returns (Plan memory plan)
    {
        plan.maxFee = uint96(bound(fee, 1, UINT96_MAX / 8));
        plan.price = bound(price, 0, plan.maxFee);
        plan.feeBps = bound(bps, 0, 1000);
        plan.outcome = outcome;
        plan.fromVault = fromVault;
        plan.node = makeAddr(string.concat("roundingNode", vm.toString(i)));
        plan.collateral = market.collateralFor(plan.maxFee);
        _stakeNode(plan.node, MIN_STAKE + plan.collateral, plan.price);
        vm.prank(deployer);
        market.setFeeBps(uint16(plan.feeBps));

        if (fromVault) {
            vm.deal(funder, plan.maxFee);
            vm.prank(funder);
            vault.deposit{value: plan.maxFee}(agent);
            plan.jobId = _submitFromVault(plan.maxFee);
        } else {
            vm.deal(payer, payer.balance + plan.maxFee);
            plan.jobId = _submit(plan.maxFee);
        }
        if (outcome == Outcome.Finalized || outcome == Outcome.ExpiredClaimed) {
            vm.prank(plan.node);
            market.claimJob(plan.jobId);
        }
        if (outcome == Outcome.Finalized) {
            vm.prank(plan.node);
            market.commitResult(plan.jobId, keccak256(OUTPUT), OUTPUT, "");
        }
    }

    /// @dev The protocol's money rules, written out independently of the contract.
    function _expected(Plan[] memory plans, uint256 slashPayerBps) internal pure returns (Expected memory e) {
        e.nodeStakes = NODE_STAKE;
        for (uint256 i; i < plans.length; ++i) {
            Plan memory plan = plans[i];
            uint256 back; // what goes back to the payer
            e.escrow += plan.maxFee;
            e.nodeStakes += MIN_STAKE + plan.collateral;
            if (plan.outcome == Outcome.Finalized) {
                e.treasury += plan.price * plan.feeBps / 10_000;
                back = plan.maxFee - plan.price;
            } else if (plan.outcome == Outcome.ExpiredClaimed) {
                uint256 compensation = plan.collateral * slashPayerBps / 10_000;
                e.slashed += plan.collateral;
                e.nodeStakes -= plan.collateral;
                e.keeper += plan.collateral - compensation;
                back = plan.maxFee + compensation;
            } else {
                back = plan.maxFee;
            }
            if (plan.fromVault) e.vaultRefunds += back;
            else e.payer += back;
        }
    }

    /// @dev Everyone with a market balance withdraws it.
    function _withdrawEveryone(Plan[] memory plans) internal {
        address[] memory accounts = new address[](plans.length + 3);
        (accounts[0], accounts[1], accounts[2]) = (treasury, keeper, payer);
        for (uint256 i; i < plans.length; ++i) {
            accounts[i + 3] = plans[i].node;
        }
        for (uint256 i; i < accounts.length; ++i) {
            if (market.withdrawable(accounts[i]) == 0) continue;
            vm.prank(accounts[i]);
            market.withdraw();
        }
    }

    // ---------------------------------------------------------------- exact edges

    function test_finalize_feeRoundsDownAtEveryEdge() public {
        uint256[8] memory prices = [uint256(1), 9, 10, 9_999, 10_000, 10_001, UINT96_MAX - 1, UINT96_MAX];
        uint16[4] memory bpsList = [uint16(0), 1, 999, 1000];
        Params memory p = _defaultParams();
        (p.collateralBps, p.minJobCollateral) = (0, 0);
        _deploy(p);
        uint96 maxFee = type(uint96).max;

        for (uint256 i; i < prices.length; ++i) {
            for (uint256 j; j < bpsList.length; ++j) {
                vm.prank(deployer);
                market.setFeeBps(bpsList[j]);
                vm.prank(node);
                nodes.setModelPrice(modelId, prices[i]);
                vm.deal(payer, maxFee);
                uint256 jobId = _submit(maxFee);
                _claim(jobId);
                _commit(jobId);
                vm.warp(block.timestamp + CHALLENGE_WINDOW);
                uint256[3] memory before =
                    [market.withdrawable(node), market.withdrawable(treasury), market.withdrawable(payer)];
                market.finalize(jobId);

                uint256 payout = market.withdrawable(node) - before[0];
                uint256 fee = market.withdrawable(treasury) - before[1];
                uint256 refund = market.withdrawable(payer) - before[2];
                // fee = floor(price * bps / 10,000): fee * 10,000 <= price * bps < (fee + 1) * 10,000
                assertLe(fee * 10_000, prices[i] * bpsList[j], "fee rounded up");
                assertGt((fee + 1) * 10_000, prices[i] * bpsList[j], "fee rounded down by more than 1 wei");
                assertEq(payout, prices[i] - fee, "payout");
                assertEq(refund, maxFee - prices[i], "refund");
                assertEq(payout + fee + refund, maxFee, "parts != escrow");
            }
        }
        assertEq(market.totalEscrow(), 0);
        _assertSolvent(_accounts());
    }

    function test_expire_compensationRoundsDownAtEveryEdge() public {
        uint256[5] memory collaterals = [uint256(1), 2, 9_999, 10_001, UINT96_MAX];
        uint16[5] memory bpsList = [uint16(0), 1, 5000, 9999, 10_000];
        for (uint256 j; j < bpsList.length; ++j) {
            Params memory p = _defaultParams();
            (p.collateralBps, p.minJobCollateral, p.slashPayerBps) = (10_000, 0, bpsList[j]);
            _deploy(p); // collateral == maxFee
            uint256 total;
            for (uint256 i; i < collaterals.length; ++i) {
                total += collaterals[i];
            }
            vm.deal(node, total);
            vm.prank(node);
            nodes.addStake{value: total}();

            for (uint256 i; i < collaterals.length; ++i) {
                uint96 maxFee = uint96(collaterals[i]);
                vm.prank(node);
                nodes.setModelPrice(modelId, 0);
                vm.deal(payer, maxFee);
                uint256 jobId = _submit(maxFee);
                _claim(jobId);
                vm.warp(market.getJob(jobId).deadline + 1);
                uint256[2] memory before = [market.withdrawable(keeper), market.withdrawable(payer)];
                vm.prank(keeper);
                market.expire(jobId);

                uint256 reward = market.withdrawable(keeper) - before[0];
                uint256 compensation = market.withdrawable(payer) - before[1] - maxFee;
                uint256 product = collaterals[i] * bpsList[j];
                assertLe(compensation * 10_000, product, "compensation rounded up");
                assertGt((compensation + 1) * 10_000, product, "compensation off by more than 1 wei");
                assertEq(reward + compensation, collaterals[i], "split != slashed");
            }
            assertEq(nodes.getNode(node).stake, NODE_STAKE, "stake after slashes");
            assertEq(address(nodes).balance, NODE_STAKE);
            _assertSolvent(_accounts());
        }
    }

    // ---------------------------------------------------------------- registry up to 2^128

    function testFuzz_registrySlash_exactUpToUint128(uint256 stake, uint256 locked, uint256 amount) public {
        MarketStandIn standIn = new MarketStandIn(1 days);
        NodeRegistry registry = new NodeRegistry(address(models), MIN_STAKE, 1 days);
        registry.setMarket(address(standIn));
        standIn.setRegistry(INodeRegistry(address(registry)));
        stake = bound(stake, MIN_STAKE, UINT128_MAX);
        locked = bound(locked, 0, stake);
        vm.deal(node, stake);
        vm.prank(node);
        registry.register{value: stake}();
        standIn.lock(node, locked);

        uint256 slashed = standIn.slash(node, amount);

        uint256 expected = amount < locked ? amount : locked;
        assertEq(slashed, expected);
        assertEq(address(standIn).balance, expected, "slashed ETH");
        assertEq(address(registry).balance, stake - expected, "registry ETH");
        INodeRegistry.Node memory n = registry.getNode(node);
        assertEq(n.stake, stake - expected);
        assertEq(n.locked, locked - expected);
        assertEq(registry.freeStake(node), stake - locked);
    }

    // ---------------------------------------------------------------- above the type's range

    function test_submitJob_maxFeeAboveUint96CannotBeDecoded() public {
        bytes memory data = abi.encodeCall(IJobMarket.submitJob, (_request(1)));
        // selector, tuple offset, then modelId, inputHash, input offset, inputURI offset, maxFee
        uint256 maxFeeAt = 4 + 32 + 4 * 32;
        uint256 tooBig = UINT96_MAX + 1;
        assembly ("memory-safe") {
            mstore(add(add(data, 0x20), maxFeeAt), tooBig)
        }
        vm.deal(payer, tooBig);
        vm.prank(payer);
        (bool ok, bytes memory reason) = address(market).call{value: tooBig}(data);
        assertFalse(ok, "a 2^96 maxFee was accepted");
        assertEq(reason.length, 0, "the ABI decoder refuses it (no reason)");
        assertEq(market.jobCount(), 0);
    }

    function test_claimJob_collateralAboveUint96IsRefusedAndTheJobStillExpires() public {
        uint96 maxFee = type(uint96).max; // collateral = 2 * maxFee at COLLATERAL_BPS
        uint256 collateral = uint256(maxFee) * COLLATERAL_BPS / 10_000;
        vm.deal(node, collateral);
        vm.prank(node);
        nodes.addStake{value: collateral}();
        vm.deal(payer, maxFee);
        uint256 jobId = _submit(maxFee);

        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 96, collateral));
        _claim(jobId);

        vm.warp(market.getJob(jobId).deadline + 1);
        market.expire(jobId);
        assertEq(market.withdrawable(payer), maxFee, "escrow back in full");
        _assertSolvent(_accounts());
    }

    function test_register_stakeAboveUint128IsRefused() public {
        address whale = makeAddr("whale");
        vm.deal(whale, UINT128_MAX + 1);
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 128, UINT128_MAX + 1));
        vm.prank(whale);
        nodes.register{value: UINT128_MAX + 1}();

        vm.prank(whale);
        nodes.register{value: UINT128_MAX}();
        vm.deal(whale, 1);
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 128, UINT128_MAX + 1));
        vm.prank(whale);
        nodes.addStake{value: 1}();
        assertEq(nodes.getNode(whale).stake, UINT128_MAX);
    }

    function test_vault_balanceAboveUint128IsRefused() public {
        address whale = makeAddr("whaleAgent");
        IPaymentVault.Policy memory policy = IPaymentVault.Policy({
            maxFeePerJob: type(uint128).max, budgetPerPeriod: type(uint128).max, periodLength: 1 days, anyModel: true
        });
        vm.deal(funder, UINT128_MAX + 1);
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 128, UINT128_MAX + 1));
        vm.prank(funder);
        vault.openAccount{value: UINT128_MAX + 1}(whale, policy, new bytes32[](0), new address[](0));

        uint256 room = UINT128_MAX - VAULT_DEPOSIT;
        vm.deal(funder, room + 1);
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 128, UINT128_MAX + 1));
        vm.prank(funder);
        vault.deposit{value: room + 1}(agent);
        assertEq(vault.getAccount(agent).balance, VAULT_DEPOSIT);
    }

    function test_setModelPrice_aboveUint248IsRefusedAndAboveMaxFeeCannotClaim() public {
        uint256 tooBig = uint256(type(uint248).max) + 1;
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 248, tooBig));
        vm.prank(node);
        nodes.setModelPrice(modelId, tooBig);

        vm.prank(node);
        nodes.setModelPrice(modelId, UINT96_MAX + 1);
        vm.deal(payer, UINT96_MAX);
        uint256 jobId = _submit(type(uint96).max);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.PriceAboveMaxFee.selector, jobId, UINT96_MAX + 1, UINT96_MAX));
        _claim(jobId);
    }

    function test_constructor_minJobCollateralAboveUint96IsRefused() public {
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 96, UINT96_MAX + 1));
        new JobMarket(
            INodeRegistry(address(nodes)),
            IModelRegistry(address(models)),
            IPaymentVault(address(vault)),
            treasury,
            FEE_BPS,
            CHALLENGE_WINDOW,
            MAX_JOB_DURATION,
            COLLATERAL_BPS,
            UINT96_MAX + 1,
            SLASH_PAYER_BPS,
            MAX_CALLBACK_GAS
        );
    }
}
