// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IModelRegistry} from "./interfaces/IModelRegistry.sol";

/// @title ModelRegistry
/// @notice Immutable registry of models. The id is computed here from the artefacts, so a
///         model id names exactly one set of artefacts and cannot be squatted; once
///         registered, nothing about a model changes. Holds no value.
contract ModelRegistry is IModelRegistry {
    // ---------------------------------------------------------------- constants

    /// @notice Most segments one model may have (bounds the loops over segments).
    uint256 public constant MAX_SEGMENTS = 64;

    /// @notice Largest output scale exponent (outputs are fixed-point at scale 2^k, k <= 32).
    uint8 public constant MAX_OUTPUT_SCALE = 32;

    // ---------------------------------------------------------------- state

    /// @dev Registered models; `owner == address(0)` means not registered.
    mapping(bytes32 modelId => Model model) private _models;

    /// @dev Each model's ordered segments.
    mapping(bytes32 modelId => Segment[] segments) private _segments;

    // ---------------------------------------------------------------- modifiers

    /// @dev Reverts ModelNotFound unless `modelId` is registered.
    modifier onlyRegistered(bytes32 modelId) {
        if (_models[modelId].owner == address(0)) revert ModelNotFound(modelId);
        _;
    }

    // ---------------------------------------------------------------- constructor

    /// @notice Deploys an empty registry; it has no owner and no parameters.
    constructor() {}

    // ---------------------------------------------------------------- external

    /// @inheritdoc IModelRegistry
    function registerModel(
        bytes32 artifactsHash,
        uint8 outputScale,
        string calldata metadataURI,
        Segment[] calldata segments
    ) external returns (bytes32 modelId) {
        if (artifactsHash == bytes32(0)) revert ZeroArtifactsHash();
        if (outputScale > MAX_OUTPUT_SCALE) revert OutputScaleTooLarge(outputScale, MAX_OUTPUT_SCALE);
        uint256 count = segments.length;
        if (count == 0) revert NoSegments();
        if (count > MAX_SEGMENTS) revert TooManySegments(count, MAX_SEGMENTS);
        for (uint256 i = 0; i < count; ++i) {
            if (segments[i].segmentHash == bytes32(0)) revert ZeroSegmentHash(i);
        }

        modelId = _computeModelId(artifactsHash, outputScale, segments);
        if (_models[modelId].owner != address(0)) revert ModelAlreadyRegistered(modelId);

        _models[modelId] = Model({
            owner: msg.sender,
            outputScale: outputScale,
            registeredAt: uint64(block.timestamp),
            artifactsHash: artifactsHash,
            metadataURI: metadataURI
        });
        Segment[] storage stored = _segments[modelId];
        for (uint256 i = 0; i < count; ++i) {
            stored.push(segments[i]);
        }

        emit ModelRegistered(modelId, msg.sender, artifactsHash, outputScale, count, metadataURI);
    }

    // ---------------------------------------------------------------- internal

    /// @dev The content-derived id: keccak256(abi.encode(artifactsHash, outputScale, segments)).
    function _computeModelId(bytes32 artifactsHash, uint8 outputScale, Segment[] calldata segments)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(artifactsHash, outputScale, segments));
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IModelRegistry
    function computeModelId(bytes32 artifactsHash, uint8 outputScale, Segment[] calldata segments)
        external
        pure
        returns (bytes32)
    {
        return _computeModelId(artifactsHash, outputScale, segments);
    }

    /// @inheritdoc IModelRegistry
    function isRegistered(bytes32 modelId) external view returns (bool) {
        return _models[modelId].owner != address(0);
    }

    /// @inheritdoc IModelRegistry
    function getModel(bytes32 modelId) external view onlyRegistered(modelId) returns (Model memory) {
        return _models[modelId];
    }

    /// @inheritdoc IModelRegistry
    function segmentCount(bytes32 modelId) external view onlyRegistered(modelId) returns (uint256) {
        return _segments[modelId].length;
    }

    /// @inheritdoc IModelRegistry
    function getSegment(bytes32 modelId, uint256 index) external view onlyRegistered(modelId) returns (Segment memory) {
        Segment[] storage segments = _segments[modelId];
        if (index >= segments.length) revert SegmentIndexOutOfRange(modelId, index, segments.length);
        return segments[index];
    }

    /// @inheritdoc IModelRegistry
    function getSegments(bytes32 modelId) external view onlyRegistered(modelId) returns (Segment[] memory) {
        return _segments[modelId];
    }
}
