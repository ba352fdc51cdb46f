// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IJobMarket} from "./interfaces/IJobMarket.sol";
import {IModelRegistry} from "./interfaces/IModelRegistry.sol";
import {INodeRegistry} from "./interfaces/INodeRegistry.sol";

/// @title NodeRegistry
/// @notice Holds the ETH stake of inference nodes, the models each serves and at what price,
///         and the collateral the bound JobMarket locks, unlocks and slashes.
/// @dev A node's stake splits into free, locked (collateral for claimed jobs) and unbonding
///      (waiting out `unbondingPeriod`); `locked + unbonding <= stake` always holds, and the
///      registry's ETH balance equals the sum of all stakes. Stake leaves only to the node
///      (`withdrawUnbonded`, a pull) or to the market (`slash`).
contract NodeRegistry is INodeRegistry, ReentrancyGuard {
    using SafeCast for uint256;

    /// @notice What a node charges for one model.
    struct Offer {
        /// @notice Whether the node serves the model.
        bool served;
        /// @notice Price per job in wei.
        uint248 price;
    }

    // ---------------------------------------------------------------- immutables

    /// @notice The registry of models a node may serve.
    IModelRegistry public immutable modelRegistry;

    /// @inheritdoc INodeRegistry
    uint256 public immutable minStake;

    /// @inheritdoc INodeRegistry
    uint256 public immutable unbondingPeriod;

    /// @notice The only account allowed to bind the market.
    address public immutable deployer;

    // ---------------------------------------------------------------- state

    /// @inheritdoc INodeRegistry
    address public market;

    /// @dev Stake accounting per node.
    mapping(address node => Node) private _nodes;

    /// @dev Models each node serves, with their prices.
    mapping(address node => mapping(bytes32 modelId => Offer)) private _offers;

    /// @dev Cache-answer prices per node and model (0: no cache answers).
    mapping(address node => mapping(bytes32 modelId => uint256 price)) private _cachePrices;

    // ---------------------------------------------------------------- modifiers

    /// @dev Reverts NotMarket unless the caller is the bound market.
    modifier onlyMarket() {
        if (msg.sender != market) revert NotMarket(msg.sender);
        _;
    }

    /// @dev Reverts NodeNotRegistered unless the caller is a registered node.
    modifier onlyNode() {
        if (!_nodes[msg.sender].registered) revert NodeNotRegistered(msg.sender);
        _;
    }

    // ---------------------------------------------------------------- constructor

    /// @param modelRegistry_ The ModelRegistry whose models nodes may serve.
    /// @param minStake_ Smallest stake `register` accepts, in wei.
    /// @param unbondingPeriod_ Seconds between an unbond request and its withdrawal; must be at
    ///        least the market's `longestWindow()` when the market is bound.
    constructor(address modelRegistry_, uint256 minStake_, uint256 unbondingPeriod_) {
        modelRegistry = IModelRegistry(modelRegistry_);
        minStake = minStake_;
        unbondingPeriod = unbondingPeriod_;
        deployer = msg.sender;
    }

    // ---------------------------------------------------------------- external: node

    /// @inheritdoc INodeRegistry
    function register() external payable {
        Node storage node = _nodes[msg.sender];
        if (node.registered) revert NodeAlreadyRegistered(msg.sender);
        if (msg.value < minStake) revert StakeBelowMinimum(msg.value, minStake);

        node.registered = true;
        node.stake = msg.value.toUint128();
        emit NodeRegistered(msg.sender, msg.value);
    }

    /// @inheritdoc INodeRegistry
    function addStake() external payable onlyNode {
        if (msg.value == 0) revert ZeroAmount();

        Node storage node = _nodes[msg.sender];
        uint256 stake = node.stake + msg.value;
        node.stake = stake.toUint128();
        emit StakeAdded(msg.sender, msg.value, stake);
    }

    /// @inheritdoc INodeRegistry
    /// @dev The event carries this request's `amount`; `getNode` gives the total unbonding.
    function requestUnbond(uint256 amount) external onlyNode {
        if (amount == 0) revert ZeroAmount();
        Node storage node = _nodes[msg.sender];
        uint256 free = _freeStake(node);
        if (amount > free) revert InsufficientFreeStake(msg.sender, amount, free);

        uint256 readyAt = block.timestamp + unbondingPeriod;
        node.unbonding += amount.toUint128();
        node.unbondingReadyAt = readyAt.toUint64();
        emit UnbondingRequested(msg.sender, amount, readyAt);
    }

    /// @inheritdoc INodeRegistry
    function withdrawUnbonded() external nonReentrant {
        Node storage node = _nodes[msg.sender];
        uint256 amount = node.unbonding;
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        // Validators can skew time by seconds; unbonding periods are days.
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp < node.unbondingReadyAt) {
            revert UnbondingNotReady(msg.sender, node.unbondingReadyAt, block.timestamp);
        }

        node.stake -= amount.toUint128();
        node.unbonding = 0;
        node.unbondingReadyAt = 0;
        emit UnbondedWithdrawn(msg.sender, amount);

        _send(msg.sender, amount);
    }

    /// @inheritdoc INodeRegistry
    function setModelPrice(bytes32 modelId, uint256 price) external onlyNode {
        if (!modelRegistry.isRegistered(modelId)) revert ModelNotRegistered(modelId);

        _offers[msg.sender][modelId] = Offer({served: true, price: price.toUint248()});
        emit ModelPriceSet(msg.sender, modelId, price);
    }

    /// @inheritdoc INodeRegistry
    function removeModel(bytes32 modelId) external {
        if (!_offers[msg.sender][modelId].served) revert ModelNotServed(msg.sender, modelId);

        delete _offers[msg.sender][modelId];
        delete _cachePrices[msg.sender][modelId];
        emit ModelRemoved(msg.sender, modelId);
    }

    /// @inheritdoc INodeRegistry
    function setCachePrice(bytes32 modelId, uint256 price) external onlyNode {
        Offer memory offer = _offers[msg.sender][modelId];
        if (!offer.served) revert ModelNotServed(msg.sender, modelId);
        if (price > offer.price) revert CachePriceAboveModelPrice(msg.sender, modelId, price, offer.price);

        _cachePrices[msg.sender][modelId] = price;
        emit CachePriceSet(msg.sender, modelId, price);
    }

    // ---------------------------------------------------------------- external: market

    /// @inheritdoc INodeRegistry
    function setMarket(address market_) external {
        if (msg.sender != deployer) revert NotDeployer(msg.sender);
        if (market != address(0)) revert MarketAlreadySet(market);
        uint256 required = IJobMarket(market_).longestWindow();
        if (unbondingPeriod < required) revert UnbondingPeriodTooShort(unbondingPeriod, required);

        market = market_;
        emit MarketSet(market_);
    }

    /// @inheritdoc INodeRegistry
    function lockCollateral(address node, uint256 amount) external onlyMarket {
        Node storage n = _nodes[node];
        if (!n.registered) revert NodeNotRegistered(node);
        uint256 free = _freeStake(n);
        if (amount > free) revert InsufficientFreeStake(node, amount, free);

        n.locked += amount.toUint128();
        emit CollateralLocked(node, amount);
    }

    /// @inheritdoc INodeRegistry
    function unlockCollateral(address node, uint256 amount) external onlyMarket {
        Node storage n = _nodes[node];
        if (amount > n.locked) revert InsufficientLocked(node, amount, n.locked);

        n.locked -= amount.toUint128();
        emit CollateralUnlocked(node, amount);
    }

    /// @inheritdoc INodeRegistry
    function slash(address node, uint256 amount) external nonReentrant onlyMarket returns (uint256 slashed) {
        Node storage n = _nodes[node];
        slashed = amount < n.locked ? amount : n.locked;

        n.locked -= slashed.toUint128();
        n.stake -= slashed.toUint128();
        emit NodeSlashed(node, slashed);

        if (slashed != 0) _send(msg.sender, slashed);
    }

    // ---------------------------------------------------------------- internal

    /// @dev Sends `amount` wei to `to`, reverting TransferFailed when the call fails.
    function _send(address to, uint256 amount) internal {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }

    /// @dev stake - locked - unbonding of `node`.
    function _freeStake(Node storage node) internal view returns (uint256) {
        return uint256(node.stake) - node.locked - node.unbonding;
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc INodeRegistry
    function getNode(address node) external view returns (Node memory) {
        return _nodes[node];
    }

    /// @inheritdoc INodeRegistry
    function freeStake(address node) external view returns (uint256) {
        return _freeStake(_nodes[node]);
    }

    /// @inheritdoc INodeRegistry
    function priceOf(address node, bytes32 modelId) external view returns (bool served, uint256 price) {
        Offer memory offer = _offers[node][modelId];
        return (offer.served, offer.price);
    }

    /// @inheritdoc INodeRegistry
    function cachePriceOf(address node, bytes32 modelId) external view returns (bool offered, uint256 price) {
        Offer memory offer = _offers[node][modelId];
        price = _cachePrices[node][modelId];
        offered = offer.served && price != 0;
        if (price > offer.price) price = offer.price;
    }
}
