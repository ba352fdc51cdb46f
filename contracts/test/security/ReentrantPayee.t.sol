// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {HostileFixture} from "./HostileFixture.sol";
import {HostileActor} from "./mocks/HostileActor.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IPaymentVault} from "../../src/interfaces/IPaymentVault.sol";

/// @title ReentrantPayeeTest
/// @notice Payees that are hostile contracts — payer, treasury, keeper, vault funder — which
///         re-enter withdraw / finalize / finalizeMany / expire / expireMany / cancel when
///         paid, refuse payment, or burn all the gas they are given. Settlement never pushes
///         ETH to a payee (only `withdraw` pays, to msg.sender), so each can only hurt itself:
///         every re-entry is refused by the guard, no wei is paid twice, and every other job
///         and account settles to the wei.
contract ReentrantPayeeTest is HostileFixture {
    /// @dev Collateral of a MAX_FEE job: max(MIN_JOB_COLLATERAL, MAX_FEE * 2).
    uint256 internal constant COLLATERAL = uint256(MAX_FEE) * COLLATERAL_BPS / 10_000;
    uint256 internal constant COMPENSATION = COLLATERAL * SLASH_PAYER_BPS / 10_000;
    uint256 internal constant KEEPER_REWARD = COLLATERAL - COMPENSATION;

    function _deadlinePassed(uint256 jobId) internal {
        vm.warp(market.getJob(jobId).deadline + 1);
    }

    function test_withdraw_reentrantPayerIsRefusedByEveryGuard() public {
        HostileActor h = _hostile("hostilePayer", HostileActor.Mode.Accept);
        uint256 own = _submitAs(h, MAX_FEE);
        uint256 openOwn = _submitAs(h, MAX_FEE);
        uint256 stale = _submit();
        uint256 claimed = _submit();
        _claim(claimed);
        uint256 committed = _committedJob();
        h.exec(address(market), 0, abi.encodeCall(IJobMarket.cancel, (own)));
        _deadlinePassed(committed); // every job can now be finalized, expired or cancelled

        h.setMode(HostileActor.Mode.Reenter);
        h.addReentry(address(market), abi.encodeCall(IJobMarket.withdraw, ()));
        h.addReentry(address(market), abi.encodeCall(IJobMarket.finalize, (committed)));
        h.addReentry(address(market), abi.encodeCall(IJobMarket.finalizeMany, (_ids(committed))));
        h.addReentry(address(market), abi.encodeCall(IJobMarket.expire, (stale)));
        h.addReentry(address(market), abi.encodeCall(IJobMarket.expireMany, (_ids(stale, claimed))));
        h.addReentry(address(market), abi.encodeCall(IJobMarket.cancel, (openOwn)));
        uint256 marketBefore = address(market).balance;

        _withdrawAs(h);

        assertEq(h.received(), MAX_FEE, "paid once");
        assertEq(address(h).balance, MAX_FEE);
        assertEq(market.withdrawable(address(h)), 0);
        assertEq(address(market).balance, marketBefore - MAX_FEE);
        assertEq(h.outcomeCount(), 6);
        for (uint256 i; i < 6; ++i) {
            _assertGuarded(h, i);
        }
        _assertStatus(committed, IJobMarket.JobStatus.Committed);
        _assertStatus(stale, IJobMarket.JobStatus.Open);
        _assertStatus(claimed, IJobMarket.JobStatus.Claimed);
        _assertStatus(openOwn, IJobMarket.JobStatus.Open);
        _assertAllSolvent();

        // Every job still settles normally, to the wei.
        vm.startPrank(keeper);
        market.finalize(committed);
        assertEq(market.expireMany(_ids(stale, claimed)), 2);
        vm.stopPrank();
        h.exec(address(market), 0, abi.encodeCall(IJobMarket.cancel, (openOwn)));
        _withdrawAs(h);
        assertEq(h.received(), 2 * uint256(MAX_FEE));

        (uint256 fee, uint256 payout, uint256 refund) = _split(PRICE, MAX_FEE);
        assertEq(market.withdrawable(node), payout);
        assertEq(market.withdrawable(treasury), fee);
        assertEq(market.withdrawable(payer), refund + 2 * uint256(MAX_FEE) + COMPENSATION);
        assertEq(market.withdrawable(keeper), KEEPER_REWARD);
        assertEq(nodes.getNode(node).stake, NODE_STAKE - COLLATERAL);
        assertEq(market.totalEscrow(), 0);
        _assertAllSolvent();
        _withdrawAllBenign();
        assertEq(address(market).balance, 0, "dust left in the market");
    }

    function test_withdraw_strictReentrantPayeeRevertsAndKeepsItsBalance() public {
        HostileActor h = _hostile("strictPayer", HostileActor.Mode.Reenter);
        h.setStrict(true);
        h.addReentry(address(market), abi.encodeCall(IJobMarket.withdraw, ()));
        uint256 jobId = _submitAs(h, MAX_FEE);
        h.exec(address(market), 0, abi.encodeCall(IJobMarket.cancel, (jobId)));

        vm.expectRevert(abi.encodeWithSelector(IJobMarket.TransferFailed.selector, address(h), MAX_FEE));
        _withdrawAs(h);
        assertEq(market.withdrawable(address(h)), MAX_FEE);
        assertEq(address(market).balance, MAX_FEE);

        h.setStrict(false);
        _withdrawAs(h);
        _assertGuarded(h, 0);
        assertEq(h.received(), MAX_FEE);
        assertEq(address(market).balance, 0);
    }

    function test_settlement_refusingAndGasBurningPayeesOnlyBlockThemselves() public {
        HostileActor refuser = _hostile("refusingPayer", HostileActor.Mode.Revert);
        HostileActor burner = _hostile("gasBurningPayer", HostileActor.Mode.BurnGas);
        HostileActor badTreasury = _hostile("refusingTreasury", HostileActor.Mode.Revert);
        HostileActor badKeeper = _hostile("refusingKeeper", HostileActor.Mode.Revert);
        vm.prank(deployer);
        market.setTreasury(address(badTreasury));

        uint256[] memory committed = new uint256[](4);
        committed[0] = _submitAs(refuser, MAX_FEE);
        committed[1] = _submitAs(burner, MAX_FEE);
        committed[2] = _submit();
        committed[3] = _submitFromVault(MAX_FEE);
        for (uint256 i; i < 4; ++i) {
            _claim(committed[i]);
            _commit(committed[i]);
        }
        uint256 slashable = _submit();
        _claim(slashable);
        uint256 agentBefore = vault.getAccount(agent).balance;
        _deadlinePassed(slashable);

        vm.prank(keeper);
        assertEq(market.finalizeMany(committed), 4);
        badKeeper.exec(address(market), 0, abi.encodeCall(IJobMarket.expire, (slashable)));

        (uint256 fee, uint256 payout, uint256 refund) = _split(PRICE, MAX_FEE);
        assertEq(market.withdrawable(address(refuser)), refund);
        assertEq(market.withdrawable(address(burner)), refund);
        assertEq(market.withdrawable(address(badTreasury)), 4 * fee);
        assertEq(market.withdrawable(address(badKeeper)), KEEPER_REWARD);
        assertEq(market.withdrawable(payer), refund + MAX_FEE + COMPENSATION);
        assertEq(market.withdrawable(node), 4 * payout);
        assertEq(vault.getAccount(agent).balance, agentBefore + refund);

        // Each hostile payee's withdrawal fails, and only its own.
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.TransferFailed.selector, address(refuser), refund));
        _withdrawAs(refuser);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.TransferFailed.selector, address(burner), refund));
        burner.exec{gas: 1_000_000}(address(market), 0, abi.encodeCall(IJobMarket.withdraw, ()));
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.TransferFailed.selector, address(badTreasury), 4 * fee));
        _withdrawAs(badTreasury);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.TransferFailed.selector, address(badKeeper), KEEPER_REWARD));
        _withdrawAs(badKeeper);
        assertEq(market.withdrawable(address(refuser)), refund);
        assertEq(market.withdrawable(address(badTreasury)), 4 * fee);
        _assertAllSolvent();

        _withdrawAllBenign();
        assertEq(payer.balance, 1000 ether - 2 * uint256(MAX_FEE) + refund + MAX_FEE + COMPENSATION);
        assertEq(node.balance, 4 * payout);

        // Once they accept, each is paid its balance exactly once.
        HostileActor[4] memory hostiles = [refuser, burner, badTreasury, badKeeper];
        for (uint256 i; i < 4; ++i) {
            uint256 owed = market.withdrawable(address(hostiles[i]));
            hostiles[i].setMode(HostileActor.Mode.Accept);
            _withdrawAs(hostiles[i]);
            assertEq(hostiles[i].received(), owed);
            vm.expectRevert(abi.encodeWithSelector(IJobMarket.NothingToWithdraw.selector, address(hostiles[i])));
            _withdrawAs(hostiles[i]);
        }
        assertEq(address(market).balance, 0, "dust left in the market");
        _assertAllSolvent();
    }

    function test_vaultWithdraw_funderReenteringMarketRefundsIntoTheAccount() public {
        HostileActor h = _hostile("hostileFunder", HostileActor.Mode.Accept);
        _openOwnVault(h, 1 ether);
        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        r.vaultAgent = address(h);
        bytes memory submit = abi.encodeCall(IJobMarket.submitJob, (r));
        uint256 toCancel = abi.decode(h.exec(address(market), 0, submit), (uint256));
        uint256 toExpire = abi.decode(h.exec(address(market), 0, submit), (uint256));
        h.exec(address(vault), 0, abi.encodeCall(IPaymentVault.requestWithdrawal, (address(h), 1 ether)));
        vm.warp(block.timestamp + WITHDRAWAL_DELAY);

        h.setMode(HostileActor.Mode.Reenter);
        h.addReentry(address(vault), abi.encodeCall(IPaymentVault.withdraw, (address(h))));
        h.addReentry(address(market), abi.encodeCall(IJobMarket.cancel, (toCancel)));
        h.addReentry(address(market), abi.encodeCall(IJobMarket.expire, (toExpire)));
        h.addReentry(address(market), abi.encodeCall(IJobMarket.withdraw, ()));
        h.exec(address(vault), 0, abi.encodeCall(IPaymentVault.withdraw, (address(h))));

        // The funder gets what the account held when it withdrew; the refunds its re-entries
        // caused stay purpose-bound in the account.
        assertEq(h.received(), 1 ether - 2 * uint256(MAX_FEE));
        _assertReentryRefused(h, 0, abi.encodeWithSelector(ReentrancyGuard.ReentrancyGuardReentrantCall.selector));
        _assertReentryOk(h, 1);
        _assertReentryOk(h, 2);
        _assertReentryRefused(h, 3, abi.encodeWithSelector(IJobMarket.NothingToWithdraw.selector, address(h)));
        assertEq(vault.getAccount(address(h)).balance, 2 * uint256(MAX_FEE));
        assertEq(vault.getAccount(address(h)).pendingWithdrawal, 0);
        _assertStatus(toCancel, IJobMarket.JobStatus.Cancelled);
        _assertStatus(toExpire, IJobMarket.JobStatus.Expired);
        assertEq(market.totalEscrow(), 0);
        assertEq(address(market).balance, 0);
        _assertAllSolvent();
    }

    function test_expire_reentrantKeeperEarnsExactlyItsShareOnce() public {
        HostileActor k = _hostile("reentrantKeeper", HostileActor.Mode.Reenter);
        uint256 a = _submit();
        uint256 b = _submit();
        _claim(a);
        _claim(b);
        k.addReentry(address(market), abi.encodeCall(IJobMarket.expire, (b)));
        k.addReentry(address(market), abi.encodeCall(IJobMarket.expireMany, (_ids(a, b))));
        k.addReentry(address(market), abi.encodeCall(IJobMarket.withdraw, ()));
        _deadlinePassed(a);

        k.exec(address(market), 0, abi.encodeCall(IJobMarket.expire, (a)));
        assertEq(market.withdrawable(address(k)), KEEPER_REWARD);
        _withdrawAs(k);
        for (uint256 i; i < 3; ++i) {
            _assertGuarded(k, i);
        }
        assertEq(k.received(), KEEPER_REWARD);
        _assertStatus(b, IJobMarket.JobStatus.Claimed);

        bytes memory ret = k.exec(address(market), 0, abi.encodeCall(IJobMarket.expireMany, (_ids(a, b))));
        assertEq(abi.decode(ret, (uint256)), 1, "a was already expired");
        assertEq(market.withdrawable(address(k)), KEEPER_REWARD);
        assertEq(market.withdrawable(payer), 2 * (uint256(MAX_FEE) + COMPENSATION));
        assertEq(nodes.getNode(node).stake, NODE_STAKE - 2 * COLLATERAL);
        assertEq(nodes.getNode(node).locked, 0);
        _assertAllSolvent();
    }

    /// @dev The fixture's EOAs withdraw whatever they have.
    function _withdrawAllBenign() internal {
        address[5] memory benign = [payer, node, treasury, keeper, agent];
        for (uint256 i; i < benign.length; ++i) {
            if (market.withdrawable(benign[i]) == 0) continue;
            vm.prank(benign[i]);
            market.withdraw();
        }
    }
}
