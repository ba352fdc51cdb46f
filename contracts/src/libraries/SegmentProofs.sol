// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IHalo2Verifier} from "../interfaces/IHalo2Verifier.sol";

/// @title SegmentProofs
/// @notice Reads and checks ezkl proofs of model segments built with KZG-committed input and
///         output ("polycommit", docs/prover.md). Such a proof has no public instances: it
///         opens with the commitments to the segment's input and to its output, two BN254 G1
///         points of 64 bytes each (x then y, big-endian), which the verifier reads as the
///         first advice commitments of its transcript. A segment's boundary hash is
///         keccak256 of the commitment's 64 bytes, reduced into BN254's scalar field; since
///         every segment of a model has the same number of rows, segment i's output
///         commitment is segment i+1's input commitment, so the hashes chain.
library SegmentProofs {
    /// @notice BN254's scalar field order: boundary hashes are below it.
    uint256 internal constant SNARK_SCALAR_FIELD =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;

    /// @notice Bytes of the two commitments a proof opens with.
    uint256 internal constant BOUNDARY_BYTES = 128;

    /// @notice The input and output boundary hashes a proof is about.
    /// @dev The caller checks `proof.length >= BOUNDARY_BYTES` first.
    function boundaries(bytes calldata proof) internal pure returns (uint256 inputHash, uint256 outputHash) {
        inputHash = uint256(keccak256(proof[0:64])) % SNARK_SCALAR_FIELD;
        outputHash = uint256(keccak256(proof[64:128])) % SNARK_SCALAR_FIELD;
    }

    /// @notice Calls `verifier.verifyProof(proof, [])` with STATICCALL (an ezkl verifier reverts
    ///         on a bad proof; a hostile one cannot write state).
    /// @return valid True only when the call succeeded and returned true.
    function verify(address verifier, bytes calldata proof) internal view returns (bool valid) {
        (bool success, bytes memory ret) =
            verifier.staticcall(abi.encodeCall(IHalo2Verifier.verifyProof, (proof, new uint256[](0))));
        // forge-lint: disable-next-line(unsafe-typecast)
        return success && ret.length == 32 && uint256(bytes32(ret)) == 1; // length checked
    }
}
