// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IPaymentVault} from "./interfaces/IPaymentVault.sol";

/// @title PaymentVault
/// @notice Purpose-bound agent budgets. A funder opens an account for an agent with a policy;
///         the money can then leave only (1) into JobMarket escrow for that agent's jobs,
///         through `pull`, which the market calls with the submitting key and the model so the
///         policy is checked here, or (2) back to the funder, after a withdrawal delay.
/// @dev The vault's ETH balance equals the sum of account balances (ETH force-fed by
///      selfdestruct aside). Refunds never restore a period's budget.
contract PaymentVault is IPaymentVault, ReentrancyGuard {
    using SafeCast for uint256;

    // ---------------------------------------------------------------- immutables

    /// @inheritdoc IPaymentVault
    uint256 public immutable withdrawalDelay;

    /// @notice The only account allowed to bind the market.
    address public immutable deployer;

    // ---------------------------------------------------------------- state

    /// @inheritdoc IPaymentVault
    address public market;

    /// @dev One account per agent; `funder == address(0)` means none.
    mapping(address agent => Account) private _accounts;

    /// @dev Models on each agent's allow list (used when `policy.anyModel` is false).
    mapping(address agent => mapping(bytes32 modelId => bool allowed)) private _allowedModels;

    /// @dev Keys, besides the agent itself, that may submit jobs paid by the agent's account.
    mapping(address agent => mapping(address spender => bool allowed)) private _spenders;

    // ---------------------------------------------------------------- modifiers

    /// @dev Reverts NotMarket unless the caller is the bound market.
    modifier onlyMarket() {
        if (msg.sender != market) revert NotMarket(msg.sender);
        _;
    }

    /// @dev Reverts AccountNotFound or NotFunder unless the caller funds `agent`'s account.
    modifier onlyFunder(address agent) {
        address funder = _accounts[agent].funder;
        if (funder == address(0)) revert AccountNotFound(agent);
        if (msg.sender != funder) revert NotFunder(agent, msg.sender);
        _;
    }

    // ---------------------------------------------------------------- constructor

    /// @param withdrawalDelay_ Seconds between a funder's withdrawal request and its execution;
    ///        it gives in-flight jobs time to settle against the budget the agent relied on.
    constructor(uint256 withdrawalDelay_) {
        withdrawalDelay = withdrawalDelay_;
        deployer = msg.sender;
    }

    // ---------------------------------------------------------------- external: funder

    /// @inheritdoc IPaymentVault
    function openAccount(
        address agent,
        Policy calldata policy,
        bytes32[] calldata allowedModels,
        address[] calldata spenders
    ) external payable {
        if (agent == address(0)) revert ZeroAddress();
        if (_accounts[agent].funder != address(0)) revert AccountExists(agent);
        _validatePolicy(policy);

        Account storage account = _accounts[agent];
        account.funder = msg.sender;
        account.balance = msg.value.toUint128();
        account.periodStart = uint64(block.timestamp);
        account.policy = policy;
        emit AccountOpened(agent, msg.sender, msg.value);
        _emitPolicySet(agent, policy);

        for (uint256 i = 0; i < allowedModels.length; ++i) {
            _allowedModels[agent][allowedModels[i]] = true;
            emit ModelAllowed(agent, allowedModels[i], true);
        }
        for (uint256 i = 0; i < spenders.length; ++i) {
            _setSpender(agent, spenders[i], true);
        }
    }

    /// @inheritdoc IPaymentVault
    function deposit(address agent) external payable {
        Account storage account = _accounts[agent];
        if (account.funder == address(0)) revert AccountNotFound(agent);
        if (msg.value == 0) revert ZeroAmount();

        uint256 balance = account.balance + msg.value;
        account.balance = balance.toUint128();
        emit Deposited(agent, msg.sender, msg.value, balance);
    }

    /// @inheritdoc IPaymentVault
    /// @dev The current period (its start and what it has spent) carries over unchanged.
    function setPolicy(address agent, Policy calldata policy) external onlyFunder(agent) {
        _validatePolicy(policy);
        _accounts[agent].policy = policy;
        _emitPolicySet(agent, policy);
    }

    /// @inheritdoc IPaymentVault
    function setModelAllowed(address agent, bytes32 modelId, bool allowed) external onlyFunder(agent) {
        _allowedModels[agent][modelId] = allowed;
        emit ModelAllowed(agent, modelId, allowed);
    }

    /// @inheritdoc IPaymentVault
    function setSpender(address agent, address spender, bool allowed) external onlyFunder(agent) {
        _setSpender(agent, spender, allowed);
    }

    /// @inheritdoc IPaymentVault
    function requestWithdrawal(address agent, uint256 amount) external onlyFunder(agent) {
        if (amount == 0) revert ZeroAmount();

        uint256 readyAt = block.timestamp + withdrawalDelay;
        Account storage account = _accounts[agent];
        account.pendingWithdrawal = amount.toUint128();
        account.withdrawalReadyAt = readyAt.toUint64();
        emit WithdrawalRequested(agent, amount, readyAt);
    }

    /// @inheritdoc IPaymentVault
    function cancelWithdrawal(address agent) external onlyFunder(agent) {
        Account storage account = _accounts[agent];
        if (account.pendingWithdrawal == 0) revert NoPendingWithdrawal(agent);

        account.pendingWithdrawal = 0;
        account.withdrawalReadyAt = 0;
        emit WithdrawalCancelled(agent);
    }

    /// @inheritdoc IPaymentVault
    function withdraw(address agent) external nonReentrant onlyFunder(agent) {
        Account storage account = _accounts[agent];
        uint256 pending = account.pendingWithdrawal;
        if (pending == 0) revert NoPendingWithdrawal(agent);
        // Validators can skew time by seconds; withdrawal delays are hours or days.
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp < account.withdrawalReadyAt) {
            revert WithdrawalNotReady(agent, account.withdrawalReadyAt, block.timestamp);
        }

        uint256 amount = pending < account.balance ? pending : account.balance;
        account.balance -= amount.toUint128();
        account.pendingWithdrawal = 0;
        account.withdrawalReadyAt = 0;
        emit Withdrawn(agent, msg.sender, amount);

        if (amount != 0) _send(msg.sender, amount);
    }

    // ---------------------------------------------------------------- external: market

    /// @inheritdoc IPaymentVault
    function setMarket(address market_) external {
        if (msg.sender != deployer) revert NotDeployer(msg.sender);
        if (market != address(0)) revert MarketAlreadySet(market);
        if (market_ == address(0)) revert ZeroAddress();

        market = market_;
        emit MarketSet(market_);
    }

    /// @inheritdoc IPaymentVault
    function pull(address agent, address spender, bytes32 modelId, uint256 amount) external nonReentrant onlyMarket {
        Account storage account = _accounts[agent];
        if (account.funder == address(0)) revert AccountNotFound(agent);
        if (amount == 0) revert ZeroAmount();
        if (spender != agent && !_spenders[agent][spender]) revert SpenderNotAuthorized(agent, spender);
        Policy memory policy = account.policy;
        if (!policy.anyModel && !_allowedModels[agent][modelId]) revert ModelNotAllowed(agent, modelId);
        if (amount > policy.maxFeePerJob) revert FeeAbovePolicy(agent, amount, policy.maxFeePerJob);

        if (_periodOver(account)) {
            account.periodStart = uint64(block.timestamp);
            account.spentInPeriod = 0;
        }
        uint256 remaining = _remaining(policy.budgetPerPeriod, account.spentInPeriod);
        if (amount > remaining) revert PeriodBudgetExceeded(agent, amount, remaining);
        if (amount > account.balance) revert InsufficientBalance(agent, amount, account.balance);

        account.spentInPeriod += amount.toUint128();
        account.balance -= amount.toUint128();
        emit Spent(agent, spender, modelId, amount);

        _send(msg.sender, amount);
    }

    /// @inheritdoc IPaymentVault
    /// @dev A zero refund is accepted (a job settled at its max fee has nothing to return).
    function refund(address agent) external payable onlyMarket {
        Account storage account = _accounts[agent];
        if (account.funder == address(0)) revert AccountNotFound(agent);

        uint256 balance = account.balance + msg.value;
        account.balance = balance.toUint128();
        emit Refunded(agent, msg.value, balance);
    }

    // ---------------------------------------------------------------- internal

    /// @dev Authorizes or deauthorizes `spender` for `agent`'s account.
    function _setSpender(address agent, address spender, bool allowed) internal {
        if (spender == address(0)) revert ZeroAddress();
        _spenders[agent][spender] = allowed;
        emit SpenderSet(agent, spender, allowed);
    }

    /// @dev Sends `amount` wei to `to`, reverting TransferFailed when the call fails.
    function _send(address to, uint256 amount) internal {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }

    /// @dev Emits PolicySet for `agent`.
    function _emitPolicySet(address agent, Policy calldata policy) internal {
        emit PolicySet(agent, policy.maxFeePerJob, policy.budgetPerPeriod, policy.periodLength, policy.anyModel);
    }

    /// @dev Reverts InvalidPolicy when a period would have no length.
    function _validatePolicy(Policy calldata policy) internal pure {
        if (policy.periodLength == 0) revert InvalidPolicy();
    }

    /// @dev Whether the account's current period has ended (the next pull starts a fresh one).
    function _periodOver(Account storage account) internal view returns (bool) {
        // Validators can skew time by seconds; budget periods are much longer.
        // forge-lint: disable-next-line(block-timestamp)
        return block.timestamp >= uint256(account.periodStart) + account.policy.periodLength;
    }

    /// @dev budget - spent, or 0 when a lowered budget is already exceeded.
    function _remaining(uint256 budget, uint256 spent) internal pure returns (uint256) {
        return budget > spent ? budget - spent : 0;
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IPaymentVault
    function getAccount(address agent) external view returns (Account memory) {
        return _accounts[agent];
    }

    /// @inheritdoc IPaymentVault
    function isModelAllowed(address agent, bytes32 modelId) external view returns (bool) {
        return _accounts[agent].policy.anyModel || _allowedModels[agent][modelId];
    }

    /// @inheritdoc IPaymentVault
    function isSpender(address agent, address spender) external view returns (bool) {
        return spender == agent || _spenders[agent][spender];
    }

    /// @inheritdoc IPaymentVault
    function spendable(address agent) external view returns (uint256) {
        Account storage account = _accounts[agent];
        uint256 budget = account.policy.budgetPerPeriod;
        uint256 remaining = _periodOver(account) ? budget : _remaining(budget, account.spentInPeriod);
        return remaining < account.balance ? remaining : account.balance;
    }
}
