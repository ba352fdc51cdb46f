// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "./utils/Test.sol";
import {MockHalo2Verifier, FalseVerifier, boundaryHash} from "./mocks/MockHalo2Verifier.sol";
import {ModelRegistry} from "../src/ModelRegistry.sol";
import {NodeRegistry} from "../src/NodeRegistry.sol";
import {PipelineJobs} from "../src/PipelineJobs.sol";
import {IModelRegistry} from "../src/interfaces/IModelRegistry.sol";
import {IPipelineJobs} from "../src/interfaces/IPipelineJobs.sol";

/// @title PipelineJobsTest
/// @notice Pipelined jobs over the real ModelRegistry and NodeRegistry, with mock verifiers
///         that accept exactly `abi.encode(key, inputHash, outputHash)` (real ezkl verifiers:
///         tests/integration/test_pipeline.py). After every test that moves money, the
///         contract's balance must equal what it owes.
contract PipelineJobsTest is Test {
    uint256 internal constant SEGMENT_BOND = 0.1 ether;
    uint256 internal constant CHALLENGE_BOND = 0.05 ether;
    uint256 internal constant SEGMENT_WINDOW = 600;
    uint256 internal constant CHALLENGE_WINDOW = 300;
    uint256 internal constant PROOF_WINDOW = 120;
    uint256 internal constant MIN_STAKE = 1 ether;
    uint96 internal constant FEE0 = 0.003 ether;
    uint96 internal constant FEE1 = 0.002 ether;
    uint96 internal constant FEE2 = 0.001 ether;

    ModelRegistry internal models;
    NodeRegistry internal nodes;
    PipelineJobs internal pipe;
    MockHalo2Verifier[3] internal verifiers;
    bytes32 internal modelId;

    address internal payer = makeAddr("payer");
    address internal challenger = makeAddr("challenger");
    address internal keeper = makeAddr("keeper");
    address internal outsider = makeAddr("outsider");
    address[3] internal node;

    bytes internal constant INPUT = hex"0104020000000800000008";
    uint256 internal constant IN_BOUNDARY = 11; // the input boundary's tag
    // Each segment's output: blob hash and boundary (its tag: the hash is `_bh(tag)`).
    bytes32[3] internal outHash = [keccak256("act0"), keccak256("act1"), keccak256("result")];
    uint256[3] internal outBoundary = [uint256(22), 33, 44];

    address[] internal actors;

    function setUp() public {
        models = new ModelRegistry();
        nodes = new NodeRegistry(address(models), MIN_STAKE, 7 days);
        IModelRegistry.Segment[] memory segs = new IModelRegistry.Segment[](3);
        for (uint256 i; i < 3; ++i) {
            verifiers[i] = new MockHalo2Verifier(bytes32(i + 1));
            segs[i] = IModelRegistry.Segment(keccak256(abi.encode("seg", i)), bytes32(i + 1), address(verifiers[i]));
        }
        modelId = models.registerModel(keccak256("artefacts"), 16, "blob://m", segs);
        pipe = new PipelineJobs(
            models, nodes, SEGMENT_BOND, CHALLENGE_BOND, SEGMENT_WINDOW, CHALLENGE_WINDOW, PROOF_WINDOW
        );
        for (uint256 i; i < 3; ++i) {
            node[i] = makeAddr(string.concat("node", vm.toString(i)));
            vm.deal(node[i], 10 ether);
            vm.startPrank(node[i]);
            nodes.register{value: 2 ether}();
            nodes.setModelPrice(modelId, 1);
            vm.stopPrank();
            actors.push(node[i]);
        }
        vm.deal(payer, 10 ether);
        vm.deal(challenger, 10 ether);
        vm.deal(outsider, 10 ether);
        actors.push(payer);
        actors.push(challenger);
        actors.push(keeper);
        actors.push(outsider);
    }

    // ---------------------------------------------------------------- helpers

    function _fees() internal pure returns (uint96[] memory fees) {
        fees = new uint96[](3);
        fees[0] = FEE0;
        fees[1] = FEE1;
        fees[2] = FEE2;
    }

    function _submit() internal returns (uint256 jobId) {
        IPipelineJobs.PipelineRequest memory req =
            IPipelineJobs.PipelineRequest(modelId, keccak256(INPUT), _bh(IN_BOUNDARY), _fees());
        vm.prank(payer);
        jobId = pipe.submitJob{value: FEE0 + FEE1 + FEE2}(req, INPUT);
    }

    function _claim(uint256 jobId, uint256 i) internal {
        vm.prank(node[i]);
        pipe.claimSegment{value: SEGMENT_BOND}(jobId, i);
    }

    function _commitFor(uint256 i) internal view returns (IPipelineJobs.SegmentCommit memory c) {
        c.inputHash = i == 0 ? keccak256(INPUT) : outHash[i - 1];
        c.inputBoundaryHash = _bh(i == 0 ? IN_BOUNDARY : outBoundary[i - 1]);
        c.outputHash = outHash[i];
        c.outputBoundaryHash = _bh(outBoundary[i]);
    }

    /// @notice The boundary hash of the boundary tagged `tag` (MockHalo2Verifier.point).
    function _bh(uint256 tag) internal pure returns (uint256) {
        return boundaryHash(tag);
    }

    function _commit(uint256 jobId, uint256 i) internal {
        IPipelineJobs.SegmentCommit memory c = _commitFor(i);
        vm.prank(node[i]);
        pipe.commitSegment(jobId, i, c);
    }

    function _runAll() internal returns (uint256 jobId) {
        jobId = _submit();
        for (uint256 i; i < 3; ++i) {
            _claim(jobId, i);
        }
        for (uint256 i; i < 3; ++i) {
            _commit(jobId, i);
        }
    }

    /// @notice The contract's balance equals Σ escrow + Σ bonds + Σ challenge bonds + Σ credits.
    function _assertSolvent() internal view {
        uint256 owed;
        uint256 jobs = pipe.jobCount();
        for (uint256 j = 1; j <= jobs; ++j) {
            IPipelineJobs.PipelineJob memory job = pipe.getJob(j);
            owed += job.escrow;
            for (uint256 i; i < job.segmentCount; ++i) {
                IPipelineJobs.SegmentSlot memory s = pipe.getSegment(j, i);
                owed += uint256(s.bond) + s.challengeBond;
            }
        }
        for (uint256 a; a < actors.length; ++a) {
            owed += pipe.withdrawable(actors[a]);
        }
        assertEq(address(pipe).balance, owed, "balance == owed");
    }

    function _withdrawAll() internal {
        for (uint256 a; a < actors.length; ++a) {
            if (pipe.withdrawable(actors[a]) == 0) continue;
            vm.prank(actors[a]);
            pipe.withdraw();
        }
        assertEq(address(pipe).balance, 0, "everything paid out");
    }

    // ---------------------------------------------------------------- happy path, payment split

    function test_HonestPipelinePaysEachNodeItsSegment() public {
        uint256 jobId = _runAll();
        IPipelineJobs.PipelineJob memory job = pipe.getJob(jobId);
        assertEq(uint256(job.status), uint256(IPipelineJobs.JobStatus.Completed));
        assertEq(job.committed, 3);
        assertEq(pipe.getSegment(jobId, 2).outputHash, outHash[2], "result hash");
        _assertSolvent();

        vm.expectRevert(
            abi.encodeWithSelector(
                IPipelineJobs.ChallengeWindowOpen.selector, jobId, block.timestamp + CHALLENGE_WINDOW
            )
        );
        pipe.finalize(jobId);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.expectEmit(address(pipe));
        emit IPipelineJobs.PipelineFinalized(jobId, true, FEE0 + FEE1 + FEE2, 0);
        vm.prank(keeper);
        pipe.finalize(jobId);
        assertEq(pipe.withdrawable(node[0]), FEE0 + SEGMENT_BOND);
        assertEq(pipe.withdrawable(node[1]), FEE1 + SEGMENT_BOND);
        assertEq(pipe.withdrawable(node[2]), FEE2 + SEGMENT_BOND);
        assertEq(pipe.withdrawable(payer), 0);
        _assertSolvent();

        uint256 before = node[1].balance;
        vm.prank(node[1]);
        pipe.withdraw();
        assertEq(node[1].balance - before, FEE1 + SEGMENT_BOND);
        _withdrawAll();

        vm.expectRevert(
            abi.encodeWithSelector(IPipelineJobs.WrongJobStatus.selector, jobId, IPipelineJobs.JobStatus.Finalized)
        );
        pipe.finalize(jobId);
    }

    // ---------------------------------------------------------------- links

    function test_WrongLinkIsRefused() public {
        uint256 jobId = _submit();
        for (uint256 i; i < 3; ++i) {
            _claim(jobId, i);
        }
        // Segment 0 must start from the job's input.
        IPipelineJobs.SegmentCommit memory c = _commitFor(0);
        c.inputHash = keccak256("another input");
        vm.prank(node[0]);
        vm.expectRevert(
            abi.encodeWithSelector(
                IPipelineJobs.InputHashLinkMismatch.selector, jobId, 0, keccak256(INPUT), c.inputHash
            )
        );
        pipe.commitSegment(jobId, 0, c);
        _commit(jobId, 0);

        // Segment 1 starting from another activation blob than segment 0's output.
        c = _commitFor(1);
        c.inputHash = keccak256("forged activation");
        vm.prank(node[1]);
        vm.expectRevert(
            abi.encodeWithSelector(IPipelineJobs.InputHashLinkMismatch.selector, jobId, 1, outHash[0], c.inputHash)
        );
        pipe.commitSegment(jobId, 1, c);
        // ... or from another boundary hash.
        c = _commitFor(1);
        c.inputBoundaryHash = 999;
        vm.prank(node[1]);
        vm.expectRevert(
            abi.encodeWithSelector(IPipelineJobs.BoundaryLinkMismatch.selector, jobId, 1, _bh(outBoundary[0]), 999)
        );
        pipe.commitSegment(jobId, 1, c);

        // Out of order, and not the claimer.
        c = _commitFor(2);
        vm.prank(node[2]);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.SegmentOutOfOrder.selector, jobId, 2, 1));
        pipe.commitSegment(jobId, 2, c);
        c = _commitFor(1);
        vm.prank(node[2]);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.NotSegmentNode.selector, jobId, 1, node[2]));
        pipe.commitSegment(jobId, 1, c);
        _commit(jobId, 1);
        assertEq(pipe.getJob(jobId).committed, 2);
        _assertSolvent();
    }

    function test_SubmitAndClaimChecks() public {
        IPipelineJobs.PipelineRequest memory req =
            IPipelineJobs.PipelineRequest(modelId, keccak256(INPUT), _bh(IN_BOUNDARY), _fees());
        vm.startPrank(payer);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.WrongValue.selector, FEE0 + FEE1 + FEE2, 1));
        pipe.submitJob{value: 1}(req, INPUT);
        vm.expectRevert(
            abi.encodeWithSelector(IPipelineJobs.InputHashMismatch.selector, keccak256(INPUT), keccak256("x"))
        );
        pipe.submitJob{value: FEE0 + FEE1 + FEE2}(req, "x");
        req.fees = new uint96[](2);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.FeeCountMismatch.selector, 3, 2));
        pipe.submitJob(req, INPUT);
        req.fees = _fees();
        req.inputBoundaryHash = pipe.SNARK_SCALAR_FIELD();
        vm.expectRevert(
            abi.encodeWithSelector(IPipelineJobs.BoundaryHashOutOfField.selector, pipe.SNARK_SCALAR_FIELD())
        );
        pipe.submitJob{value: FEE0 + FEE1 + FEE2}(req, INPUT);
        req.modelId = keccak256("nope");
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.ModelNotRegistered.selector, req.modelId));
        pipe.submitJob(req, INPUT);
        vm.stopPrank();

        uint256 jobId = _submit();
        vm.prank(outsider);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.NodeNotRegistered.selector, outsider));
        pipe.claimSegment{value: SEGMENT_BOND}(jobId, 0);
        vm.prank(node[0]);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.WrongValue.selector, SEGMENT_BOND, 1));
        pipe.claimSegment{value: 1}(jobId, 0);
        vm.prank(node[0]);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.SegmentOutOfRange.selector, jobId, 3, 3));
        pipe.claimSegment{value: SEGMENT_BOND}(jobId, 3);
        // A node that stopped serving the model, and one unbonding below the minimum stake.
        vm.prank(node[1]);
        nodes.removeModel(modelId);
        vm.prank(node[1]);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.ModelNotServed.selector, node[1], modelId));
        pipe.claimSegment{value: SEGMENT_BOND}(jobId, 1);
        vm.prank(node[2]);
        nodes.requestUnbond(1.5 ether);
        vm.prank(node[2]);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.NodeNotStaked.selector, node[2], 0.5 ether, MIN_STAKE));
        pipe.claimSegment{value: SEGMENT_BOND}(jobId, 2);
        _claim(jobId, 0);
        vm.prank(node[0]);
        vm.expectRevert(
            abi.encodeWithSelector(
                IPipelineJobs.WrongSegmentStatus.selector, jobId, 0, IPipelineJobs.SegmentStatus.Claimed
            )
        );
        pipe.claimSegment{value: SEGMENT_BOND}(jobId, 0);
        _assertSolvent();
    }

    function test_ModelWithoutVerifierIsRefused() public {
        IModelRegistry.Segment[] memory segs = new IModelRegistry.Segment[](1);
        segs[0] = IModelRegistry.Segment(keccak256("s"), bytes32(0), address(0));
        bytes32 bare = models.registerModel(keccak256("bare"), 16, "blob://bare", segs);
        uint96[] memory fees = new uint96[](1);
        fees[0] = 1;
        IPipelineJobs.PipelineRequest memory req = IPipelineJobs.PipelineRequest(bare, keccak256(INPUT), 1, fees);
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.SegmentHasNoVerifier.selector, bare, 0));
        pipe.submitJob{value: 1}(req, "");
    }

    // ---------------------------------------------------------------- stall / expiry

    function test_StalledSegmentEndsJobWithRefundOfUnfinishedPart() public {
        uint256 jobId = _submit();
        for (uint256 i; i < 3; ++i) {
            _claim(jobId, i);
        }
        _commit(jobId, 0);
        uint256 deadline = pipe.getJob(jobId).stepDeadline;
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.StepDeadlineNotPassed.selector, jobId, deadline));
        pipe.expire(jobId);
        vm.warp(deadline + 1);
        // The late node can no longer commit.
        IPipelineJobs.SegmentCommit memory c = _commitFor(1);
        vm.prank(node[1]);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.StepDeadlinePassed.selector, jobId, deadline));
        pipe.commitSegment(jobId, 1, c);

        vm.expectEmit(address(pipe));
        emit IPipelineJobs.PipelineStalled(jobId, 1, node[1], SEGMENT_BOND);
        vm.prank(keeper);
        pipe.expire(jobId);
        assertEq(pipe.withdrawable(payer), SEGMENT_BOND, "stalled node's bond to the payer");
        _assertSolvent();

        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.prank(keeper);
        pipe.finalize(jobId);
        // Segment 0 is paid; segments 1 and 2 are refunded; node 2 (claimed, not at fault) gets
        // its bond back; node 1 lost its bond.
        assertEq(pipe.withdrawable(node[0]), FEE0 + SEGMENT_BOND);
        assertEq(pipe.withdrawable(node[1]), 0);
        assertEq(pipe.withdrawable(node[2]), SEGMENT_BOND);
        assertEq(pipe.withdrawable(payer), SEGMENT_BOND + FEE1 + FEE2);
        _assertSolvent();
        _withdrawAll();
    }

    function test_UnclaimedJobExpiresWithFullRefund() public {
        uint256 jobId = _submit();
        vm.warp(block.timestamp + SEGMENT_WINDOW + 1);
        vm.prank(keeper);
        pipe.expire(jobId);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        pipe.finalize(jobId);
        assertEq(pipe.withdrawable(payer), FEE0 + FEE1 + FEE2);
        _assertSolvent();
        _withdrawAll();
    }

    // ---------------------------------------------------------------- challenge, proof, slash

    function test_ChallengedSegmentProvenPaysChallengeBondToNode() public {
        uint256 jobId = _runAll();
        vm.prank(challenger);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.WrongValue.selector, CHALLENGE_BOND, 0));
        pipe.challengeSegment(jobId, 1);
        vm.prank(challenger);
        pipe.challengeSegment{value: CHALLENGE_BOND}(jobId, 1);
        _assertSolvent();

        // A proof of other boundary hashes, or another segment's proof, is rejected.
        bytes memory wrong = verifiers[1].proofFor(outBoundary[0], 12345);
        vm.expectRevert(
            abi.encodeWithSelector(
                IPipelineJobs.ProofBoundaryMismatch.selector, jobId, 1, _bh(outBoundary[0]), _bh(12345)
            )
        );
        pipe.proveSegment(jobId, 1, wrong);
        bytes memory otherSegment = verifiers[0].proofFor(outBoundary[0], outBoundary[1]);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.ProofRejected.selector, jobId, 1, address(verifiers[1])));
        pipe.proveSegment(jobId, 1, otherSegment);

        vm.prank(node[1]);
        pipe.proveSegment(jobId, 1, verifiers[1].proofFor(outBoundary[0], outBoundary[1]));
        assertEq(uint256(pipe.getSegment(jobId, 1).status), uint256(IPipelineJobs.SegmentStatus.Proven));
        assertEq(pipe.withdrawable(node[1]), CHALLENGE_BOND);
        vm.prank(challenger);
        vm.expectRevert(
            abi.encodeWithSelector(
                IPipelineJobs.WrongSegmentStatus.selector, jobId, 1, IPipelineJobs.SegmentStatus.Proven
            )
        );
        pipe.challengeSegment{value: CHALLENGE_BOND}(jobId, 1);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        pipe.finalize(jobId);
        assertEq(pipe.withdrawable(node[1]), CHALLENGE_BOND + FEE1 + SEGMENT_BOND);
        _assertSolvent();
        _withdrawAll();
    }

    function test_MissingProofSlashesSegmentAndRefundsDownstream() public {
        uint256 jobId = _runAll();
        vm.prank(challenger);
        pipe.challengeSegment{value: CHALLENGE_BOND}(jobId, 1);
        uint256 due = block.timestamp + PROOF_WINDOW;
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.ProofDeadlineNotPassed.selector, jobId, 1, due));
        pipe.slashUnproven(jobId, 1);
        vm.warp(due + 1);
        bytes memory late = verifiers[1].proofFor(outBoundary[0], outBoundary[1]);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.ProofDeadlinePassed.selector, jobId, 1, due));
        pipe.proveSegment(jobId, 1, late);
        // The window has closed, but the open challenge blocks finalize until someone slashes.
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.ChallengesOpen.selector, jobId, 1));
        pipe.finalize(jobId);

        vm.expectEmit(address(pipe));
        emit IPipelineJobs.SegmentSlashed(jobId, 1, node[1], SEGMENT_BOND);
        vm.prank(keeper);
        pipe.slashUnproven(jobId, 1);
        assertEq(pipe.withdrawable(challenger), CHALLENGE_BOND + SEGMENT_BOND / 2);
        assertEq(pipe.withdrawable(payer), SEGMENT_BOND / 2);
        assertEq(pipe.getJob(jobId).faultyFrom, 1);
        _assertSolvent();

        vm.expectEmit(address(pipe));
        emit IPipelineJobs.PipelineFinalized(jobId, false, FEE0, FEE1 + FEE2);
        pipe.finalize(jobId);
        assertEq(pipe.withdrawable(node[0]), FEE0 + SEGMENT_BOND, "upstream paid");
        assertEq(pipe.withdrawable(node[1]), 0, "faulty node: nothing");
        assertEq(pipe.withdrawable(node[2]), SEGMENT_BOND, "downstream: bond back, fee refunded");
        assertEq(pipe.withdrawable(payer), SEGMENT_BOND / 2 + FEE1 + FEE2);
        _assertSolvent();
        _withdrawAll();
    }

    function test_ChallengeWindowAndStatusChecks() public {
        uint256 jobId = _submit();
        _claim(jobId, 0);
        vm.prank(challenger);
        vm.expectRevert(
            abi.encodeWithSelector(
                IPipelineJobs.WrongSegmentStatus.selector, jobId, 0, IPipelineJobs.SegmentStatus.Claimed
            )
        );
        pipe.challengeSegment{value: CHALLENGE_BOND}(jobId, 0);
        _commit(jobId, 0);
        // While the job runs, a committed segment can be challenged.
        vm.prank(challenger);
        pipe.challengeSegment{value: CHALLENGE_BOND}(jobId, 0);
        pipe.proveSegment(jobId, 0, verifiers[0].proofFor(IN_BOUNDARY, outBoundary[0]));
        _claim(jobId, 1);
        _commit(jobId, 1);
        _claim(jobId, 2);
        _commit(jobId, 2);
        uint256 end = block.timestamp + CHALLENGE_WINDOW;
        vm.warp(end);
        vm.prank(challenger);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.ChallengeWindowClosed.selector, jobId, end));
        pipe.challengeSegment{value: CHALLENGE_BOND}(jobId, 2);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.UnknownJob.selector, 99));
        pipe.finalize(99);
        pipe.finalize(jobId);
        _assertSolvent();
        _withdrawAll();
    }

    function test_FalseReturningVerifierIsRejected() public {
        FalseVerifier f = new FalseVerifier();
        IModelRegistry.Segment[] memory segs = new IModelRegistry.Segment[](1);
        segs[0] = IModelRegistry.Segment(keccak256("f"), bytes32(uint256(1)), address(f));
        bytes32 m = models.registerModel(keccak256("false"), 16, "blob://f", segs);
        vm.prank(node[0]);
        nodes.setModelPrice(m, 1);
        uint96[] memory fees = new uint96[](1);
        fees[0] = FEE0;
        vm.prank(payer);
        uint256 jobId = pipe.submitJob{value: FEE0}(IPipelineJobs.PipelineRequest(m, keccak256(INPUT), 1, fees), "");
        vm.prank(node[0]);
        pipe.claimSegment{value: SEGMENT_BOND}(jobId, 0);
        vm.prank(node[0]);
        pipe.commitSegment(jobId, 0, IPipelineJobs.SegmentCommit(keccak256(INPUT), 1, keccak256("r"), 2));
        vm.prank(challenger);
        pipe.challengeSegment{value: CHALLENGE_BOND}(jobId, 0);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.ProofRejected.selector, jobId, 0, address(f)));
        pipe.proveSegment(jobId, 0, "anything");
        _assertSolvent();
    }

    function test_ConstructorChecks() public {
        vm.expectRevert(IPipelineJobs.ZeroAddress.selector);
        new PipelineJobs(IModelRegistry(address(0)), nodes, 1, 1, 1, 1, 1);
        vm.expectRevert(IPipelineJobs.ZeroParameter.selector);
        new PipelineJobs(models, nodes, 0, 1, 1, 1, 1);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.AmountTooLarge.selector, uint256(type(uint96).max) + 1));
        new PipelineJobs(models, nodes, uint256(type(uint96).max) + 1, 1, 1, 1, 1);
        vm.expectRevert(abi.encodeWithSelector(IPipelineJobs.DurationTooLong.selector, 366 days, 365 days));
        new PipelineJobs(models, nodes, 1, 1, 1, 366 days, 1);
    }

    // ---------------------------------------------------------------- fuzz: value conserved

    /// @notice Any fees, any number of committed segments before a stall (3 = completed), and
    ///         any challenged segment answered or not: once finalized and withdrawn, every wei
    ///         that came in went out, the payer got back exactly the fees of unpaid segments
    ///         plus its slash shares, and the contract is empty.
    function testFuzz_ValueIsConservedWhateverHappens(
        uint96 f0,
        uint96 f1,
        uint96 f2,
        uint256 committed,
        uint256 challenged,
        bool answered
    ) public {
        uint96[] memory fees = new uint96[](3);
        fees[0] = uint96(bound(f0, 1, 1 ether));
        fees[1] = uint96(bound(f1, 1, 1 ether));
        fees[2] = uint96(bound(f2, 1, 1 ether));
        committed = bound(committed, 0, 3);
        uint256 total = uint256(fees[0]) + fees[1] + fees[2];
        vm.prank(payer);
        uint256 jobId = pipe.submitJob{value: total}(
            IPipelineJobs.PipelineRequest(modelId, keccak256(INPUT), _bh(IN_BOUNDARY), fees), ""
        );
        for (uint256 i; i < 3; ++i) {
            _claim(jobId, i);
        }
        for (uint256 i; i < committed; ++i) {
            _commit(jobId, i);
        }
        bool slashed;
        if (committed > 0) {
            challenged = bound(challenged, 0, committed - 1);
            vm.prank(challenger);
            pipe.challengeSegment{value: CHALLENGE_BOND}(jobId, challenged);
            if (answered) {
                uint256 inB = challenged == 0 ? IN_BOUNDARY : outBoundary[challenged - 1];
                pipe.proveSegment(jobId, challenged, verifiers[challenged].proofFor(inB, outBoundary[challenged]));
            } else {
                vm.warp(block.timestamp + PROOF_WINDOW + 1);
                pipe.slashUnproven(jobId, challenged);
                slashed = true;
            }
        }
        _assertSolvent();
        if (committed < 3) {
            vm.warp(block.timestamp + SEGMENT_WINDOW + 1);
            pipe.expire(jobId);
        }
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        pipe.finalize(jobId);
        _assertSolvent();

        uint256 paidUpTo = slashed ? challenged : committed;
        uint256 refund;
        for (uint256 i = paidUpTo; i < 3; ++i) {
            refund += fees[i];
        }
        if (committed < 3) refund += SEGMENT_BOND; // the stalled claimer's bond
        if (slashed) refund += SEGMENT_BOND - SEGMENT_BOND / 2;
        assertEq(pipe.withdrawable(payer), refund, "payer refund");
        for (uint256 i; i < 3; ++i) {
            uint256 expected = i < paidUpTo ? fees[i] : 0;
            bool lostBond = (slashed && i == challenged) || (committed < 3 && i == committed);
            if (!lostBond) expected += SEGMENT_BOND;
            if (committed > 0 && answered && i == challenged) expected += CHALLENGE_BOND;
            assertEq(pipe.withdrawable(node[i]), expected, "node credit");
        }
        _withdrawAll();
    }
}
