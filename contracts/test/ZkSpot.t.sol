// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ZkFixture} from "./utils/ZkFixture.sol";
import {FalseVerifier, MockHalo2Verifier, StatefulVerifier} from "./mocks/MockHalo2Verifier.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {ZkVerification} from "../src/ZkVerification.sol";
import {IJobMarket} from "../src/interfaces/IJobMarket.sol";
import {IModelRegistry} from "../src/interfaces/IModelRegistry.sol";
import {INodeRegistry} from "../src/interfaces/INodeRegistry.sol";
import {IPaymentVault} from "../src/interfaces/IPaymentVault.sol";
import {IZkVerification} from "../src/interfaces/IZkVerification.sol";

/// @title ZkSpotTest
/// @notice zk-spot jobs: submit, commit with boundary hashes, the challenge drawn from a later
///         block hash, the proof checked against the committed hashes, finalize gating, and the
///         slash when the proof is missing or fails. Verifiers are MockHalo2Verifier (same
///         interface and failure mode as ezkl's); real verifiers are tested in Python.
contract ZkSpotTest is ZkFixture {
    IJobMarket.VerificationMode internal constant SPOT = IJobMarket.VerificationMode.ZkSpot;

    // ---------------------------------------------------------------- binding and submit

    function test_setVerification_onlyOnceByOwnerAndBound() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.VerificationAlreadySet.selector, address(zk)));
        vm.prank(deployer);
        market.setVerification(zk);

        JobMarket other = _freshMarket();
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.VerificationNotBound.selector, address(zk), address(market)));
        vm.prank(deployer);
        other.setVerification(zk);

        vm.expectRevert(); // Ownable: not the owner
        vm.prank(payer);
        other.setVerification(zk);
    }

    function test_submitZkJob_revertsWithoutModule() public {
        JobMarket other = _freshMarket();
        vm.expectRevert(IJobMarket.VerificationNotSet.selector);
        vm.prank(payer);
        other.submitZkJob{value: MAX_FEE}(_zkRequest(SPOT), _params(false));
    }

    function test_submitZkJob_recordsTheJob() public {
        vm.expectEmit(address(zk));
        emit IZkVerification.ZkJobOpened(1, zkModelId, SPOT, _hashes()[0], false, SEGMENTS);
        uint256 jobId = _submitZk(SPOT, false);
        IJobMarket.Job memory job = market.getJob(jobId);
        assertEq(uint8(job.mode), uint8(SPOT));
        assertEq(uint8(job.status), uint8(IJobMarket.JobStatus.Open));
        IZkVerification.ZkJob memory z = zk.getZkJob(jobId);
        assertEq(z.inputBoundaryHash, _hashes()[0]);
        assertEq(z.segmentCount, SEGMENTS);
        assertEq(z.boundaryRoot, bytes32(0));
        assertFalse(z.full);
        assertEq(market.totalEscrow(), MAX_FEE);
    }

    function test_submitZkJob_revertsOnWrongModes() public {
        IJobMarket.VerificationMode[2] memory bad =
            [IJobMarket.VerificationMode.None, IJobMarket.VerificationMode.Redundant];
        for (uint256 i; i < bad.length; ++i) {
            vm.expectRevert(abi.encodeWithSelector(IJobMarket.UnsupportedVerificationMode.selector, bad[i]));
            vm.prank(payer);
            market.submitZkJob{value: MAX_FEE}(_zkRequest(bad[i]), _params(false));
        }
        // the plain entry points take mode None only
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.UnsupportedVerificationMode.selector, SPOT));
        vm.prank(payer);
        market.submitJob{value: MAX_FEE}(_zkRequest(SPOT));
    }

    function test_submitZkJob_revertsWhenASegmentHasNoVerifier() public {
        IModelRegistry.Segment[] memory segments = new IModelRegistry.Segment[](2);
        segments[0] = IModelRegistry.Segment(keccak256("a"), bytes32(0), address(verifiers[0]));
        segments[1] = IModelRegistry.Segment(keccak256("b"), bytes32(0), address(0));
        bytes32 unprovable = models.registerModel(keccak256("unprovable"), 16, "", segments);
        IJobMarket.JobRequest memory r = _zkRequest(SPOT);
        r.modelId = unprovable;
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.SegmentHasNoVerifier.selector, unprovable, 1));
        vm.prank(payer);
        market.submitZkJob{value: MAX_FEE}(r, _params(false));
    }

    function test_submitZkJob_revertsOnInputHashOutsideTheField() public {
        IZkVerification.ZkParams memory p = _params(false);
        p.inputBoundaryHash = FIELD;
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.InputBoundaryHashOutOfField.selector, FIELD));
        vm.prank(payer);
        market.submitZkJob{value: MAX_FEE}(_zkRequest(SPOT), p);
    }

    function test_hooks_onlyMarket() public {
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.NotMarket.selector, payer));
        vm.prank(payer);
        zk.onSubmit(1, zkModelId, SPOT, _params(false));
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.NotMarket.selector, payer));
        vm.prank(payer);
        zk.onCommit(1, _hashes());
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.NotVerification.selector, payer));
        vm.prank(payer);
        market.slashJob(1, payer);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.NotVerification.selector, payer));
        vm.prank(payer);
        market.setDisputed(1, true);
    }

    // ---------------------------------------------------------------- commit

    function test_commitZkResult_storesRootAndEmitsHashes() public {
        uint256 jobId = _submitZk(SPOT, false);
        _claim(jobId);
        uint256[] memory h = _hashes();
        vm.expectEmit(address(zk));
        emit IZkVerification.BoundaryHashesCommitted(
            jobId, h, block.number + CHALLENGE_DELAY, block.timestamp + PROOF_WINDOW
        );
        _commitZk(jobId, h);
        IZkVerification.ZkJob memory z = zk.getZkJob(jobId);
        assertEq(z.boundaryRoot, keccak256(abi.encodePacked(h)));
        assertEq(z.seedBlock, block.number + CHALLENGE_DELAY);
        assertEq(z.proofDeadline, block.timestamp + PROOF_WINDOW);
        assertEq(z.requiredMask, 0);
        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Committed));
    }

    function test_commitZkResult_revertsWhenFirstHashIsNotTheRequestInput() public {
        uint256 jobId = _submitZk(SPOT, false);
        _claim(jobId);
        uint256[] memory h = _with(_hashes(), 0, 42);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.InputBoundaryMismatch.selector, jobId, _hashes()[0], 42));
        _commitZk(jobId, h);
    }

    function test_commitZkResult_revertsOnWrongHashCount() public {
        uint256 jobId = _submitZk(SPOT, false);
        _claim(jobId);
        uint256[] memory h = new uint256[](SEGMENTS);
        h[0] = _hashes()[0];
        vm.expectRevert(
            abi.encodeWithSelector(IZkVerification.BoundaryCountMismatch.selector, jobId, SEGMENTS + 1, SEGMENTS)
        );
        _commitZk(jobId, h);
    }

    function test_commit_modeMustMatchTheEntryPoint() public {
        uint256 zkJob = _submitZk(SPOT, false);
        _claim(zkJob);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.VerificationModeMismatch.selector, zkJob, SPOT));
        _commit(zkJob); // plain commit of a zk job

        uint256 plainJob = _submit();
        _claim(plainJob);
        vm.expectRevert(
            abi.encodeWithSelector(
                IJobMarket.VerificationModeMismatch.selector, plainJob, IJobMarket.VerificationMode.None
            )
        );
        _commitZk(plainJob, _hashes());
    }

    // ---------------------------------------------------------------- challenge

    function test_challenge_notBeforeTheSeedBlockExists() public {
        uint256 jobId = _committedZk(SPOT, false);
        uint256 seedBlock = zk.getZkJob(jobId).seedBlock;
        assertEq(zk.requiredSegments(jobId), 0);
        vm.roll(seedBlock); // the seed block is being built: its hash does not exist yet
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.ChallengeNotReady.selector, jobId, seedBlock, seedBlock));
        zk.challenge(jobId);
        bytes memory proof = _proof(0, _hashes());
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.ChallengeNotReady.selector, jobId, seedBlock, seedBlock));
        _submitProof(node, jobId, 0, proof, _hashes());
    }

    function test_challenge_derivesTheSegmentFromTheSeedBlockHash() public {
        uint256 jobId = _committedZk(SPOT, false);
        bytes32 seed = keccak256("a block hash");
        _mineSeed(jobId, seed);
        uint256 expected = uint256(keccak256(abi.encode(seed, jobId))) % SEGMENTS;
        assertEq(zk.requiredSegments(jobId), uint64(uint256(1) << expected));

        vm.expectEmit(address(zk));
        emit IZkVerification.SegmentChallenged(jobId, expected, seed);
        vm.prank(keeper); // anyone
        uint64 mask = zk.challenge(jobId);
        assertEq(mask, uint64(uint256(1) << expected));
        assertEq(zk.getZkJob(jobId).requiredMask, mask);

        // fixed once drawn: later blocks do not change it
        vm.roll(block.number + 10);
        assertEq(zk.requiredSegments(jobId), mask);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.ChallengeAlreadyDrawn.selector, jobId, mask));
        zk.challenge(jobId);
    }

    function testFuzz_challenge_coversEverySegmentAndIsUnknownAtCommit(bytes32 seed) public {
        vm.assume(seed != bytes32(0));
        uint256 jobId = _committedZk(SPOT, false);
        _mineSeed(jobId, seed);
        uint64 mask = zk.challenge(jobId);
        assertEq(mask, uint64(uint256(1) << _segmentFor(jobId, seed)));
    }

    function test_challenge_seedsOfJobsCommittedTogetherDiffer() public {
        // two jobs with the same seed block get independent draws (the job id is mixed in)
        uint256 a = _submitZk(SPOT, false);
        uint256 b = _submitZk(SPOT, false);
        _claim(a);
        _claim(b);
        _commitZk(a, _hashes());
        _commitZk(b, _hashes());
        bytes32 seed = keccak256(abi.encode("pair", 0));
        for (uint256 i = 1; _segmentFor(a, seed) != 0 || _segmentFor(b, seed) == 0; ++i) {
            seed = keccak256(abi.encode("pair", i));
        }
        _mineSeed(a, seed);
        assertEq(zk.challenge(a), 1);
        assertTrue(zk.challenge(b) != 1);
    }

    function test_challenge_allSegmentsWhenTheSeedHashIsOutOfReach() public {
        uint256 jobId = _committedZk(SPOT, false);
        uint256 seedBlock = zk.getZkJob(jobId).seedBlock;
        vm.roll(seedBlock + 257); // blockhash(seedBlock) is 0 now
        assertEq(blockhash(seedBlock), bytes32(0));
        vm.expectEmit(address(zk));
        emit IZkVerification.ChallengeSeedExpired(jobId, seedBlock);
        assertEq(zk.challenge(jobId), uint64(7));
        // every segment must now be proven before the job can finalize
        uint256[] memory h = _hashes();
        _submitProof(node, jobId, 0, _proof(0, h), h);
        _submitProof(node, jobId, 2, _proof(2, h), h);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        assertFalse(zk.canFinalize(jobId));
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.NotVerified.selector, jobId));
        market.finalize(jobId);
        _submitProof(node, jobId, 1, _proof(1, h), h);
        market.finalize(jobId);
    }

    function test_challenge_revertsForUnknownAndUncommittedJobs() public {
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.NotZkJob.selector, 99));
        zk.challenge(99);
        uint256 jobId = _submitZk(SPOT, false);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.NotCommitted.selector, jobId));
        zk.challenge(jobId);
    }

    // ---------------------------------------------------------------- proof and settlement

    function test_submitProof_honestNodeIsPaidAfterTheWindow() public {
        uint256[] memory h = _hashes();
        uint256 jobId = _spotJobChallenging(1, h);
        // finalize waits for the proof even after the window
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.NotVerified.selector, jobId));
        market.finalize(jobId);
        assertEq(market.finalizeMany(_one(jobId)), 0);

        vm.expectEmit(address(zk));
        emit IZkVerification.SegmentChallenged(jobId, 1, _seedFor(jobId, 1));
        vm.expectEmit(address(zk));
        emit IZkVerification.SegmentProven(jobId, 1, node);
        _submitProof(node, jobId, 1, _proof(1, h), h); // draws the challenge lazily
        assertEq(zk.getZkJob(jobId).provenMask, 2);
        assertTrue(zk.canFinalize(jobId));

        vm.prank(keeper);
        market.finalize(jobId);
        uint256 fee = PRICE * FEE_BPS / 10_000;
        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Settled));
        assertEq(market.withdrawable(node), PRICE - fee);
        assertEq(market.withdrawable(payer), MAX_FEE - PRICE);
        assertEq(nodes.getNode(node).locked, 0);
        _assertSolvent(_zkAccounts());
    }

    function test_submitProof_anyoneMayPostTheProof() public {
        uint256[] memory h = _hashes();
        uint256 jobId = _spotJobChallenging(0, h);
        _submitProof(auditor, jobId, 0, _proof(0, h), h);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        market.finalize(jobId);
    }

    function test_submitProof_rejectsATamperedProof() public {
        uint256[] memory h = _hashes();
        uint256 jobId = _spotJobChallenging(2, h);
        bytes memory proof = _proof(2, h);
        proof[150] ^= 0x01; // past the boundary commitments: the verifier rejects it
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.ProofRejected.selector, jobId, 2, address(verifiers[2])));
        _submitProof(node, jobId, 2, proof, h);
        // a changed commitment is refused before the verifier runs
        proof = _proof(2, h);
        proof[70] ^= 0x01;
        bytes memory output = new bytes(64);
        for (uint256 i; i < 64; ++i) {
            output[i] = proof[64 + i];
        }
        uint256 outputHash = uint256(keccak256(output)) % FIELD;
        vm.expectRevert(
            abi.encodeWithSelector(IZkVerification.ProofBoundaryMismatch.selector, jobId, 2, h[2], outputHash)
        );
        _submitProof(node, jobId, 2, proof, h);
        // as is a proof too short to hold them
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.ProofRejected.selector, jobId, 2, address(verifiers[2])));
        _submitProof(node, jobId, 2, new bytes(127), h);
    }

    function test_submitProof_rejectsAnotherSegmentsProof() public {
        uint256[] memory h = _hashes();
        uint256 jobId = _spotJobChallenging(2, h);
        bytes memory segment1Proof = _proof(1, h);
        // segment 1's valid proof, posted as segment 2's: its boundaries are segment 1's
        vm.expectRevert(
            abi.encodeWithSelector(IZkVerification.ProofBoundaryMismatch.selector, jobId, 2, h[1], h[2])
        );
        _submitProof(node, jobId, 2, segment1Proof, h);
        // segment 1's circuit run on segment 2's boundaries: segment 2's verifier rejects it
        bytes memory wrongCircuit = verifiers[1].proofFor(2, 3);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.ProofRejected.selector, jobId, 2, address(verifiers[2])));
        _submitProof(node, jobId, 2, wrongCircuit, h);
        // and a segment that was not challenged is refused before any verifier runs
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.SegmentNotRequired.selector, jobId, 1, uint64(4)));
        _submitProof(node, jobId, 1, segment1Proof, h);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.SegmentNotRequired.selector, jobId, 64, uint64(4)));
        _submitProof(node, jobId, 64, segment1Proof, h);
    }

    function test_submitProof_instancesComeFromTheCommittedHashes() public {
        uint256[] memory h = _hashes();
        uint256 jobId = _spotJobChallenging(1, h);
        // hashes that differ from the commitment are refused, whatever the proof
        uint256[] memory other = _with(h, 2, _h(7));
        bytes memory otherProof = _proof(1, other);
        vm.expectRevert(
            abi.encodeWithSelector(
                IZkVerification.BoundaryHashesMismatch.selector,
                jobId,
                keccak256(abi.encodePacked(h)),
                keccak256(abi.encodePacked(other))
            )
        );
        _submitProof(node, jobId, 1, otherProof, other);
        // a valid proof of other boundaries fails against the committed ones
        vm.expectRevert(
            abi.encodeWithSelector(IZkVerification.ProofBoundaryMismatch.selector, jobId, 1, h[1], _h(7))
        );
        _submitProof(node, jobId, 1, otherProof, h);
    }

    function test_submitProof_onlyOncePerSegment() public {
        uint256[] memory h = _hashes();
        uint256 jobId = _spotJobChallenging(0, h);
        bytes memory proof = _proof(0, h);
        _submitProof(node, jobId, 0, proof, h);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.SegmentAlreadyProven.selector, jobId, 0));
        _submitProof(node, jobId, 0, proof, h);
    }

    function test_submitProof_revertsAfterTheDeadline() public {
        uint256[] memory h = _hashes();
        uint256 jobId = _spotJobChallenging(0, h);
        uint256 deadline = zk.getZkJob(jobId).proofDeadline;
        bytes memory proof = _proof(0, h);
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.ProofDeadlinePassed.selector, jobId, deadline));
        _submitProof(node, jobId, 0, proof, h);
    }

    function test_submitProof_verifierIsStaticcalledAndMustReturnTrue() public {
        StatefulVerifier stateful = new StatefulVerifier();
        FalseVerifier liar = new FalseVerifier();
        address[2] memory hostile = [address(stateful), address(liar)];
        for (uint256 v; v < hostile.length; ++v) {
            IModelRegistry.Segment[] memory segments = new IModelRegistry.Segment[](1);
            segments[0] = IModelRegistry.Segment(keccak256(abi.encode("hostile", v)), bytes32(0), hostile[v]);
            bytes32 id = models.registerModel(keccak256(abi.encode("hostile model", v)), 16, "", segments);
            vm.prank(node);
            nodes.setModelPrice(id, PRICE);
            IJobMarket.JobRequest memory r = _zkRequest(SPOT);
            r.modelId = id;
            vm.prank(payer);
            uint256 jobId = market.submitZkJob{value: MAX_FEE}(r, _params(false));
            _claim(jobId);
            uint256[] memory h = new uint256[](2);
            h[0] = _hashes()[0];
            h[1] = 5;
            _commitZk(jobId, h);
            vm.roll(block.number + CHALLENGE_DELAY + 1);
            vm.expectRevert(abi.encodeWithSelector(IZkVerification.ProofRejected.selector, jobId, 0, hostile[v]));
            _submitProof(node, jobId, 0, hex"01", h);
        }
        assertEq(stateful.calls(), 0);
    }

    // ---------------------------------------------------------------- slash

    function test_slashUnproven_missingProofSlashesAndRefunds() public {
        uint256 jobId = _committedZk(SPOT, false);
        uint256 collateral = market.getJob(jobId).collateral;
        uint256 stakeBefore = nodes.getNode(node).stake;
        uint256 deadline = zk.getZkJob(jobId).proofDeadline;

        vm.warp(deadline);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.ProofDeadlineNotPassed.selector, jobId, deadline));
        zk.slashUnproven(jobId);

        vm.warp(deadline + 1);
        uint256 compensation = collateral * SLASH_PAYER_BPS / 10_000;
        vm.expectEmit(address(zk));
        emit IZkVerification.ProofDeadlineMissed(jobId, 0, 0);
        vm.expectEmit(address(market));
        emit IJobMarket.JobSlashed(jobId, MAX_FEE, collateral, compensation, keeper);
        vm.prank(keeper);
        zk.slashUnproven(jobId);

        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Slashed));
        assertEq(market.withdrawable(payer), MAX_FEE + compensation);
        assertEq(market.withdrawable(keeper), collateral - compensation);
        assertEq(nodes.getNode(node).stake, stakeBefore - collateral);
        assertEq(nodes.getNode(node).locked, 0);
        assertEq(market.totalEscrow(), 0);
        _assertSolvent(_zkAccounts());

        // terminal: nothing more happens to it
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.InvalidJobStatus.selector, jobId, IJobMarket.JobStatus.Slashed)
        );
        zk.slashUnproven(jobId);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.InvalidJobStatus.selector, jobId, IJobMarket.JobStatus.Slashed)
        );
        market.finalize(jobId);
    }

    function test_slashUnproven_failingProofEndsInSlash() public {
        // a node whose committed output hash is wrong cannot prove the last segment
        uint256[] memory h = _hashes();
        uint256[] memory cheat = _with(h, SEGMENTS, 12345);
        uint256 jobId = _spotJobChallenging(SEGMENTS - 1, cheat);
        bytes memory honestProof = _proof(SEGMENTS - 1, h);
        vm.expectRevert(
            abi.encodeWithSelector(
                IZkVerification.ProofBoundaryMismatch.selector, jobId, SEGMENTS - 1, h[SEGMENTS - 1], h[SEGMENTS]
            )
        );
        _submitProof(node, jobId, SEGMENTS - 1, honestProof, cheat); // its honest proof
        vm.warp(zk.getZkJob(jobId).proofDeadline + 1);
        vm.prank(keeper);
        zk.slashUnproven(jobId);
        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Slashed));
        _assertSolvent(_zkAccounts());
    }

    function test_slashUnproven_cheaterEscapesWhenAnHonestSegmentIsChallenged() public {
        // the 1/k in "caught with probability 1/k": a cheat in the last segment only is not
        // seen when segment 0 is challenged (the auditors' output check is the other net)
        uint256[] memory h = _hashes();
        uint256[] memory cheat = _with(h, SEGMENTS, 12345);
        uint256 jobId = _spotJobChallenging(0, cheat);
        _submitProof(node, jobId, 0, _proof(0, h), cheat);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        market.finalize(jobId);
    }

    function test_slashUnproven_revertsOnceProven() public {
        uint256[] memory h = _hashes();
        uint256 jobId = _spotJobChallenging(2, h);
        _submitProof(node, jobId, 2, _proof(2, h), h);
        vm.warp(zk.getZkJob(jobId).proofDeadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.AlreadyVerified.selector, jobId));
        zk.slashUnproven(jobId);
        market.finalize(jobId);
    }

    function test_slashUnproven_vaultFundedJobRefundsTheVault() public {
        IJobMarket.JobRequest memory r = _zkRequest(SPOT);
        r.vaultAgent = agent;
        vm.prank(spender);
        uint256 jobId = market.submitZkJob(r, _params(false));
        _claim(jobId);
        _commitZk(jobId, _hashes());
        uint256 collateral = market.getJob(jobId).collateral;
        uint256 compensation = collateral * SLASH_PAYER_BPS / 10_000;
        vm.warp(zk.getZkJob(jobId).proofDeadline + 1);
        vm.prank(keeper);
        zk.slashUnproven(jobId);
        assertEq(vault.getAccount(agent).balance, VAULT_DEPOSIT + compensation);
        assertEq(market.withdrawable(keeper), collateral - compensation);
        _assertSolvent(_zkAccounts());
    }

    function test_publishProof_onlyTheNode() public {
        uint256 jobId = _committedZk(SPOT, true);
        vm.expectEmit(address(zk));
        emit IZkVerification.ProofPublished(jobId, node, "blob://proof");
        vm.prank(node);
        zk.publishProof(jobId, "blob://proof");
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.NotNode.selector, jobId, payer));
        vm.prank(payer);
        zk.publishProof(jobId, "blob://proof");
    }

    function test_constructor_checksParameters() public {
        IJobMarket m = IJobMarket(address(market));
        vm.expectRevert(IZkVerification.ZeroAddress.selector);
        new ZkVerification(IJobMarket(address(0)), 1, 1, 1, 1, 1);
        vm.expectRevert(IZkVerification.ZeroProofWindow.selector);
        new ZkVerification(m, 0, 1, 1, 1, 1);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.ChallengeDelayOutOfRange.selector, 0, 128));
        new ZkVerification(m, 1, 0, 1, 1, 1);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.ChallengeDelayOutOfRange.selector, 129, 128));
        new ZkVerification(m, 1, 129, 1, 1, 1);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.DurationTooLong.selector, 366 days, 365 days));
        new ZkVerification(m, 366 days, 1, 1, 1, 1);
        ZkVerification ok = new ZkVerification(m, 1, 1, 1, 1, 1);
        assertEq(address(ok.modelRegistry()), address(models));
    }

    // ---------------------------------------------------------------- helpers

    function _one(uint256 jobId) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](1);
        ids[0] = jobId;
    }

    /// @notice A second market on the same registries, without a module.
    function _freshMarket() internal returns (JobMarket other) {
        vm.prank(deployer);
        other = new JobMarket(
            INodeRegistry(address(nodes)),
            IModelRegistry(address(models)),
            IPaymentVault(address(vault)),
            treasury,
            FEE_BPS,
            CHALLENGE_WINDOW,
            MAX_JOB_DURATION,
            COLLATERAL_BPS,
            MIN_JOB_COLLATERAL,
            SLASH_PAYER_BPS,
            MAX_CALLBACK_GAS
        );
    }
}
