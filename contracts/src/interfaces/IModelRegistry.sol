// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IModelRegistry
/// @notice Immutable registry of models: a model id is the content hash of its artefacts and
///         its ordered segments, computed on chain so an id cannot be squatted.
interface IModelRegistry {
    /// @notice One segment (consecutive layers) of a model.
    struct Segment {
        /// @notice Content hash of the segment's artefacts (ONNX, ezkl settings, circuit).
        bytes32 segmentHash;
        /// @notice Hash of the segment's verifying key (zero before the prover has built it).
        bytes32 vkHash;
        /// @notice On-chain verifier of the segment's proofs, or zero.
        address verifier;
    }

    /// @notice A registered model.
    struct Model {
        /// @notice Who registered it.
        address owner;
        /// @notice Fixed-point scale exponent k of the canonical output (scale 2^k).
        uint8 outputScale;
        /// @notice When it was registered (unix seconds).
        uint64 registeredAt;
        /// @notice Content hash of all the model's artefacts.
        bytes32 artifactsHash;
        /// @notice Where the artefacts can be fetched (blob store URI).
        string metadataURI;
    }

    /// @notice `owner` registered `modelId` with `segmentCount` segments.
    event ModelRegistered(
        bytes32 indexed modelId,
        address indexed owner,
        bytes32 artifactsHash,
        uint8 outputScale,
        uint256 segmentCount,
        string metadataURI
    );

    /// @notice `modelId` is already registered (models are immutable).
    error ModelAlreadyRegistered(bytes32 modelId);
    /// @notice `modelId` is not registered.
    error ModelNotFound(bytes32 modelId);
    /// @notice A model needs at least one segment.
    error NoSegments();
    /// @notice `count` segments exceed the `maximum`.
    error TooManySegments(uint256 count, uint256 maximum);
    /// @notice The artefacts hash is zero.
    error ZeroArtifactsHash();
    /// @notice Segment `index` has a zero segment hash.
    error ZeroSegmentHash(uint256 index);
    /// @notice `outputScale` exceeds the `maximum`.
    error OutputScaleTooLarge(uint8 outputScale, uint8 maximum);
    /// @notice `index` is not below the `count` segments of `modelId`.
    error SegmentIndexOutOfRange(bytes32 modelId, uint256 index, uint256 count);

    /// @notice Registers a model; anyone may, and nobody can change it afterwards.
    ///         modelId = keccak256(abi.encode(artifactsHash, outputScale, segments)).
    function registerModel(
        bytes32 artifactsHash,
        uint8 outputScale,
        string calldata metadataURI,
        Segment[] calldata segments
    ) external returns (bytes32 modelId);
    /// @notice The id `registerModel` would give these artefacts.
    function computeModelId(bytes32 artifactsHash, uint8 outputScale, Segment[] calldata segments)
        external
        pure
        returns (bytes32);
    /// @notice Whether `modelId` is registered.
    function isRegistered(bytes32 modelId) external view returns (bool);
    /// @notice The registered model (reverts ModelNotFound).
    function getModel(bytes32 modelId) external view returns (Model memory);
    /// @notice How many segments `modelId` has (reverts ModelNotFound).
    function segmentCount(bytes32 modelId) external view returns (uint256);
    /// @notice Segment `index` of `modelId` (reverts ModelNotFound, SegmentIndexOutOfRange).
    function getSegment(bytes32 modelId, uint256 index) external view returns (Segment memory);
    /// @notice All segments of `modelId`, in order (reverts ModelNotFound).
    function getSegments(bytes32 modelId) external view returns (Segment[] memory);
}
