// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {INodeRegistry} from "../../../src/interfaces/INodeRegistry.sol";

/// @title MarketStandIn
/// @notice Stands in for JobMarket as a NodeRegistry's bound market, so a test can lock, unlock
///         and slash any amount directly (up to the registry's uint128 stakes), and keeps what
///         is slashed.
contract MarketStandIn {
    /// @notice What `setMarket` checks the unbonding period against.
    uint256 public immutable longestWindow;

    /// @notice The registry this stands in front of (set after deployment).
    INodeRegistry public registry;

    constructor(uint256 longestWindow_) {
        longestWindow = longestWindow_;
    }

    /// @notice Points this stand-in at `registry_`.
    function setRegistry(INodeRegistry registry_) external {
        registry = registry_;
    }

    /// @notice Locks `amount` of `node`'s stake.
    function lock(address node, uint256 amount) external {
        registry.lockCollateral(node, amount);
    }

    /// @notice Slashes up to `amount` of `node`'s locked stake into this contract.
    function slash(address node, uint256 amount) external returns (uint256) {
        return registry.slash(node, amount);
    }

    /// @notice Takes slashed stake.
    receive() external payable {}
}
