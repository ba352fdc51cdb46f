// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "./utils/Test.sol";
import {PaymentVault} from "../src/PaymentVault.sol";
import {IPaymentVault} from "../src/interfaces/IPaymentVault.sol";

/// @dev Stands in for JobMarket: forwards pull/refund and receives escrow (or refuses it, to
///      exercise TransferFailed).
contract MockMarket {
    IPaymentVault public vault;
    bool public rejectETH;

    function setVault(IPaymentVault vault_) external {
        vault = vault_;
    }

    function setRejectETH(bool reject) external {
        rejectETH = reject;
    }

    function pull(address agent, address spender, bytes32 modelId, uint256 amount) external {
        vault.pull(agent, spender, modelId, amount);
    }

    function refund(address agent, uint256 amount) external {
        vault.refund{value: amount}(agent);
    }

    receive() external payable {
        require(!rejectETH, "MockMarket: rejects ETH");
    }
}

/// @dev A funder contract whose receive() refuses ETH or tries to re-enter withdraw.
contract ContractFunder {
    IPaymentVault public immutable vault;
    bool public reenter;
    bool public reentered;

    constructor(IPaymentVault vault_) payable {
        vault = vault_;
    }

    function open(address agent, IPaymentVault.Policy calldata policy, uint256 amount) external {
        vault.openAccount{value: amount}(agent, policy, new bytes32[](0), new address[](0));
    }

    function requestWithdrawal(address agent, uint256 amount) external {
        vault.requestWithdrawal(agent, amount);
    }

    function withdraw(address agent) external {
        vault.withdraw(agent);
    }

    function setReenter(bool reenter_) external {
        reenter = reenter_;
    }

    receive() external payable {
        require(reenter, "ContractFunder: rejects ETH");
        try vault.withdraw(address(0xA11CE)) {
            reentered = true;
        } catch {}
    }
}

contract PaymentVaultTest is Test {
    event AccountOpened(address indexed agent, address indexed funder, uint256 deposit);
    event Deposited(address indexed agent, address indexed from, uint256 amount, uint256 balance);
    event PolicySet(
        address indexed agent, uint256 maxFeePerJob, uint256 budgetPerPeriod, uint256 periodLength, bool anyModel
    );
    event ModelAllowed(address indexed agent, bytes32 indexed modelId, bool allowed);
    event SpenderSet(address indexed agent, address indexed spender, bool allowed);
    event Spent(address indexed agent, address indexed spender, bytes32 indexed modelId, uint256 amount);
    event Refunded(address indexed agent, uint256 amount, uint256 balance);
    event WithdrawalRequested(address indexed agent, uint256 amount, uint256 readyAt);
    event WithdrawalCancelled(address indexed agent);
    event Withdrawn(address indexed agent, address indexed funder, uint256 amount);
    event MarketSet(address indexed market);

    uint256 internal constant DELAY = 1 days;
    uint256 internal constant T0 = 1_700_000_000;
    uint128 internal constant MAX_FEE = 1 ether;
    uint128 internal constant BUDGET = 3 ether;
    uint64 internal constant PERIOD = 1 days;
    bytes32 internal constant MODEL = keccak256("model");
    bytes32 internal constant OTHER_MODEL = keccak256("other model");

    PaymentVault internal vault;
    MockMarket internal market;

    address internal funder = makeAddr("funder");
    address internal agent = makeAddr("agent");
    address internal spender = makeAddr("spender");
    address internal stranger = makeAddr("stranger");

    function setUp() public {
        vm.warp(T0);
        vault = new PaymentVault(DELAY);
        market = new MockMarket();
        market.setVault(vault);
        vault.setMarket(address(market));

        vm.deal(funder, 1000 ether);
        vm.deal(stranger, 1000 ether);
        vm.deal(address(market), 1000 ether);
    }

    // ---------------------------------------------------------------- helpers

    function _policy(bool anyModel) internal pure returns (IPaymentVault.Policy memory) {
        return IPaymentVault.Policy({
            maxFeePerJob: MAX_FEE, budgetPerPeriod: BUDGET, periodLength: PERIOD, anyModel: anyModel
        });
    }

    /// @dev Opens `agent`'s account with `amount`, MODEL allowed and `spender` authorized.
    function _open(uint256 amount) internal {
        bytes32[] memory models = new bytes32[](1);
        models[0] = MODEL;
        address[] memory spenders = new address[](1);
        spenders[0] = spender;
        vm.prank(funder);
        vault.openAccount{value: amount}(agent, _policy(false), models, spenders);
    }

    function _openWith(IPaymentVault.Policy memory policy, uint256 amount) internal {
        vm.prank(funder);
        vault.openAccount{value: amount}(agent, policy, new bytes32[](0), new address[](0));
    }

    // ---------------------------------------------------------------- constructor

    function test_constructor_setsParameters() public view {
        assertEq(vault.withdrawalDelay(), DELAY);
        assertEq(vault.deployer(), address(this));
        assertEq(vault.market(), address(market));
    }

    // ---------------------------------------------------------------- setMarket

    function test_setMarket_bindsMarket() public {
        PaymentVault fresh = new PaymentVault(DELAY);
        vm.expectEmit(address(fresh));
        emit MarketSet(address(market));
        fresh.setMarket(address(market));
        assertEq(fresh.market(), address(market));
    }

    function test_setMarket_revertsNotDeployer() public {
        PaymentVault fresh = new PaymentVault(DELAY);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.NotDeployer.selector, stranger));
        vm.prank(stranger);
        fresh.setMarket(address(market));
    }

    function test_setMarket_revertsMarketAlreadySet() public {
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.MarketAlreadySet.selector, address(market)));
        vault.setMarket(stranger);
    }

    function test_setMarket_revertsZeroAddress() public {
        PaymentVault fresh = new PaymentVault(DELAY);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.ZeroAddress.selector));
        fresh.setMarket(address(0));
    }

    // ---------------------------------------------------------------- openAccount

    function test_openAccount_storesAccount() public {
        _open(5 ether);

        IPaymentVault.Account memory account = vault.getAccount(agent);
        assertEq(account.funder, funder);
        assertEq(uint256(account.balance), 5 ether);
        assertEq(uint256(account.periodStart), T0);
        assertEq(uint256(account.spentInPeriod), 0);
        assertEq(uint256(account.pendingWithdrawal), 0);
        assertEq(uint256(account.policy.maxFeePerJob), MAX_FEE);
        assertEq(uint256(account.policy.budgetPerPeriod), BUDGET);
        assertEq(uint256(account.policy.periodLength), PERIOD);
        assertFalse(account.policy.anyModel);
        assertTrue(vault.isModelAllowed(agent, MODEL));
        assertFalse(vault.isModelAllowed(agent, OTHER_MODEL));
        assertTrue(vault.isSpender(agent, spender));
        assertTrue(vault.isSpender(agent, agent));
        assertFalse(vault.isSpender(agent, stranger));
        assertEq(address(vault).balance, 5 ether);
    }

    function test_openAccount_emitsEvents() public {
        vm.expectEmit(address(vault));
        emit AccountOpened(agent, funder, 5 ether);
        vm.expectEmit(address(vault));
        emit PolicySet(agent, MAX_FEE, BUDGET, PERIOD, false);
        vm.expectEmit(address(vault));
        emit ModelAllowed(agent, MODEL, true);
        vm.expectEmit(address(vault));
        emit SpenderSet(agent, spender, true);
        _open(5 ether);
    }

    function test_openAccount_acceptsZeroDeposit() public {
        _openWith(_policy(true), 0);
        assertEq(vault.getAccount(agent).funder, funder);
        assertEq(uint256(vault.getAccount(agent).balance), 0);
    }

    function test_openAccount_revertsZeroAgent() public {
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.ZeroAddress.selector));
        vm.prank(funder);
        vault.openAccount(address(0), _policy(true), new bytes32[](0), new address[](0));
    }

    function test_openAccount_revertsAccountExists() public {
        _open(1 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.AccountExists.selector, agent));
        vm.prank(stranger);
        vault.openAccount{value: 1 ether}(agent, _policy(true), new bytes32[](0), new address[](0));
    }

    function test_openAccount_revertsInvalidPolicy() public {
        IPaymentVault.Policy memory policy = _policy(true);
        policy.periodLength = 0;
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.InvalidPolicy.selector));
        _openWith(policy, 1 ether);
    }

    function test_openAccount_revertsZeroSpender() public {
        address[] memory spenders = new address[](1);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.ZeroAddress.selector));
        vm.prank(funder);
        vault.openAccount(agent, _policy(true), new bytes32[](0), spenders);
    }

    // ---------------------------------------------------------------- deposit

    function test_deposit_anyoneTopsUp() public {
        _open(1 ether);
        vm.expectEmit(address(vault));
        emit Deposited(agent, stranger, 2 ether, 3 ether);
        vm.prank(stranger);
        vault.deposit{value: 2 ether}(agent);

        assertEq(uint256(vault.getAccount(agent).balance), 3 ether);
        assertEq(vault.getAccount(agent).funder, funder);
        assertEq(address(vault).balance, 3 ether);
    }

    function test_deposit_revertsAccountNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.AccountNotFound.selector, agent));
        vm.prank(stranger);
        vault.deposit{value: 1 ether}(agent);
    }

    function test_deposit_revertsZeroAmount() public {
        _open(1 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.ZeroAmount.selector));
        vault.deposit(agent);
    }

    // ---------------------------------------------------------------- setPolicy

    function test_setPolicy_replacesPolicyAndKeepsPeriod() public {
        _open(5 ether);
        market.pull(agent, agent, MODEL, 1 ether);
        skip(1 hours);

        IPaymentVault.Policy memory policy = IPaymentVault.Policy({
            maxFeePerJob: 2 ether, budgetPerPeriod: 4 ether, periodLength: 7 days, anyModel: true
        });
        vm.expectEmit(address(vault));
        emit PolicySet(agent, 2 ether, 4 ether, 7 days, true);
        vm.prank(funder);
        vault.setPolicy(agent, policy);

        IPaymentVault.Account memory account = vault.getAccount(agent);
        assertEq(uint256(account.policy.maxFeePerJob), 2 ether);
        assertEq(uint256(account.policy.periodLength), 7 days);
        assertTrue(account.policy.anyModel);
        assertEq(uint256(account.periodStart), T0);
        assertEq(uint256(account.spentInPeriod), 1 ether);
        assertTrue(vault.isModelAllowed(agent, OTHER_MODEL));
        assertEq(vault.spendable(agent), 3 ether);
    }

    function test_setPolicy_revertsAccountNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.AccountNotFound.selector, agent));
        vm.prank(funder);
        vault.setPolicy(agent, _policy(true));
    }

    function test_setPolicy_revertsNotFunder() public {
        _open(1 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.NotFunder.selector, agent, agent));
        vm.prank(agent);
        vault.setPolicy(agent, _policy(true));
    }

    function test_setPolicy_revertsInvalidPolicy() public {
        _open(1 ether);
        IPaymentVault.Policy memory policy = _policy(true);
        policy.periodLength = 0;
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.InvalidPolicy.selector));
        vm.prank(funder);
        vault.setPolicy(agent, policy);
    }

    // ---------------------------------------------------------------- setModelAllowed

    function test_setModelAllowed_addsAndRemoves() public {
        _open(1 ether);
        vm.expectEmit(address(vault));
        emit ModelAllowed(agent, OTHER_MODEL, true);
        vm.prank(funder);
        vault.setModelAllowed(agent, OTHER_MODEL, true);
        assertTrue(vault.isModelAllowed(agent, OTHER_MODEL));

        vm.prank(funder);
        vault.setModelAllowed(agent, MODEL, false);
        assertFalse(vault.isModelAllowed(agent, MODEL));
    }

    function test_setModelAllowed_revertsAccountNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.AccountNotFound.selector, agent));
        vm.prank(funder);
        vault.setModelAllowed(agent, MODEL, true);
    }

    function test_setModelAllowed_revertsNotFunder() public {
        _open(1 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.NotFunder.selector, agent, spender));
        vm.prank(spender);
        vault.setModelAllowed(agent, OTHER_MODEL, true);
    }

    // ---------------------------------------------------------------- setSpender

    function test_setSpender_authorizesAndRevokes() public {
        _open(1 ether);
        vm.expectEmit(address(vault));
        emit SpenderSet(agent, stranger, true);
        vm.prank(funder);
        vault.setSpender(agent, stranger, true);
        assertTrue(vault.isSpender(agent, stranger));

        vm.prank(funder);
        vault.setSpender(agent, spender, false);
        assertFalse(vault.isSpender(agent, spender));
    }

    function test_setSpender_revertsAccountNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.AccountNotFound.selector, agent));
        vm.prank(funder);
        vault.setSpender(agent, spender, true);
    }

    function test_setSpender_revertsNotFunder() public {
        _open(1 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.NotFunder.selector, agent, spender));
        vm.prank(spender);
        vault.setSpender(agent, stranger, true);
    }

    function test_setSpender_revertsZeroAddress() public {
        _open(1 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.ZeroAddress.selector));
        vm.prank(funder);
        vault.setSpender(agent, address(0), true);
    }

    // ---------------------------------------------------------------- requestWithdrawal

    function test_requestWithdrawal_startsDelay() public {
        _open(5 ether);
        vm.expectEmit(address(vault));
        emit WithdrawalRequested(agent, 2 ether, T0 + DELAY);
        vm.prank(funder);
        vault.requestWithdrawal(agent, 2 ether);

        IPaymentVault.Account memory account = vault.getAccount(agent);
        assertEq(uint256(account.pendingWithdrawal), 2 ether);
        assertEq(uint256(account.withdrawalReadyAt), T0 + DELAY);
        assertEq(uint256(account.balance), 5 ether);
    }

    function test_requestWithdrawal_replacesPendingRequest() public {
        _open(5 ether);
        vm.prank(funder);
        vault.requestWithdrawal(agent, 2 ether);
        skip(1 hours);
        vm.prank(funder);
        vault.requestWithdrawal(agent, 1 ether);

        IPaymentVault.Account memory account = vault.getAccount(agent);
        assertEq(uint256(account.pendingWithdrawal), 1 ether);
        assertEq(uint256(account.withdrawalReadyAt), T0 + 1 hours + DELAY);
    }

    function test_requestWithdrawal_revertsAccountNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.AccountNotFound.selector, agent));
        vm.prank(funder);
        vault.requestWithdrawal(agent, 1);
    }

    function test_requestWithdrawal_revertsNotFunder() public {
        _open(5 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.NotFunder.selector, agent, agent));
        vm.prank(agent);
        vault.requestWithdrawal(agent, 1);
    }

    function test_requestWithdrawal_revertsZeroAmount() public {
        _open(5 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.ZeroAmount.selector));
        vm.prank(funder);
        vault.requestWithdrawal(agent, 0);
    }

    // ---------------------------------------------------------------- cancelWithdrawal

    function test_cancelWithdrawal_clearsRequest() public {
        _open(5 ether);
        vm.prank(funder);
        vault.requestWithdrawal(agent, 2 ether);
        vm.expectEmit(address(vault));
        emit WithdrawalCancelled(agent);
        vm.prank(funder);
        vault.cancelWithdrawal(agent);

        IPaymentVault.Account memory account = vault.getAccount(agent);
        assertEq(uint256(account.pendingWithdrawal), 0);
        assertEq(uint256(account.withdrawalReadyAt), 0);
    }

    function test_cancelWithdrawal_revertsNoPendingWithdrawal() public {
        _open(5 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.NoPendingWithdrawal.selector, agent));
        vm.prank(funder);
        vault.cancelWithdrawal(agent);
    }

    function test_cancelWithdrawal_revertsAccountNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.AccountNotFound.selector, agent));
        vm.prank(funder);
        vault.cancelWithdrawal(agent);
    }

    function test_cancelWithdrawal_revertsNotFunder() public {
        _open(5 ether);
        vm.prank(funder);
        vault.requestWithdrawal(agent, 2 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.NotFunder.selector, agent, stranger));
        vm.prank(stranger);
        vault.cancelWithdrawal(agent);
    }

    // ---------------------------------------------------------------- withdraw

    function test_withdraw_sendsPendingToFunder() public {
        _open(5 ether);
        vm.prank(funder);
        vault.requestWithdrawal(agent, 2 ether);
        skip(DELAY);

        uint256 before = funder.balance;
        vm.expectEmit(address(vault));
        emit Withdrawn(agent, funder, 2 ether);
        vm.prank(funder);
        vault.withdraw(agent);

        assertEq(funder.balance, before + 2 ether);
        IPaymentVault.Account memory account = vault.getAccount(agent);
        assertEq(uint256(account.balance), 3 ether);
        assertEq(uint256(account.pendingWithdrawal), 0);
        assertEq(uint256(account.withdrawalReadyAt), 0);
        assertEq(address(vault).balance, 3 ether);
    }

    function test_withdraw_capsAtBalanceAfterSpending() public {
        _open(2 ether);
        vm.prank(funder);
        vault.requestWithdrawal(agent, 2 ether);
        // The requested money stays spendable until the withdrawal executes.
        market.pull(agent, agent, MODEL, 0.5 ether);
        skip(DELAY);

        uint256 before = funder.balance;
        vm.prank(funder);
        vault.withdraw(agent);

        assertEq(funder.balance, before + 1.5 ether);
        assertEq(uint256(vault.getAccount(agent).balance), 0);
        assertEq(address(vault).balance, 0);
    }

    function test_withdraw_emptyBalanceClearsRequest() public {
        _open(1 ether);
        vm.prank(funder);
        vault.requestWithdrawal(agent, 1 ether);
        market.pull(agent, agent, MODEL, 1 ether);
        skip(DELAY);

        vm.expectEmit(address(vault));
        emit Withdrawn(agent, funder, 0);
        vm.prank(funder);
        vault.withdraw(agent);
        assertEq(uint256(vault.getAccount(agent).pendingWithdrawal), 0);
    }

    function test_withdraw_revertsWithdrawalNotReady() public {
        _open(5 ether);
        vm.prank(funder);
        vault.requestWithdrawal(agent, 2 ether);
        skip(DELAY - 1);
        vm.expectRevert(
            abi.encodeWithSelector(IPaymentVault.WithdrawalNotReady.selector, agent, T0 + DELAY, T0 + DELAY - 1)
        );
        vm.prank(funder);
        vault.withdraw(agent);
    }

    function test_withdraw_revertsNoPendingWithdrawal() public {
        _open(5 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.NoPendingWithdrawal.selector, agent));
        vm.prank(funder);
        vault.withdraw(agent);
    }

    function test_withdraw_revertsAccountNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.AccountNotFound.selector, agent));
        vm.prank(funder);
        vault.withdraw(agent);
    }

    function test_withdraw_revertsNotFunder() public {
        _open(5 ether);
        vm.prank(funder);
        vault.requestWithdrawal(agent, 2 ether);
        skip(DELAY);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.NotFunder.selector, agent, agent));
        vm.prank(agent);
        vault.withdraw(agent);
    }

    function test_withdraw_revertsTransferFailed() public {
        ContractFunder cf = new ContractFunder{value: 2 ether}(vault);
        cf.open(address(0xA11CE), _policy(true), 2 ether);
        cf.requestWithdrawal(address(0xA11CE), 1 ether);
        skip(DELAY);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.TransferFailed.selector, address(cf), 1 ether));
        cf.withdraw(address(0xA11CE));
    }

    function test_withdraw_blocksReentrancy() public {
        ContractFunder cf = new ContractFunder{value: 2 ether}(vault);
        cf.open(address(0xA11CE), _policy(true), 2 ether);
        cf.requestWithdrawal(address(0xA11CE), 1 ether);
        skip(DELAY);
        cf.setReenter(true);

        cf.withdraw(address(0xA11CE));

        assertFalse(cf.reentered());
        assertEq(address(cf).balance, 1 ether);
        assertEq(address(vault).balance, 1 ether);
        assertEq(uint256(vault.getAccount(address(0xA11CE)).balance), 1 ether);
    }

    function testFuzz_withdraw_onlyAfterDelay(uint256 delay, uint256 wait, uint256 deposit, uint256 requested) public {
        delay = bound(delay, 0, 365 days);
        wait = bound(wait, 0, 2 * delay + 1);
        deposit = bound(deposit, 0, 100 ether);
        requested = bound(requested, 1, 200 ether);
        PaymentVault fresh = new PaymentVault(delay);
        vm.startPrank(funder);
        fresh.openAccount{value: deposit}(agent, _policy(true), new bytes32[](0), new address[](0));
        fresh.requestWithdrawal(agent, requested);
        skip(wait);

        uint256 before = funder.balance;
        if (wait < delay) {
            vm.expectRevert(
                abi.encodeWithSelector(IPaymentVault.WithdrawalNotReady.selector, agent, T0 + delay, T0 + wait)
            );
        }
        fresh.withdraw(agent);
        vm.stopPrank();

        uint256 paid = wait < delay ? 0 : (requested < deposit ? requested : deposit);
        assertEq(funder.balance, before + paid);
        assertEq(address(fresh).balance, deposit - paid);
        assertEq(uint256(fresh.getAccount(agent).balance), deposit - paid);
    }

    // ---------------------------------------------------------------- pull

    function test_pull_sendsEscrowToMarket() public {
        _open(5 ether);
        uint256 before = address(market).balance;
        vm.expectEmit(address(vault));
        emit Spent(agent, spender, MODEL, 0.4 ether);
        market.pull(agent, spender, MODEL, 0.4 ether);

        assertEq(address(market).balance, before + 0.4 ether);
        assertEq(address(vault).balance, 4.6 ether);
        IPaymentVault.Account memory account = vault.getAccount(agent);
        assertEq(uint256(account.balance), 4.6 ether);
        assertEq(uint256(account.spentInPeriod), 0.4 ether);
        assertEq(vault.spendable(agent), BUDGET - 0.4 ether);
    }

    function test_pull_agentIsAlwaysSpender() public {
        _open(5 ether);
        market.pull(agent, agent, MODEL, 1 ether);
        assertEq(uint256(vault.getAccount(agent).balance), 4 ether);
    }

    function test_pull_anyModelAllowsAll() public {
        _openWith(_policy(true), 5 ether);
        market.pull(agent, agent, OTHER_MODEL, 1 ether);
        assertEq(uint256(vault.getAccount(agent).balance), 4 ether);
    }

    function test_pull_startsFreshPeriodAfterLength() public {
        _open(10 ether);
        market.pull(agent, agent, MODEL, 1 ether);
        market.pull(agent, agent, MODEL, 1 ether);
        market.pull(agent, agent, MODEL, 1 ether);
        skip(PERIOD);
        market.pull(agent, agent, MODEL, 1 ether);

        IPaymentVault.Account memory account = vault.getAccount(agent);
        assertEq(uint256(account.periodStart), T0 + PERIOD);
        assertEq(uint256(account.spentInPeriod), 1 ether);
        assertEq(uint256(account.balance), 6 ether);
    }

    function test_pull_revertsNotMarket() public {
        _open(5 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.NotMarket.selector, agent));
        vm.prank(agent);
        vault.pull(agent, agent, MODEL, 1 ether);
    }

    function test_pull_revertsAccountNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.AccountNotFound.selector, agent));
        market.pull(agent, agent, MODEL, 1 ether);
    }

    function test_pull_revertsZeroAmount() public {
        _open(5 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.ZeroAmount.selector));
        market.pull(agent, agent, MODEL, 0);
    }

    function test_pull_revertsSpenderNotAuthorized() public {
        _open(5 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.SpenderNotAuthorized.selector, agent, stranger));
        market.pull(agent, stranger, MODEL, 1 ether);
    }

    function test_pull_revertsModelNotAllowed() public {
        _open(5 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.ModelNotAllowed.selector, agent, OTHER_MODEL));
        market.pull(agent, agent, OTHER_MODEL, 1 ether);
    }

    function test_pull_revertsFeeAbovePolicy() public {
        _open(5 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.FeeAbovePolicy.selector, agent, MAX_FEE + 1, MAX_FEE));
        market.pull(agent, agent, MODEL, MAX_FEE + 1);
    }

    function test_pull_revertsPeriodBudgetExceeded() public {
        _open(10 ether);
        market.pull(agent, agent, MODEL, 1 ether);
        market.pull(agent, agent, MODEL, 1 ether);
        market.pull(agent, agent, MODEL, 0.5 ether);
        skip(PERIOD - 1);
        vm.expectRevert(
            abi.encodeWithSelector(IPaymentVault.PeriodBudgetExceeded.selector, agent, 0.5 ether + 1, 0.5 ether)
        );
        market.pull(agent, agent, MODEL, 0.5 ether + 1);
    }

    function test_pull_revertsInsufficientBalance() public {
        _open(0.5 ether);
        vm.expectRevert(
            abi.encodeWithSelector(IPaymentVault.InsufficientBalance.selector, agent, 0.5 ether + 1, 0.5 ether)
        );
        market.pull(agent, agent, MODEL, 0.5 ether + 1);
    }

    function test_pull_revertsTransferFailed() public {
        _open(5 ether);
        market.setRejectETH(true);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.TransferFailed.selector, address(market), 1 ether));
        market.pull(agent, agent, MODEL, 1 ether);
    }

    function testFuzz_pull_periodBudget(uint128 budget, uint64 period, uint256[4] memory fees, uint256[4] memory waits)
        public
    {
        budget = uint128(bound(budget, 1, 10 ether));
        period = uint64(bound(period, 1, 30 days));
        IPaymentVault.Policy memory policy =
            IPaymentVault.Policy({maxFeePerJob: budget, budgetPerPeriod: budget, periodLength: period, anyModel: true});
        _openWith(policy, 100 ether);

        uint256 periodStart = T0;
        uint256 spent;
        for (uint256 i = 0; i < 4; ++i) {
            skip(bound(waits[i], 0, 2 * uint256(period)));
            if (vm.getBlockTimestamp() >= periodStart + period) {
                periodStart = vm.getBlockTimestamp();
                spent = 0;
            }
            uint256 fee = bound(fees[i], 1, budget);
            if (fee > budget - spent) {
                vm.expectRevert(
                    abi.encodeWithSelector(IPaymentVault.PeriodBudgetExceeded.selector, agent, fee, budget - spent)
                );
                market.pull(agent, agent, MODEL, fee);
                continue;
            }
            market.pull(agent, agent, MODEL, fee);
            spent += fee;
            assertEq(uint256(vault.getAccount(agent).spentInPeriod), spent);
            assertEq(uint256(vault.getAccount(agent).periodStart), periodStart);
            assertLe(spent, budget);
        }
    }

    function testFuzz_pull_spendableIsExact(uint128 balance, uint128 budget, uint256 spent, uint256 wait) public {
        balance = uint128(bound(balance, 1, 10 ether));
        budget = uint128(bound(budget, 1, 10 ether));
        IPaymentVault.Policy memory policy = IPaymentVault.Policy({
            maxFeePerJob: type(uint128).max, budgetPerPeriod: budget, periodLength: PERIOD, anyModel: true
        });
        _openWith(policy, balance);
        spent = bound(spent, 0, budget < balance ? budget : balance);
        if (spent != 0) market.pull(agent, agent, MODEL, spent);
        skip(bound(wait, 0, 2 * uint256(PERIOD)));

        uint256 spendable = vault.spendable(agent);
        if (spendable != 0) market.pull(agent, agent, MODEL, spendable);
        vm.expectRevert();
        market.pull(agent, agent, MODEL, 1);
    }

    // ---------------------------------------------------------------- refund

    function test_refund_creditsBalanceNotBudget() public {
        _open(5 ether);
        market.pull(agent, agent, MODEL, 1 ether);
        vm.expectEmit(address(vault));
        emit Refunded(agent, 0.7 ether, 4.7 ether);
        market.refund(agent, 0.7 ether);

        IPaymentVault.Account memory account = vault.getAccount(agent);
        assertEq(uint256(account.balance), 4.7 ether);
        assertEq(uint256(account.spentInPeriod), 1 ether);
        assertEq(address(vault).balance, 4.7 ether);
        assertEq(vault.spendable(agent), BUDGET - 1 ether);
    }

    function test_refund_acceptsZero() public {
        _open(5 ether);
        market.refund(agent, 0);
        assertEq(uint256(vault.getAccount(agent).balance), 5 ether);
    }

    function test_refund_revertsNotMarket() public {
        _open(5 ether);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.NotMarket.selector, stranger));
        vm.prank(stranger);
        vault.refund{value: 1 ether}(agent);
    }

    function test_refund_revertsAccountNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.AccountNotFound.selector, agent));
        market.refund(agent, 1 ether);
    }

    // ---------------------------------------------------------------- views

    function test_spendable_boundByBalance() public {
        _open(0.5 ether);
        assertEq(vault.spendable(agent), 0.5 ether);
    }

    function test_spendable_boundByBudgetAndRollsOver() public {
        _open(10 ether);
        market.pull(agent, agent, MODEL, 1 ether);
        assertEq(vault.spendable(agent), 2 ether);
        skip(PERIOD);
        assertEq(vault.spendable(agent), 3 ether);
    }

    function test_spendable_zeroWhenBudgetLoweredBelowSpent() public {
        _open(10 ether);
        market.pull(agent, agent, MODEL, 1 ether);
        IPaymentVault.Policy memory policy = _policy(false);
        policy.budgetPerPeriod = 0.5 ether;
        vm.prank(funder);
        vault.setPolicy(agent, policy);
        assertEq(vault.spendable(agent), 0);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.PeriodBudgetExceeded.selector, agent, 1, 0));
        market.pull(agent, agent, MODEL, 1);
    }

    function test_views_unknownAccount() public view {
        assertEq(vault.spendable(agent), 0);
        assertEq(vault.getAccount(agent).funder, address(0));
        assertFalse(vault.isModelAllowed(agent, MODEL));
        assertFalse(vault.isSpender(agent, spender));
    }
}
