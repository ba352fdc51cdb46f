// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ZkFixture} from "./utils/ZkFixture.sol";
import {IJobMarket} from "../src/interfaces/IJobMarket.sol";
import {IZkVerification} from "../src/interfaces/IZkVerification.sol";

/// @title ZkFullTest
/// @notice zk-full jobs: every segment proven against the committed boundary hashes before the
///         job can finalize; a missing one slashes at the deadline. Mock verifiers (see
///         MockHalo2Verifier); real ones are tested in Python.
contract ZkFullTest is ZkFixture {
    IJobMarket.VerificationMode internal constant FULL = IJobMarket.VerificationMode.ZkFull;

    function test_commit_requiresEverySegmentAtOnce() public {
        uint256 jobId = _committedZk(FULL, false);
        IZkVerification.ZkJob memory z = zk.getZkJob(jobId);
        assertTrue(z.full);
        assertEq(z.requiredMask, 7);
        assertEq(zk.requiredSegments(jobId), 7);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.NotSpotCheck.selector, jobId));
        zk.challenge(jobId);
    }

    function test_finalize_onlyWhenAllSegmentsAreProven() public {
        uint256 jobId = _committedZk(FULL, false);
        uint256[] memory h = _hashes();
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        // in any order; no need to wait for a seed block
        uint256[3] memory order = [uint256(2), 0, 1];
        for (uint256 i; i < order.length; ++i) {
            vm.expectRevert(abi.encodeWithSelector(IJobMarket.NotVerified.selector, jobId));
            market.finalize(jobId);
            _submitProof(node, jobId, order[i], _proof(order[i], h), h);
        }
        assertEq(zk.getZkJob(jobId).provenMask, 7);
        market.finalize(jobId);
        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Settled));
        _assertSolvent(_zkAccounts());
    }

    function test_eachSegmentIsCheckedAgainstItsOwnHashes() public {
        uint256 jobId = _committedZk(FULL, false);
        uint256[] memory h = _hashes();
        bytes memory segment0Proof = _proof(0, h);
        bytes memory shifted = verifiers[1].proofFor(0, 1); // segment 0's boundaries
        // segment 0's proof does not pass as segment 1's, nor segment 1's with shifted hashes
        bytes memory mismatch =
            abi.encodeWithSelector(IZkVerification.ProofBoundaryMismatch.selector, jobId, 1, h[0], h[1]);
        vm.expectRevert(mismatch);
        _submitProof(node, jobId, 1, segment0Proof, h);
        vm.expectRevert(mismatch);
        _submitProof(node, jobId, 1, shifted, h);
        // nor segment 0's circuit on segment 1's boundaries
        bytes memory wrongCircuit = verifiers[0].proofFor(1, 2);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.ProofRejected.selector, jobId, 1, address(verifiers[1])));
        _submitProof(node, jobId, 1, wrongCircuit, h);
        vm.expectRevert(abi.encodeWithSelector(IZkVerification.SegmentNotRequired.selector, jobId, 3, uint64(7)));
        _submitProof(node, jobId, 3, segment0Proof, h);
    }

    function test_slashUnproven_whenOneSegmentIsMissing() public {
        uint256 jobId = _committedZk(FULL, false);
        uint256[] memory h = _hashes();
        _submitProof(node, jobId, 0, _proof(0, h), h);
        _submitProof(node, jobId, 1, _proof(1, h), h);
        vm.warp(zk.getZkJob(jobId).proofDeadline + 1);
        vm.expectEmit(address(zk));
        emit IZkVerification.ProofDeadlineMissed(jobId, 7, 3);
        vm.prank(keeper);
        zk.slashUnproven(jobId);
        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Slashed));
        assertEq(market.totalEscrow(), 0);
        _assertSolvent(_zkAccounts());
    }
}
