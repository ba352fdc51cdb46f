// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IHalo2Verifier} from "../../src/interfaces/IHalo2Verifier.sol";

/// @notice The stand-in commitment (64 bytes) of the boundary named `tag`.
function boundaryPoint(uint256 tag) pure returns (bytes memory) {
    return abi.encode(tag, keccak256(abi.encode("point", tag)));
}

/// @notice The boundary hash of the boundary named `tag`, as SegmentProofs computes it from the
///         stand-in commitment (what nodes commit in the tests).
function boundaryHash(uint256 tag) pure returns (uint256) {
    return uint256(keccak256(boundaryPoint(tag)))
        % 21888242871839275222246405745257275088548364400416034343698204186575808495617;
}

/// @title MockHalo2Verifier
/// @notice A stand-in for an ezkl `Halo2Verifier`, with the same interface and failure mode
///         (it reverts on a bad proof), for forge unit tests of the verification state machine.
///         A "proof" here is `abi.encodePacked(point(inputTag), point(outputTag), key)`: like a
///         real one built with KZG-committed I/O it opens with the two 64-byte boundary
///         commitments (stand-ins named by a tag: `hashOf(tag)` is their boundary hash, as
///         SegmentProofs computes it) and has no public instances; it binds the verifying key
///         (`key`), so a tampered proof and another segment's proof fail, as they do with a
///         real verifier. The real verifiers (ezkl-generated, real proofs) are tested in
///         tests/integration/test_zk_protocol.py and test_prover.py.
contract MockHalo2Verifier is IHalo2Verifier {
    /// @notice Stands for the verifying key baked into a real verifier.
    bytes32 public immutable key;

    /// @notice The proof does not verify (ezkl's verifier reverts without data).
    error InvalidProof();

    constructor(bytes32 key_) {
        key = key_;
    }

    /// @inheritdoc IHalo2Verifier
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external view returns (bool) {
        if (instances.length != 0 || proof.length != 160 || bytes32(proof[128:160]) != key) revert InvalidProof();
        return true;
    }

    /// @notice The valid proof of a segment from boundary `inputTag` to boundary `outputTag`.
    function proofFor(uint256 inputTag, uint256 outputTag) public view returns (bytes memory) {
        return abi.encodePacked(point(inputTag), point(outputTag), key);
    }

    /// @notice The stand-in commitment (64 bytes) of the boundary named `tag`.
    function point(uint256 tag) public pure returns (bytes memory) {
        return boundaryPoint(tag);
    }

    /// @notice The boundary hash of the boundary named `tag` (what nodes commit).
    function hashOf(uint256 tag) public pure returns (uint256) {
        return boundaryHash(tag);
    }
}

/// @title StatefulVerifier
/// @notice A hostile "verifier" that writes storage before accepting: under the STATICCALL the
///         module makes, the write fails, so the proof is rejected.
contract StatefulVerifier {
    uint256 public calls;

    function verifyProof(bytes calldata, uint256[] calldata) external returns (bool) {
        ++calls;
        return true;
    }
}

/// @title FalseVerifier
/// @notice A "verifier" that returns false instead of reverting.
contract FalseVerifier {
    function verifyProof(bytes calldata, uint256[] calldata) external pure returns (bool) {
        return false;
    }
}
