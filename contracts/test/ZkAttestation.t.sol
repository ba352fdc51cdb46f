// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ZkFixture} from "./utils/ZkFixture.sol";
import {IJobMarket} from "../src/interfaces/IJobMarket.sol";
import {IZkVerification} from "../src/interfaces/IZkVerification.sol";

/// @title ZkAttestationTest
/// @notice Off-chain verification (attested zk jobs) and disputes: an attester's Valid lets the
///         job finalize after the dispute window; Invalid, or a bonded dispute of Valid, makes
///         the proofs due on chain (they resolve it, or their absence slashes); output disputes
///         are ruled by the owner or dismissed after the arbitration period. Mock verifiers.
contract ZkAttestationTest is ZkFixture {
    IJobMarket.VerificationMode internal constant SPOT = IJobMarket.VerificationMode.ZkSpot;
    IZkVerification.DisputeKind internal constant ATTESTATION = IZkVerification.DisputeKind.Attestation;
    IZkVerification.DisputeKind internal constant OUTPUT_KIND = IZkVerification.DisputeKind.Output;

    function setUp() public override {
        super.setUp();
        vm.deal(keeper, 1 ether);
    }

    /// @notice An attested zk-spot job, committed, its challenge drawn to `segment`.
    function _attestedJob(uint256 segment) internal returns (uint256 jobId) {
        jobId = _committedZk(SPOT, true);
        _mineSeed(jobId, _seedFor(jobId, segment));
    }

    function _attest(uint256 jobId, bool valid) internal {
        vm.prank(attester);
        zk.attest(jobId, valid);
    }

    function _status(uint256 jobId) internal view returns (IJobMarket.JobStatus) {
        return market.getJob(jobId).status;
    }

    // ---------------------------------------------------------------- attestation

    function test_attest_validFinalizesAfterTheDisputeWindow() public {
        uint256 jobId = _attestedJob(1);
        vm.expectEmit(address(zk));
        emit IZkVerification.SegmentChallenged(jobId, 1, _seedFor(jobId, 1));
        vm.expectEmit(address(zk));
        emit IZkVerification.Attested(jobId, attester, IZkVerification.Attestation.Valid);
        _attest(jobId, true);
        IZkVerification.ZkJob memory z = zk.getZkJob(jobId);
        assertEq(z.attester, attester);
        assertEq(z.requiredMask, 2); // the verdict is about a fixed segment

        vm.warp(block.timestamp + DISPUTE_WINDOW - 1);
        assertFalse(zk.canFinalize(jobId));
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.NotVerified.selector, jobId));
        market.finalize(jobId);
        vm.warp(block.timestamp + 1);
        market.finalize(jobId);
        assertEq(uint8(_status(jobId)), uint8(IJobMarket.JobStatus.Settled));
        // and no slash after the proof deadline either
        _assertSolvent(_zkAccounts());
    }

    function test_attest_validSatisfiesTheDeadline() public {
        uint256 jobId = _attestedJob(0);
        _attest(jobId, true);
        vm.warp(zk.getZkJob(jobId).proofDeadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.AlreadyVerified.selector, jobId));
        zk.slashUnproven(jobId);
    }

    function test_attest_onlyAttestersOnAttestedJobsOnce() public {
        uint256 jobId = _attestedJob(0);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.NotAttester.selector, payer));
        vm.prank(payer);
        zk.attest(jobId, true);

        uint256 onChainJob = _committedZk(SPOT, false);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.NotAttestedJob.selector, onChainJob));
        _attest(onChainJob, true);

        _attest(jobId, true);
        vm.expectRevert(
            abi.encodeWithSelector(IZkVerification.AlreadyAttested.selector, jobId, IZkVerification.Attestation.Valid)
        );
        _attest(jobId, false);

        // the owner manages the set
        vm.prank(deployer);
        zk.setAttester(attester, false);
        assertFalse(zk.isAttester(attester));
        vm.expectRevert(); // Ownable: not the owner
        vm.prank(attester);
        zk.setAttester(attester, true);
    }

    function test_attest_notAfterTheProofDeadline() public {
        uint256 jobId = _attestedJob(0);
        uint256 deadline = zk.getZkJob(jobId).proofDeadline;
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.ProofDeadlinePassed.selector, jobId, deadline));
        _attest(jobId, true);
        // no verdict and no proof: the node is slashed
        zk.slashUnproven(jobId);
        assertEq(uint8(_status(jobId)), uint8(IJobMarket.JobStatus.Slashed));
    }

    function test_attest_invalidRequiresTheProofOnChain() public {
        uint256 jobId = _attestedJob(2);
        vm.warp(block.timestamp + 100);
        _attest(jobId, false);
        IZkVerification.ZkJob memory z = zk.getZkJob(jobId);
        assertTrue(z.onChainRequired);
        assertEq(z.proofDeadline, block.timestamp + PROOF_WINDOW); // extended
        assertFalse(zk.canFinalize(jobId));

        uint256[] memory h = _hashes();
        _submitProof(node, jobId, 2, _proof(2, h), h);
        market.finalize(jobId); // the window is long over
        assertEq(uint8(_status(jobId)), uint8(IJobMarket.JobStatus.Settled));
    }

    function test_attest_invalidAndNoProofSlashes() public {
        uint256 jobId = _attestedJob(2);
        _attest(jobId, false);
        vm.warp(zk.getZkJob(jobId).proofDeadline + 1);
        vm.prank(keeper);
        zk.slashUnproven(jobId);
        assertEq(uint8(_status(jobId)), uint8(IJobMarket.JobStatus.Slashed));
    }

    function test_attestedJob_nodeMayProveOnChainWithoutAVerdict() public {
        uint256 jobId = _attestedJob(1);
        uint256[] memory h = _hashes();
        _submitProof(node, jobId, 1, _proof(1, h), h);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        market.finalize(jobId);
    }

    // ---------------------------------------------------------------- attestation disputes

    function test_disputeAttestation_proofOnChainRejectsItAndPaysTheBondToTheNode() public {
        uint256 jobId = _attestedJob(0);
        _attest(jobId, true);
        vm.expectEmit(address(zk));
        emit IZkVerification.DisputeOpened(jobId, ATTESTATION, auditor, DISPUTE_BOND, block.timestamp + PROOF_WINDOW);
        vm.expectEmit(address(market));
        emit IJobMarket.JobDisputed(jobId);
        vm.prank(auditor);
        zk.disputeAttestation{value: DISPUTE_BOND}(jobId);
        assertEq(uint8(_status(jobId)), uint8(IJobMarket.JobStatus.Disputed));
        assertEq(address(zk).balance, DISPUTE_BOND);

        vm.warp(block.timestamp + DISPUTE_WINDOW + CHALLENGE_WINDOW);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.InvalidJobStatus.selector, jobId, IJobMarket.JobStatus.Disputed)
        );
        market.finalize(jobId);

        uint256[] memory h = _hashes();
        bytes memory proof = _proof(0, h);
        vm.expectEmit(address(zk));
        emit IZkVerification.DisputeResolved(jobId, ATTESTATION, IZkVerification.DisputeOutcome.Rejected, node);
        vm.expectEmit(address(market));
        emit IJobMarket.JobDisputeCleared(jobId);
        _submitProof(node, jobId, 0, proof, h);
        assertEq(uint8(_status(jobId)), uint8(IJobMarket.JobStatus.Committed));
        assertEq(zk.withdrawable(node), DISPUTE_BOND);
        market.finalize(jobId);

        uint256 before = node.balance;
        vm.prank(node);
        zk.withdraw();
        assertEq(node.balance, before + DISPUTE_BOND);
        assertEq(address(zk).balance, 0);
    }

    function test_disputeAttestation_noProofSlashesAndReturnsTheBond() public {
        uint256 jobId = _attestedJob(1);
        _attest(jobId, true);
        vm.prank(auditor);
        zk.disputeAttestation{value: DISPUTE_BOND}(jobId);
        uint256 collateral = market.getJob(jobId).collateral;
        uint256 deadline = zk.getZkJob(jobId).proofDeadline;

        vm.warp(deadline);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.ProofDeadlineNotPassed.selector, jobId, deadline));
        zk.slashUnproven(jobId);
        vm.warp(deadline + 1);
        vm.expectEmit(address(zk));
        emit IZkVerification.DisputeResolved(jobId, ATTESTATION, IZkVerification.DisputeOutcome.Upheld, auditor);
        vm.prank(auditor);
        zk.slashUnproven(jobId);

        assertEq(uint8(_status(jobId)), uint8(IJobMarket.JobStatus.Slashed));
        assertEq(zk.withdrawable(auditor), DISPUTE_BOND);
        uint256 compensation = collateral * SLASH_PAYER_BPS / 10_000;
        assertEq(market.withdrawable(auditor), collateral - compensation);
        assertEq(market.withdrawable(payer), MAX_FEE + compensation);
        _assertSolvent(_zkAccounts());
    }

    function test_disputeAttestation_rules() public {
        uint256 jobId = _attestedJob(0);
        // nothing to dispute before a Valid verdict
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.NoValidAttestation.selector, jobId));
        vm.prank(auditor);
        zk.disputeAttestation{value: DISPUTE_BOND}(jobId);

        _attest(jobId, true);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.WrongBond.selector, DISPUTE_BOND - 1, DISPUTE_BOND));
        vm.prank(auditor);
        zk.disputeAttestation{value: DISPUTE_BOND - 1}(jobId);

        uint256 windowEnd = block.timestamp + DISPUTE_WINDOW;
        vm.warp(windowEnd);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.DisputeWindowOver.selector, jobId, windowEnd));
        vm.prank(auditor);
        zk.disputeAttestation{value: DISPUTE_BOND}(jobId);
    }

    function test_disputeAttestation_onceAndNotAfterAnOnChainProof() public {
        uint256 jobId = _attestedJob(0);
        _attest(jobId, true);
        vm.prank(auditor);
        zk.disputeAttestation{value: DISPUTE_BOND}(jobId);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.NoValidAttestation.selector, jobId));
        vm.prank(keeper);
        zk.disputeAttestation{value: DISPUTE_BOND}(jobId);

        uint256 other = _attestedJob(0);
        uint256[] memory h = _hashes();
        _submitProof(node, other, 0, _proof(0, h), h);
        _attest(other, true);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.AlreadyVerified.selector, other));
        vm.prank(auditor);
        zk.disputeAttestation{value: DISPUTE_BOND}(other);
    }

    // ---------------------------------------------------------------- output disputes

    function test_disputeOutput_upheldSlashesTheNode() public {
        uint256 jobId = _committedZk(SPOT, false);
        vm.prank(auditor);
        zk.disputeOutput{value: DISPUTE_BOND}(jobId);
        assertEq(uint8(_status(jobId)), uint8(IJobMarket.JobStatus.Disputed));
        uint256 collateral = market.getJob(jobId).collateral;

        vm.expectRevert(); // Ownable: only the owner rules
        vm.prank(attester);
        zk.resolveOutputDispute(jobId, true);

        vm.expectEmit(address(zk));
        emit IZkVerification.DisputeResolved(jobId, OUTPUT_KIND, IZkVerification.DisputeOutcome.Upheld, auditor);
        vm.prank(deployer);
        zk.resolveOutputDispute(jobId, true);
        assertEq(uint8(_status(jobId)), uint8(IJobMarket.JobStatus.Slashed));
        assertEq(zk.withdrawable(auditor), DISPUTE_BOND);
        assertEq(market.withdrawable(auditor), collateral - collateral * SLASH_PAYER_BPS / 10_000);
        _assertSolvent(_zkAccounts());
    }

    function test_disputeOutput_rejectedPaysTheNodeAndTheJobContinues() public {
        uint256[] memory h = _hashes();
        uint256 jobId = _spotJobChallenging(1, h);
        vm.prank(auditor);
        zk.disputeOutput{value: DISPUTE_BOND}(jobId);
        // proofs can still be posted while disputed
        _submitProof(node, jobId, 1, _proof(1, h), h);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.InvalidJobStatus.selector, jobId, IJobMarket.JobStatus.Disputed)
        );
        market.finalize(jobId);

        vm.prank(deployer);
        zk.resolveOutputDispute(jobId, false);
        assertEq(zk.withdrawable(node), DISPUTE_BOND);
        assertEq(uint8(_status(jobId)), uint8(IJobMarket.JobStatus.Committed));
        market.finalize(jobId);
    }

    function test_disputeOutput_dismissedWhenTheOwnerDoesNotRule() public {
        uint256 jobId = _committedZk(SPOT, false);
        vm.prank(auditor);
        zk.disputeOutput{value: DISPUTE_BOND}(jobId);
        uint256 endsAt = block.timestamp + ARBITRATION_PERIOD;
        vm.warp(endsAt - 1);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.ArbitrationNotOver.selector, jobId, endsAt));
        zk.dismissOutputDispute(jobId);
        vm.warp(endsAt);
        vm.expectEmit(address(zk));
        emit IZkVerification.DisputeResolved(jobId, OUTPUT_KIND, IZkVerification.DisputeOutcome.Dismissed, auditor);
        vm.prank(keeper);
        zk.dismissOutputDispute(jobId);
        assertEq(zk.withdrawable(auditor), DISPUTE_BOND);
        assertEq(uint8(_status(jobId)), uint8(IJobMarket.JobStatus.Committed));
        // the proof deadline passed meanwhile without a proof: slashed
        zk.slashUnproven(jobId);
        assertEq(uint8(_status(jobId)), uint8(IJobMarket.JobStatus.Slashed));
    }

    function test_disputeOutput_onlyWithinTheChallengeWindowAndOnce() public {
        uint256 jobId = _committedZk(SPOT, false);
        vm.prank(auditor);
        zk.disputeOutput{value: DISPUTE_BOND}(jobId);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.DisputeAlreadyOpen.selector, jobId, OUTPUT_KIND));
        vm.prank(keeper);
        zk.disputeOutput{value: DISPUTE_BOND}(jobId);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.NoOpenDispute.selector, jobId + 1, OUTPUT_KIND));
        zk.dismissOutputDispute(jobId + 1);

        uint256 late = _committedZk(SPOT, false);
        uint256 windowEnd = market.getJob(late).windowEnd;
        vm.warp(windowEnd);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.DisputeWindowOver.selector, late, windowEnd));
        vm.prank(auditor);
        zk.disputeOutput{value: DISPUTE_BOND}(late);
    }

    function test_bothDisputes_jobStaysDisputedUntilBothClose() public {
        uint256 jobId = _attestedJob(2);
        _attest(jobId, true);
        vm.prank(auditor);
        zk.disputeOutput{value: DISPUTE_BOND}(jobId);
        vm.prank(keeper);
        zk.disputeAttestation{value: DISPUTE_BOND}(jobId);
        assertEq(address(zk).balance, 2 * DISPUTE_BOND);

        uint256[] memory h = _hashes();
        _submitProof(node, jobId, 2, _proof(2, h), h); // resolves the attestation dispute only
        assertEq(uint8(_status(jobId)), uint8(IJobMarket.JobStatus.Disputed));
        vm.prank(deployer);
        zk.resolveOutputDispute(jobId, false);
        assertEq(uint8(_status(jobId)), uint8(IJobMarket.JobStatus.Committed));
        assertEq(zk.withdrawable(node), 2 * DISPUTE_BOND);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        market.finalize(jobId);
    }

    function test_slashDuringOutputDispute_returnsItsBond() public {
        uint256 jobId = _committedZk(SPOT, false);
        vm.prank(auditor);
        zk.disputeOutput{value: DISPUTE_BOND}(jobId);
        vm.warp(zk.getZkJob(jobId).proofDeadline + 1);
        vm.prank(keeper);
        zk.slashUnproven(jobId);
        assertEq(zk.withdrawable(auditor), DISPUTE_BOND);
        assertEq(zk.getDispute(jobId, OUTPUT_KIND).disputer, address(0));
        _assertSolvent(_zkAccounts());
    }
}
