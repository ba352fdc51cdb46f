// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IPaymentVault
/// @notice Purpose-bound agent budgets: money a funder deposits for an agent that can only
///         ever pay JobMarket escrow for that agent's jobs, under a policy, or go back to the
///         funder after a withdrawal delay.
interface IPaymentVault {
    /// @notice What an agent's budget may be spent on.
    struct Policy {
        /// @notice Largest escrow (job max fee) one job may take, in wei.
        uint128 maxFeePerJob;
        /// @notice Most wei that may be escrowed within one period.
        uint128 budgetPerPeriod;
        /// @notice Length of a budget period in seconds (> 0).
        uint64 periodLength;
        /// @notice True: any registered model; false: only models in the allow list.
        bool anyModel;
    }

    /// @notice An agent's account.
    struct Account {
        /// @notice Who opened it; the only one who can change the policy or withdraw.
        address funder;
        /// @notice Wei available for escrow.
        uint128 balance;
        /// @notice Start of the current budget period (unix seconds).
        uint64 periodStart;
        /// @notice Wei escrowed in the current period.
        uint128 spentInPeriod;
        /// @notice Amount the funder asked to withdraw (0 when none pending).
        uint128 pendingWithdrawal;
        /// @notice When the pending withdrawal may execute.
        uint64 withdrawalReadyAt;
        /// @notice The spending policy.
        Policy policy;
    }

    /// @notice `funder` opened `agent`'s account with `deposit` wei.
    event AccountOpened(address indexed agent, address indexed funder, uint256 deposit);
    /// @notice `from` added `amount` wei to `agent`'s account, now holding `balance`.
    event Deposited(address indexed agent, address indexed from, uint256 amount, uint256 balance);
    /// @notice `agent`'s policy changed.
    event PolicySet(
        address indexed agent, uint256 maxFeePerJob, uint256 budgetPerPeriod, uint256 periodLength, bool anyModel
    );
    /// @notice `modelId` was added to (`allowed`) or removed from `agent`'s allow list.
    event ModelAllowed(address indexed agent, bytes32 indexed modelId, bool allowed);
    /// @notice `spender` may (`allowed`) or may no longer submit jobs paid by `agent`'s account.
    event SpenderSet(address indexed agent, address indexed spender, bool allowed);
    /// @notice `amount` wei left `agent`'s account as escrow for a `modelId` job by `spender`.
    event Spent(address indexed agent, address indexed spender, bytes32 indexed modelId, uint256 amount);
    /// @notice The market returned `amount` wei to `agent`'s account, now holding `balance`.
    event Refunded(address indexed agent, uint256 amount, uint256 balance);
    /// @notice The funder asked to withdraw `amount` wei from `agent`'s account at `readyAt`.
    event WithdrawalRequested(address indexed agent, uint256 amount, uint256 readyAt);
    /// @notice The funder cancelled the pending withdrawal of `agent`'s account.
    event WithdrawalCancelled(address indexed agent);
    /// @notice `amount` wei went from `agent`'s account back to `funder`.
    event Withdrawn(address indexed agent, address indexed funder, uint256 amount);
    /// @notice The vault was bound to `market`.
    event MarketSet(address indexed market);

    /// @notice `agent` already has an account.
    error AccountExists(address agent);
    /// @notice `agent` has no account.
    error AccountNotFound(address agent);
    /// @notice `caller` is not the funder of `agent`'s account.
    error NotFunder(address agent, address caller);
    /// @notice `caller` is not the bound market.
    error NotMarket(address caller);
    /// @notice The vault is already bound to `market`.
    error MarketAlreadySet(address market);
    /// @notice An address that must be set was zero.
    error ZeroAddress();
    /// @notice An amount that must be positive was zero.
    error ZeroAmount();
    /// @notice The policy's periodLength is zero.
    error InvalidPolicy();
    /// @notice `spender` is neither `agent` nor one of its authorized spenders.
    error SpenderNotAuthorized(address agent, address spender);
    /// @notice `agent`'s policy does not allow `modelId`.
    error ModelNotAllowed(address agent, bytes32 modelId);
    /// @notice `fee` exceeds `agent`'s `maxFeePerJob`.
    error FeeAbovePolicy(address agent, uint256 fee, uint256 maxFeePerJob);
    /// @notice `requested` exceeds the `remaining` budget of `agent`'s current period.
    error PeriodBudgetExceeded(address agent, uint256 requested, uint256 remaining);
    /// @notice `requested` exceeds `agent`'s `balance`.
    error InsufficientBalance(address agent, uint256 requested, uint256 balance);
    /// @notice `agent`'s account has no pending withdrawal.
    error NoPendingWithdrawal(address agent);
    /// @notice The withdrawal may execute at `readyAt`, after `nowTs`.
    error WithdrawalNotReady(address agent, uint256 readyAt, uint256 nowTs);
    /// @notice Sending `amount` wei to `to` failed.
    error TransferFailed(address to, uint256 amount);
    /// @notice `caller` is not the deployer (only the deployer may bind the market).
    error NotDeployer(address caller);

    // ---------------------------------------------------------------- funder
    /// @notice Opens `agent`'s account with msg.value, funded and administered by msg.sender.
    function openAccount(
        address agent,
        Policy calldata policy,
        bytes32[] calldata allowedModels,
        address[] calldata spenders
    ) external payable;
    /// @notice Adds msg.value to `agent`'s account (anyone may; it belongs to the account).
    function deposit(address agent) external payable;
    /// @notice Replaces `agent`'s policy (funder only).
    function setPolicy(address agent, Policy calldata policy) external;
    /// @notice Adds `modelId` to or removes it from `agent`'s allow list (funder only).
    function setModelAllowed(address agent, bytes32 modelId, bool allowed) external;
    /// @notice Authorizes or deauthorizes `spender` for `agent`'s account (funder only).
    function setSpender(address agent, address spender, bool allowed) external;
    /// @notice Asks to withdraw `amount` after `withdrawalDelay`, replacing any pending request
    ///         (funder only). The money stays spendable until the withdrawal executes.
    function requestWithdrawal(address agent, uint256 amount) external;
    /// @notice Cancels the pending withdrawal (funder only).
    function cancelWithdrawal(address agent) external;
    /// @notice Executes the pending withdrawal (funder only, after the delay): sends
    ///         min(pending, balance) to the funder.
    function withdraw(address agent) external;

    // ---------------------------------------------------------------- market
    /// @notice Bind the market once (deployer only).
    function setMarket(address market) external;
    /// @notice Moves `amount` from `agent`'s account to the market (msg.sender) as escrow for
    ///         a job of `modelId` submitted by `spender`, after checking the policy.
    function pull(address agent, address spender, bytes32 modelId, uint256 amount) external;
    /// @notice Takes back a refund (or slash compensation) for `agent` (market only).
    function refund(address agent) external payable;

    // ---------------------------------------------------------------- views
    /// @notice Seconds between a withdrawal request and its execution.
    function withdrawalDelay() external view returns (uint256);
    /// @notice The bound JobMarket (zero until `setMarket`).
    function market() external view returns (address);
    /// @notice `agent`'s account (all zero when none).
    function getAccount(address agent) external view returns (Account memory);
    /// @notice Whether `agent`'s policy allows jobs of `modelId`.
    function isModelAllowed(address agent, bytes32 modelId) external view returns (bool);
    /// @notice Whether `spender` may submit jobs paid by `agent`'s account.
    function isSpender(address agent, address spender) external view returns (bool);
    /// @notice Wei the agent may still escrow in the current period (policy and balance).
    function spendable(address agent) external view returns (uint256);
}
