// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "./utils/Test.sol";
import {ModelRegistry} from "../src/ModelRegistry.sol";
import {IModelRegistry} from "../src/interfaces/IModelRegistry.sol";

contract ModelRegistryTest is Test {
    event ModelRegistered(
        bytes32 indexed modelId,
        address indexed owner,
        bytes32 artifactsHash,
        uint8 outputScale,
        uint256 segmentCount,
        string metadataURI
    );

    bytes32 internal constant ARTIFACTS = keccak256("artifacts");
    uint8 internal constant SCALE = 12;
    string internal constant URI = "ipfs://model";

    ModelRegistry internal registry;
    address internal alice = makeAddr("alice");

    function setUp() public {
        registry = new ModelRegistry();
    }

    // ---------------------------------------------------------------- helpers

    function _segments(uint256 count) internal pure returns (IModelRegistry.Segment[] memory segments) {
        segments = new IModelRegistry.Segment[](count);
        for (uint256 i = 0; i < count; ++i) {
            segments[i] = IModelRegistry.Segment({
                segmentHash: keccak256(abi.encode("segment", i)),
                vkHash: keccak256(abi.encode("vk", i)),
                verifier: address(uint160(0x1000 + i))
            });
        }
    }

    function _register(uint256 count) internal returns (bytes32) {
        return registry.registerModel(ARTIFACTS, SCALE, URI, _segments(count));
    }

    function _assertSegmentEq(IModelRegistry.Segment memory a, IModelRegistry.Segment memory b) internal pure {
        assertEq(a.segmentHash, b.segmentHash, "segmentHash");
        assertEq(a.vkHash, b.vkHash, "vkHash");
        assertEq(a.verifier, b.verifier, "verifier");
    }

    // ---------------------------------------------------------------- registerModel

    function test_registerModel_storesModel() public {
        vm.warp(1_700_000_000);
        vm.prank(alice);
        bytes32 modelId = _register(3);

        assertTrue(registry.isRegistered(modelId));
        IModelRegistry.Model memory model = registry.getModel(modelId);
        assertEq(model.owner, alice);
        assertEq(uint256(model.outputScale), SCALE);
        assertEq(uint256(model.registeredAt), 1_700_000_000);
        assertEq(model.artifactsHash, ARTIFACTS);
        assertEq(model.metadataURI, URI);
        assertEq(registry.segmentCount(modelId), 3);
    }

    function test_registerModel_idIsContentHash() public {
        IModelRegistry.Segment[] memory segments = _segments(2);
        bytes32 modelId = registry.registerModel(ARTIFACTS, SCALE, URI, segments);
        assertEq(modelId, keccak256(abi.encode(ARTIFACTS, SCALE, segments)));
    }

    function test_registerModel_emitsModelRegistered() public {
        IModelRegistry.Segment[] memory segments = _segments(2);
        bytes32 modelId = keccak256(abi.encode(ARTIFACTS, SCALE, segments));
        vm.expectEmit(address(registry));
        emit ModelRegistered(modelId, alice, ARTIFACTS, SCALE, 2, URI);
        vm.prank(alice);
        registry.registerModel(ARTIFACTS, SCALE, URI, segments);
    }

    function test_registerModel_acceptsLimits() public {
        bytes32 modelId =
            registry.registerModel(ARTIFACTS, registry.MAX_OUTPUT_SCALE(), URI, _segments(registry.MAX_SEGMENTS()));
        assertEq(registry.segmentCount(modelId), 64);
        assertEq(uint256(registry.getModel(modelId).outputScale), 32);
    }

    function test_registerModel_metadataIsNotPartOfId() public {
        bytes32 modelId = _register(1);
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.ModelAlreadyRegistered.selector, modelId));
        vm.prank(alice);
        registry.registerModel(ARTIFACTS, SCALE, "ipfs://squatter", _segments(1));
    }

    function test_registerModel_anySegmentFieldChangesId() public {
        IModelRegistry.Segment[] memory segments = _segments(2);
        bytes32 first = registry.registerModel(ARTIFACTS, SCALE, URI, segments);
        segments[1].verifier = address(0xBEEF);
        bytes32 second = registry.registerModel(ARTIFACTS, SCALE, URI, segments);
        assertNotEq(first, second);
        assertEq(registry.getSegment(first, 1).verifier, address(0x1001));
        assertEq(registry.getSegment(second, 1).verifier, address(0xBEEF));
    }

    function test_registerModel_revertsAlreadyRegistered() public {
        bytes32 modelId = _register(2);
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.ModelAlreadyRegistered.selector, modelId));
        _register(2);
    }

    function test_registerModel_revertsZeroArtifactsHash() public {
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.ZeroArtifactsHash.selector));
        registry.registerModel(bytes32(0), SCALE, URI, _segments(1));
    }

    function test_registerModel_revertsOutputScaleTooLarge() public {
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.OutputScaleTooLarge.selector, uint8(33), uint8(32)));
        registry.registerModel(ARTIFACTS, 33, URI, _segments(1));
    }

    function test_registerModel_revertsNoSegments() public {
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.NoSegments.selector));
        _register(0);
    }

    function test_registerModel_revertsTooManySegments() public {
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.TooManySegments.selector, 65, 64));
        _register(65);
    }

    function test_registerModel_revertsZeroSegmentHash() public {
        IModelRegistry.Segment[] memory segments = _segments(4);
        segments[2].segmentHash = bytes32(0);
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.ZeroSegmentHash.selector, 2));
        registry.registerModel(ARTIFACTS, SCALE, URI, segments);
    }

    function testFuzz_registerModel_idIsContentHash(
        bytes32 artifactsHash,
        uint8 outputScale,
        uint256 count,
        bytes32 salt
    ) public {
        vm.assume(artifactsHash != bytes32(0));
        outputScale = uint8(bound(outputScale, 0, 32));
        count = bound(count, 1, 64);
        IModelRegistry.Segment[] memory segments = new IModelRegistry.Segment[](count);
        for (uint256 i = 0; i < count; ++i) {
            segments[i].segmentHash = keccak256(abi.encode(salt, i));
            segments[i].vkHash = bytes32(i);
        }

        bytes32 modelId = registry.registerModel(artifactsHash, outputScale, URI, segments);

        assertEq(modelId, keccak256(abi.encode(artifactsHash, outputScale, segments)));
        assertEq(modelId, registry.computeModelId(artifactsHash, outputScale, segments));
        assertEq(registry.segmentCount(modelId), count);
        _assertSegmentEq(registry.getSegment(modelId, count - 1), segments[count - 1]);
    }

    // ---------------------------------------------------------------- computeModelId

    function test_computeModelId_matchesRegisteredId() public {
        IModelRegistry.Segment[] memory segments = _segments(3);
        bytes32 expected = registry.computeModelId(ARTIFACTS, SCALE, segments);
        assertFalse(registry.isRegistered(expected));
        assertEq(registry.registerModel(ARTIFACTS, SCALE, URI, segments), expected);
    }

    // ---------------------------------------------------------------- isRegistered

    function test_isRegistered_falseForUnknown() public view {
        assertFalse(registry.isRegistered(keccak256("unknown")));
    }

    // ---------------------------------------------------------------- getModel

    function test_getModel_revertsModelNotFound() public {
        bytes32 modelId = keccak256("unknown");
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.ModelNotFound.selector, modelId));
        registry.getModel(modelId);
    }

    // ---------------------------------------------------------------- segmentCount

    function test_segmentCount_returnsCount() public {
        assertEq(registry.segmentCount(_register(5)), 5);
    }

    function test_segmentCount_revertsModelNotFound() public {
        bytes32 modelId = keccak256("unknown");
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.ModelNotFound.selector, modelId));
        registry.segmentCount(modelId);
    }

    // ---------------------------------------------------------------- getSegment

    function test_getSegment_returnsSegment() public {
        bytes32 modelId = _register(3);
        IModelRegistry.Segment[] memory expected = _segments(3);
        for (uint256 i = 0; i < 3; ++i) {
            _assertSegmentEq(registry.getSegment(modelId, i), expected[i]);
        }
    }

    function test_getSegment_revertsIndexOutOfRange() public {
        bytes32 modelId = _register(3);
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.SegmentIndexOutOfRange.selector, modelId, 3, 3));
        registry.getSegment(modelId, 3);
    }

    function test_getSegment_revertsModelNotFound() public {
        bytes32 modelId = keccak256("unknown");
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.ModelNotFound.selector, modelId));
        registry.getSegment(modelId, 0);
    }

    // ---------------------------------------------------------------- getSegments

    function test_getSegments_returnsAllInOrder() public {
        bytes32 modelId = _register(4);
        IModelRegistry.Segment[] memory expected = _segments(4);
        IModelRegistry.Segment[] memory actual = registry.getSegments(modelId);
        assertEq(actual.length, 4);
        for (uint256 i = 0; i < 4; ++i) {
            _assertSegmentEq(actual[i], expected[i]);
        }
    }

    function test_getSegments_revertsModelNotFound() public {
        bytes32 modelId = keccak256("unknown");
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.ModelNotFound.selector, modelId));
        registry.getSegments(modelId);
    }
}
