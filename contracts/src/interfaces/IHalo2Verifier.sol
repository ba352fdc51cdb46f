// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IHalo2Verifier
/// @notice The entry point of an ezkl-generated `Halo2Verifier` (one contract per segment
///         verifying key, registered in ModelRegistry as the segment's `verifier`).
/// @dev ezkl's verifier returns true for a valid proof and reverts for anything else. It reads
///      the proof at fixed calldata offsets, so it must be called with the standard ABI
///      encoding (what `abi.encodeCall` produces). Declared `view` here so that callers use
///      STATICCALL: a verifier registered by anyone can then change no state when called.
interface IHalo2Verifier {
    /// @notice Whether `proof` proves the circuit with public `instances`.
    /// @param proof The proof bytes (ezkl's `proof` field, without the instances).
    /// @param instances The public instances; for a verimarket segment `[inputHash, outputHash]`.
    /// @return True for a valid proof (an invalid one reverts or returns false).
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external view returns (bool);
}
