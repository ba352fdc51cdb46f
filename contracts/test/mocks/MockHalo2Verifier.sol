// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IHalo2Verifier} from "../../src/interfaces/IHalo2Verifier.sol";

/// @title MockHalo2Verifier
/// @notice A stand-in for an ezkl `Halo2Verifier`, with the same interface and failure mode
///         (it reverts on a bad proof), for forge unit tests of the verification state machine.
///         A "proof" here is `abi.encode(key, inputHash, outputHash)`: it binds the verifying key
///         (`key`) and both public instances, so a tampered proof, another segment's proof and a
///         proof of other hashes all fail, as they do with a real verifier. The real verifiers
///         (ezkl-generated, real proofs) are tested in tests/integration/test_zk_protocol.py.
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
        if (instances.length != 2 || keccak256(proof) != keccak256(proofFor(instances[0], instances[1]))) {
            revert InvalidProof();
        }
        return true;
    }

    /// @notice The valid proof of a segment with boundary hashes `inputHash` -> `outputHash`.
    function proofFor(uint256 inputHash, uint256 outputHash) public view returns (bytes memory) {
        return abi.encode(key, inputHash, outputHash);
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
