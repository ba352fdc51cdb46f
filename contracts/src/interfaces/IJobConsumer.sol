// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IJobConsumer
/// @notice Implemented by contracts that receive job results by callback.
interface IJobConsumer {
    /// @notice Called by JobMarket after a result is committed, with the requester's gas limit.
    /// @param jobId The job.
    /// @param resultHash keccak256 of the canonical output encoding.
    /// @param output The canonical output bytes when posted inline, else empty (fetch by URI).
    function onJobResult(uint256 jobId, bytes32 resultHash, bytes calldata output) external;
}
