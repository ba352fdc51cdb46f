// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title INodeRegistry
/// @notice Stakes of inference nodes, the models they serve and their prices, and the
///         collateral the JobMarket locks, unlocks and slashes.
interface INodeRegistry {
    /// @notice A node's stake accounting. All amounts in wei.
    struct Node {
        /// @notice Total stake held for the node (free + locked + unbonding).
        uint128 stake;
        /// @notice Part of `stake` locked as collateral for claimed jobs.
        uint128 locked;
        /// @notice Part of `stake` waiting for the unbonding period to pass.
        uint128 unbonding;
        /// @notice When `unbonding` can be withdrawn (unix seconds); 0 when nothing unbonds.
        uint64 unbondingReadyAt;
        /// @notice Whether the node has registered.
        bool registered;
    }

    // ---------------------------------------------------------------- events
    /// @notice `node` registered with `stake` wei.
    event NodeRegistered(address indexed node, uint256 stake);
    /// @notice `node` added `amount` wei; its total stake is now `stake`.
    event StakeAdded(address indexed node, uint256 amount, uint256 stake);
    /// @notice `node` asked to unbond `amount` more wei; all its unbonding stake is ready at `readyAt`.
    event UnbondingRequested(address indexed node, uint256 amount, uint256 readyAt);
    /// @notice `node` withdrew `amount` wei of unbonded stake.
    event UnbondedWithdrawn(address indexed node, uint256 amount);
    /// @notice `node` serves `modelId` at `price` wei per job.
    event ModelPriceSet(address indexed node, bytes32 indexed modelId, uint256 price);
    /// @notice `node` no longer serves `modelId`.
    event ModelRemoved(address indexed node, bytes32 indexed modelId);
    /// @notice `node` answers repeated jobs of `modelId` from its result cache at `price` (0: stopped).
    event CachePriceSet(address indexed node, bytes32 indexed modelId, uint256 price);
    /// @notice The market locked `amount` of `node`'s stake as job collateral.
    event CollateralLocked(address indexed node, uint256 amount);
    /// @notice The market released `amount` of `node`'s locked collateral.
    event CollateralUnlocked(address indexed node, uint256 amount);
    /// @notice The market slashed `amount` of `node`'s locked collateral (sent to the market).
    event NodeSlashed(address indexed node, uint256 amount);
    /// @notice The registry was bound to `market`.
    event MarketSet(address indexed market);

    // ---------------------------------------------------------------- errors
    /// @notice `node` is already registered.
    error NodeAlreadyRegistered(address node);
    /// @notice `node` has not registered.
    error NodeNotRegistered(address node);
    /// @notice The registration stake `provided` is below `minimum`.
    error StakeBelowMinimum(uint256 provided, uint256 minimum);
    /// @notice An amount that must be positive was zero.
    error ZeroAmount();
    /// @notice `node` has only `free` unlocked, non-unbonding stake, less than `requested`.
    error InsufficientFreeStake(address node, uint256 requested, uint256 free);
    /// @notice `node`'s unbonding stake is withdrawable at `readyAt`, after `nowTs`.
    error UnbondingNotReady(address node, uint256 readyAt, uint256 nowTs);
    /// @notice `node` has no unbonding stake.
    error NothingToWithdraw(address node);
    /// @notice `modelId` is not in the ModelRegistry.
    error ModelNotRegistered(bytes32 modelId);
    /// @notice `node` does not serve `modelId`.
    error ModelNotServed(address node, bytes32 modelId);
    /// @notice `caller` is not the bound market.
    error NotMarket(address caller);
    /// @notice The registry is already bound to `market`.
    error MarketAlreadySet(address market);
    /// @notice `unbondingPeriod` is shorter than the market's longest window, `required`.
    error UnbondingPeriodTooShort(uint256 unbondingPeriod, uint256 required);
    /// @notice Sending `amount` wei to `to` failed.
    error TransferFailed(address to, uint256 amount);
    /// @notice `caller` is not the deployer (only the deployer may bind the market).
    error NotDeployer(address caller);
    /// @notice The market asked to unlock `requested` wei but `node` has only `locked` locked.
    error InsufficientLocked(address node, uint256 requested, uint256 locked);
    /// @notice A cache price must not exceed the node's price for the model.
    error CachePriceAboveModelPrice(address node, bytes32 modelId, uint256 cachePrice, uint256 price);

    // ---------------------------------------------------------------- node functions
    /// @notice Registers msg.sender as a node with msg.value (at least `minStake`) as stake.
    function register() external payable;
    /// @notice Adds msg.value to the caller's stake.
    function addStake() external payable;
    /// @notice Starts unbonding `amount` of the caller's free stake. A second request adds to
    ///         the unbonding amount and restarts the timer for all of it.
    function requestUnbond(uint256 amount) external;
    /// @notice Sends the caller all its unbonding stake once `unbondingPeriod` has passed.
    function withdrawUnbonded() external;
    /// @notice Serves `modelId` (registered in the ModelRegistry) at `price` wei per job.
    function setModelPrice(bytes32 modelId, uint256 price) external;
    /// @notice Stops serving `modelId`.
    function removeModel(bytes32 modelId) external;

    /// @notice Sets msg.sender's price for answering a job of `modelId` from its result cache
    ///         (≤ its price for the model); 0 stops cache answers.
    function setCachePrice(bytes32 modelId, uint256 price) external;

    // ---------------------------------------------------------------- market functions
    /// @notice Bind the market once (deployer only). Reverts UnbondingPeriodTooShort when
    ///         unbondingPeriod < IJobMarket(market).longestWindow().
    function setMarket(address market) external;
    /// @notice Locks `amount` of `node`'s free stake as job collateral (market only).
    function lockCollateral(address node, uint256 amount) external;
    /// @notice Releases `amount` of `node`'s locked collateral (market only).
    function unlockCollateral(address node, uint256 amount) external;
    /// @notice Slash up to `amount` of the node's locked collateral; sends the slashed wei to
    ///         the market and returns how much was slashed.
    function slash(address node, uint256 amount) external returns (uint256 slashed);

    // ---------------------------------------------------------------- views
    /// @notice Smallest stake accepted by `register`, in wei.
    function minStake() external view returns (uint256);
    /// @notice Seconds between an unbond request and its withdrawal.
    function unbondingPeriod() external view returns (uint256);
    /// @notice The bound JobMarket (zero until `setMarket`).
    function market() external view returns (address);
    /// @notice `node`'s stake accounting (all zero when not registered).
    function getNode(address node) external view returns (Node memory);
    /// @notice stake - locked - unbonding: what can be locked or unbonded.
    function freeStake(address node) external view returns (uint256);
    /// @notice (served, price) of `modelId` for `node`.
    function priceOf(address node, bytes32 modelId) external view returns (bool served, uint256 price);

    /// @notice Whether `node` answers `modelId` jobs from its cache, and at what price (never
    ///         above its current price for the model).
    function cachePriceOf(address node, bytes32 modelId) external view returns (bool offered, uint256 price);
}
