// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {MarketFixture} from "./MarketFixture.sol";
import {MockHalo2Verifier, boundaryHash} from "../mocks/MockHalo2Verifier.sol";
import {ZkVerification} from "../../src/ZkVerification.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IModelRegistry} from "../../src/interfaces/IModelRegistry.sol";
import {IZkVerification} from "../../src/interfaces/IZkVerification.sol";

/// @title ZkFixture
/// @notice MarketFixture plus the ZkVerification module bound to the market, a three-segment
///         model whose segments have (mock) verifiers, served by `node`, an attester, and
///         helpers that walk a zk job through submit, commit and the challenge.
abstract contract ZkFixture is MarketFixture {
    uint256 internal constant SEGMENTS = 3;
    uint256 internal constant PROOF_WINDOW = 600;
    uint256 internal constant CHALLENGE_DELAY = 2;
    uint256 internal constant DISPUTE_WINDOW = 120;
    uint256 internal constant DISPUTE_BOND = 0.05 ether;
    uint256 internal constant ARBITRATION_PERIOD = 1 days;
    uint256 internal constant FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617;

    ZkVerification internal zk;
    bytes32 internal zkModelId;
    MockHalo2Verifier[] internal verifiers;
    address internal attester = makeAddr("attester");
    address internal auditor = makeAddr("auditor");

    function setUp() public virtual override {
        super.setUp();
        vm.roll(1000); // so that blockhash has history
        _deployZk();
    }

    /// @notice Deploys the module for the current market, binds it, registers the zk model,
    ///         has `node` serve it at PRICE, and adds `attester`.
    function _deployZk() internal {
        vm.startPrank(deployer);
        zk = new ZkVerification(
            IJobMarket(address(market)), PROOF_WINDOW, CHALLENGE_DELAY, DISPUTE_WINDOW, DISPUTE_BOND, ARBITRATION_PERIOD
        );
        market.setVerification(zk);
        zk.setAttester(attester, true);
        vm.stopPrank();

        delete verifiers;
        IModelRegistry.Segment[] memory segments = new IModelRegistry.Segment[](SEGMENTS);
        for (uint256 i; i < SEGMENTS; ++i) {
            bytes32 key = keccak256(abi.encode("vk", i));
            MockHalo2Verifier v = new MockHalo2Verifier(key);
            verifiers.push(v);
            segments[i] = IModelRegistry.Segment({
                segmentHash: keccak256(abi.encode("segment", i)), vkHash: key, verifier: address(v)
            });
        }
        zkModelId = models.registerModel(keccak256("digits-mlp zk"), 16, "blob://zk-model", segments);
        vm.prank(node);
        nodes.setModelPrice(zkModelId, PRICE);
        vm.deal(auditor, 10 ether);
    }

    // ---------------------------------------------------------------- data

    /// @notice The honest boundary hashes h_0..h_k of the job's input: boundary i is the one
    ///         tagged i (MockHalo2Verifier.point), h_i its hash.
    function _hashes() internal pure returns (uint256[] memory h) {
        h = new uint256[](SEGMENTS + 1);
        for (uint256 i; i <= SEGMENTS; ++i) {
            h[i] = _h(i);
        }
    }

    /// @notice The boundary hash of the boundary tagged `tag` (MockHalo2Verifier.hashOf).
    function _h(uint256 tag) internal pure returns (uint256) {
        return boundaryHash(tag);
    }

    /// @notice The tag (< 256) of the boundary whose hash is `hash`.
    function _tagOf(uint256 hash) internal pure returns (uint256) {
        for (uint256 tag; tag < 256; ++tag) {
            if (_h(tag) == hash) return tag;
        }
        revert("ZkFixture: no boundary tag has this hash");
    }

    /// @notice `h` with entry `index` replaced by another field element.
    function _with(uint256[] memory h, uint256 index, uint256 value) internal pure returns (uint256[] memory out) {
        out = new uint256[](h.length);
        for (uint256 i; i < h.length; ++i) {
            out[i] = h[i];
        }
        out[index] = value;
    }

    /// @notice The valid (mock) proof of segment `segment` between `h[segment]` and `h[segment + 1]`.
    function _proof(uint256 segment, uint256[] memory h) internal view returns (bytes memory) {
        return verifiers[segment].proofFor(_tagOf(h[segment]), _tagOf(h[segment + 1]));
    }

    // ---------------------------------------------------------------- job helpers

    /// @notice A zk request of `mode` for zkModelId, paid with ETH.
    function _zkRequest(IJobMarket.VerificationMode mode) internal view returns (IJobMarket.JobRequest memory r) {
        r = _request(MAX_FEE);
        r.modelId = zkModelId;
        r.mode = mode;
    }

    /// @notice The zk params of the honest input.
    function _params(bool attested) internal pure returns (IZkVerification.ZkParams memory) {
        return IZkVerification.ZkParams({inputBoundaryHash: _hashes()[0], attested: attested});
    }

    /// @notice `payer` submits a `mode` zk job (`attested` or not), paid with ETH.
    function _submitZk(IJobMarket.VerificationMode mode, bool attested) internal returns (uint256 jobId) {
        vm.prank(payer);
        jobId = market.submitZkJob{value: MAX_FEE}(_zkRequest(mode), _params(attested));
    }

    /// @notice `node` commits OUTPUT with boundary hashes `h` for `jobId`.
    function _commitZk(uint256 jobId, uint256[] memory h) internal {
        vm.prank(node);
        market.commitZkResult(jobId, keccak256(OUTPUT), OUTPUT, "", h);
    }

    /// @notice A `mode` job submitted, claimed and committed (honest hashes).
    function _committedZk(IJobMarket.VerificationMode mode, bool attested) internal returns (uint256 jobId) {
        jobId = _submitZk(mode, attested);
        _claim(jobId);
        _commitZk(jobId, _hashes());
    }

    /// @notice Mines past the seed block of `jobId`, setting its hash to `seed` (as a chain would).
    function _mineSeed(uint256 jobId, bytes32 seed) internal {
        uint256 seedBlock = zk.getZkJob(jobId).seedBlock;
        vm.roll(seedBlock + 1);
        vm.setBlockhash(seedBlock, seed);
    }

    /// @notice The segment a `seed` challenges for `jobId` (the module's rule).
    function _segmentFor(uint256 jobId, bytes32 seed) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode(seed, jobId))) % SEGMENTS;
    }

    /// @notice A seed that challenges segment `segment` of `jobId`.
    function _seedFor(uint256 jobId, uint256 segment) internal pure returns (bytes32 seed) {
        for (uint256 i = 1;; ++i) {
            seed = keccak256(abi.encode("seed", i));
            if (_segmentFor(jobId, seed) == segment) return seed;
        }
    }

    /// @notice A zk-spot job committed with `h` whose challenge is segment `segment`.
    function _spotJobChallenging(uint256 segment, uint256[] memory h) internal returns (uint256 jobId) {
        jobId = _submitZk(IJobMarket.VerificationMode.ZkSpot, false);
        _claim(jobId);
        _commitZk(jobId, h);
        _mineSeed(jobId, _seedFor(jobId, segment));
    }

    /// @notice Posts the proof of `segment` with hashes `h` for `jobId` as `who`.
    function _submitProof(address who, uint256 jobId, uint256 segment, bytes memory proof, uint256[] memory h)
        internal
    {
        vm.prank(who);
        zk.submitProof(jobId, segment, proof, h);
    }

    /// @notice The usual accounts plus the auditor and the attester.
    function _zkAccounts() internal view returns (address[] memory accounts) {
        address[] memory base = _accounts();
        accounts = new address[](base.length + 2);
        for (uint256 i; i < base.length; ++i) {
            accounts[i] = base[i];
        }
        accounts[base.length] = auditor;
        accounts[base.length + 1] = attester;
    }
}
