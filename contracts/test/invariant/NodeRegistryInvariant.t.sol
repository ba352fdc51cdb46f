// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "../utils/Test.sol";
import {ModelRegistry} from "../../src/ModelRegistry.sol";
import {NodeRegistry} from "../../src/NodeRegistry.sol";
import {INodeRegistry} from "../../src/interfaces/INodeRegistry.sol";

/// @dev Drives the registry with bounded, mostly valid actions. It is also the registry's
///      market (it reports `longestWindow` and receives slashed stake), so it can lock, unlock
///      and slash. Ghost sums record each movement of ETH into and out of the registry.
contract NodeRegistryHandler is Test {
    uint256 internal constant NODES = 4;

    /// @notice Read by NodeRegistry.setMarket.
    uint256 public constant longestWindow = 2 days;

    NodeRegistry public registry;
    address[] public nodes;

    /// @dev ETH staked by register and addStake.
    uint256 public ghost_staked;
    /// @dev ETH nodes received from withdrawUnbonded, measured on their balances.
    uint256 public ghost_withdrawn;
    /// @dev ETH slash reported as slashed.
    uint256 public ghost_slashed;
    /// @dev ETH that arrived at the handler (the market) from the registry.
    uint256 public ghost_receivedFromRegistry;

    constructor() {
        for (uint256 i = 0; i < NODES; ++i) {
            nodes.push(makeAddr(string.concat("node", vm.toString(i))));
        }
    }

    function setRegistry(NodeRegistry registry_) external {
        registry = registry_;
    }

    receive() external payable {
        if (msg.sender == address(registry)) ghost_receivedFromRegistry += msg.value;
    }

    // ---------------------------------------------------------------- node actions

    function register(uint256 nodeSeed, uint256 amount) external {
        address node = _node(nodeSeed);
        if (registry.getNode(node).registered) return;
        amount = bound(amount, registry.minStake(), 100 ether);

        vm.deal(node, node.balance + amount);
        vm.prank(node);
        registry.register{value: amount}();
        ghost_staked += amount;
    }

    function addStake(uint256 nodeSeed, uint256 amount) external {
        address node = _node(nodeSeed);
        if (!registry.getNode(node).registered) return;
        amount = bound(amount, 1, 50 ether);

        vm.deal(node, node.balance + amount);
        vm.prank(node);
        registry.addStake{value: amount}();
        ghost_staked += amount;
    }

    function requestUnbond(uint256 nodeSeed, uint256 amount) external {
        address node = _node(nodeSeed);
        uint256 free = registry.freeStake(node);
        if (!registry.getNode(node).registered || free == 0) return;
        amount = bound(amount, 1, free);

        vm.prank(node);
        registry.requestUnbond(amount);
    }

    function withdrawUnbonded(uint256 nodeSeed) external {
        address node = _node(nodeSeed);
        INodeRegistry.Node memory n = registry.getNode(node);
        if (n.unbonding == 0 || vm.getBlockTimestamp() < n.unbondingReadyAt) return;

        uint256 before = node.balance;
        vm.prank(node);
        registry.withdrawUnbonded();
        ghost_withdrawn += node.balance - before;
    }

    // ---------------------------------------------------------------- market actions

    function lock(uint256 nodeSeed, uint256 amount) external {
        address node = _node(nodeSeed);
        uint256 free = registry.freeStake(node);
        if (!registry.getNode(node).registered || free == 0) return;
        registry.lockCollateral(node, bound(amount, 1, free));
    }

    function unlock(uint256 nodeSeed, uint256 amount) external {
        address node = _node(nodeSeed);
        uint256 locked = registry.getNode(node).locked;
        if (locked == 0) return;
        registry.unlockCollateral(node, bound(amount, 1, locked));
    }

    function slash(uint256 nodeSeed, uint256 amount) external {
        address node = _node(nodeSeed);
        ghost_slashed += registry.slash(node, bound(amount, 0, 200 ether));
    }

    function warp(uint256 seconds_) external {
        skip(bound(seconds_, 1, 4 days));
    }

    // ---------------------------------------------------------------- helpers

    function nodeCount() external pure returns (uint256) {
        return NODES;
    }

    function _node(uint256 seed) internal view returns (address) {
        return nodes[seed % NODES];
    }
}

/// @notice Stake accounting and conservation of ETH for NodeRegistry.
contract NodeRegistryInvariantTest is Test {
    NodeRegistry internal registry;
    NodeRegistryHandler internal handler;

    function setUp() public {
        vm.warp(1_700_000_000);
        handler = new NodeRegistryHandler();
        registry = new NodeRegistry(address(new ModelRegistry()), 1 ether, 3 days);
        handler.setRegistry(registry);
        registry.setMarket(address(handler));

        bytes4[] memory selectors = new bytes4[](8);
        selectors[0] = NodeRegistryHandler.register.selector;
        selectors[1] = NodeRegistryHandler.addStake.selector;
        selectors[2] = NodeRegistryHandler.requestUnbond.selector;
        selectors[3] = NodeRegistryHandler.withdrawUnbonded.selector;
        selectors[4] = NodeRegistryHandler.lock.selector;
        selectors[5] = NodeRegistryHandler.unlock.selector;
        selectors[6] = NodeRegistryHandler.slash.selector;
        selectors[7] = NodeRegistryHandler.warp.selector;
        targetContract(address(handler));
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
        excludeSender(address(registry));
        excludeSender(address(handler));
    }

    /// @dev The registry holds exactly the sum of all stakes.
    function invariant_balanceEqualsTotalStake() public view {
        uint256 sum;
        for (uint256 i = 0; i < handler.nodeCount(); ++i) {
            sum += registry.getNode(handler.nodes(i)).stake;
        }
        assertEq(address(registry).balance, sum, "registry balance != sum of stakes");
    }

    /// @dev Locked and unbonding stake are disjoint parts of the stake.
    function invariant_lockedPlusUnbondingWithinStake() public view {
        for (uint256 i = 0; i < handler.nodeCount(); ++i) {
            INodeRegistry.Node memory n = registry.getNode(handler.nodes(i));
            assertLe(uint256(n.locked) + n.unbonding, n.stake, "locked + unbonding > stake");
            assertEq(registry.freeStake(handler.nodes(i)), uint256(n.stake) - n.locked - n.unbonding, "freeStake");
        }
    }

    /// @dev Stake leaves only to its node (withdrawUnbonded) or to the market (slash).
    function invariant_conservation() public view {
        assertEq(
            handler.ghost_staked() - handler.ghost_withdrawn() - handler.ghost_slashed(),
            address(registry).balance,
            "staked - withdrawn - slashed != balance"
        );
        assertEq(handler.ghost_receivedFromRegistry(), handler.ghost_slashed(), "market received != slashed");
    }
}
