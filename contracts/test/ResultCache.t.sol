// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {MarketFixture} from "./utils/MarketFixture.sol";
import {IJobMarket} from "../src/interfaces/IJobMarket.sol";
import {INodeRegistry} from "../src/interfaces/INodeRegistry.sol";

/// @title ResultCacheTest
/// @notice Answering an Open job from a Settled reference job of the same model and input, at
///         the node's cache price (NodeRegistry.setCachePrice / JobMarket.answerFromCache).
contract ResultCacheTest is MarketFixture {
    uint256 internal constant CACHE_PRICE = 0.001 ether;

    function setUp() public override {
        super.setUp();
        vm.prank(node);
        nodes.setCachePrice(modelId, CACHE_PRICE);
    }

    /// @notice A settled reference job for INPUT with result OUTPUT.
    function _settledReference() internal returns (uint256 refJobId) {
        refJobId = _committedJob();
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        market.finalize(refJobId);
    }

    function test_CacheHit_SettlesAtOnceAtCachePrice() public {
        uint256 refJobId = _settledReference();
        uint256 jobId = _submit();
        uint256 lockedBefore = nodes.getNode(node).locked;
        uint256 nodeBefore = market.withdrawable(node);
        uint256 payerBefore = market.withdrawable(payer);

        vm.expectEmit(address(market));
        emit IJobMarket.JobAnsweredFromCache(jobId, refJobId, node, CACHE_PRICE);
        vm.prank(node);
        market.answerFromCache(jobId, refJobId, OUTPUT, "");

        IJobMarket.Job memory job = market.getJob(jobId);
        assertEq(uint8(job.status), uint8(IJobMarket.JobStatus.Settled));
        assertEq(job.resultHash, keccak256(OUTPUT));
        assertEq(job.price, CACHE_PRICE);
        assertEq(job.node, node);
        uint256 fee = CACHE_PRICE * FEE_BPS / 10_000;
        assertEq(market.withdrawable(node) - nodeBefore, CACHE_PRICE - fee);
        assertEq(market.withdrawable(payer) - payerBefore, MAX_FEE - CACHE_PRICE);
        assertEq(nodes.getNode(node).locked, lockedBefore, "no collateral");
        _assertSolvent(_accounts());
    }

    function test_CacheHit_VaultFundedRefundsTheAccount() public {
        uint256 refJobId = _settledReference();
        uint256 jobId = _submitFromVault(MAX_FEE);
        uint256 before = vault.getAccount(agent).balance;
        vm.prank(node);
        market.answerFromCache(jobId, refJobId, OUTPUT, "");
        assertEq(vault.getAccount(agent).balance - before, MAX_FEE - CACHE_PRICE);
        _assertSolvent(_accounts());
    }

    function test_ReferenceMustBeSettled() public {
        uint256 refJobId = _committedJob(); // window not over: not settled
        uint256 jobId = _submit();
        vm.prank(node);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.InvalidJobStatus.selector, refJobId, IJobMarket.JobStatus.Committed)
        );
        market.answerFromCache(jobId, refJobId, OUTPUT, "");
        vm.prank(node);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotFound.selector, 999));
        market.answerFromCache(jobId, 999, OUTPUT, "");
    }

    function test_ReferenceMustMatchModelAndInput() public {
        uint256 refJobId = _settledReference();
        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        r.input = hex"01";
        r.inputHash = keccak256(hex"01");
        vm.prank(payer);
        uint256 jobId = market.submitJob{value: MAX_FEE}(r);
        vm.prank(node);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.CacheReferenceMismatch.selector, jobId, refJobId));
        market.answerFromCache(jobId, refJobId, OUTPUT, "");
    }

    function test_OutputMustBeTheReferenceResult() public {
        uint256 refJobId = _settledReference();
        uint256 jobId = _submit();
        vm.prank(node);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.OutputHashMismatch.selector, keccak256(OUTPUT), keccak256(hex"beef"))
        );
        market.answerFromCache(jobId, refJobId, hex"beef", "");
        vm.prank(node);
        vm.expectRevert(IJobMarket.MissingOutput.selector);
        market.answerFromCache(jobId, refJobId, "", "");
    }

    function test_OnlyOpenJobsBeforeDeadlineAndOnlyOfferingNodes() public {
        uint256 refJobId = _settledReference();
        uint256 jobId = _submit();
        address other = makeAddr("other");
        _stakeNode(other, 10 ether, PRICE); // serves the model but offers no cache price
        vm.prank(other);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.CacheNotOffered.selector, other, modelId));
        market.answerFromCache(jobId, refJobId, OUTPUT, "");

        _claim(jobId);
        vm.prank(node);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.InvalidJobStatus.selector, jobId, IJobMarket.JobStatus.Claimed)
        );
        market.answerFromCache(jobId, refJobId, OUTPUT, "");

        uint256 late = _submit();
        uint256 deadline = market.getJob(late).deadline;
        vm.warp(deadline + 1);
        vm.prank(node);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.DeadlinePassed.selector, late, deadline));
        market.answerFromCache(late, refJobId, OUTPUT, "");
    }

    function test_CachePriceAboveMaxFeeRejected() public {
        uint256 refJobId = _settledReference();
        uint256 jobId = _submit(uint96(CACHE_PRICE - 1));
        vm.prank(node);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.PriceAboveMaxFee.selector, jobId, CACHE_PRICE, CACHE_PRICE - 1)
        );
        market.answerFromCache(jobId, refJobId, OUTPUT, "");
    }

    function test_SetCachePriceRules() public {
        vm.prank(node);
        vm.expectRevert(
            abi.encodeWithSelector(INodeRegistry.CachePriceAboveModelPrice.selector, node, modelId, PRICE + 1, PRICE)
        );
        nodes.setCachePrice(modelId, PRICE + 1);
        bytes32 unserved = bytes32(uint256(42));
        vm.prank(node);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.ModelNotServed.selector, node, unserved));
        nodes.setCachePrice(unserved, 1);

        (bool offered, uint256 price) = nodes.cachePriceOf(node, modelId);
        assertTrue(offered);
        assertEq(price, CACHE_PRICE);
        // lowering the model price caps the cache price; removing the model ends the offer
        vm.prank(node);
        nodes.setModelPrice(modelId, CACHE_PRICE / 2);
        (, price) = nodes.cachePriceOf(node, modelId);
        assertEq(price, CACHE_PRICE / 2);
        vm.prank(node);
        nodes.removeModel(modelId);
        (offered,) = nodes.cachePriceOf(node, modelId);
        assertFalse(offered);
        vm.prank(node);
        nodes.setModelPrice(modelId, PRICE);
        (offered,) = nodes.cachePriceOf(node, modelId);
        assertFalse(offered, "re-serving does not revive an old cache price");
    }

    function test_ZkJobsAreNotAnsweredFromCache() public {
        // Mode is checked before anything else about the reference.
        uint256 refJobId = _settledReference();
        uint256 jobId = _submit();
        // Flip the stored mode of `jobId` to ZkFull (slot layout: mode is byte 21 of slot 0).
        bytes32 slot = keccak256(abi.encode(jobId, uint256(5))); // `_jobs` is slot 5 (forge inspect)
        bytes32 word = vm.load(address(market), slot);
        vm.store(address(market), slot, word | bytes32(uint256(2) << 168));
        assertEq(uint8(market.getJob(jobId).mode), uint8(IJobMarket.VerificationMode.ZkFull));
        vm.prank(node);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.UnsupportedVerificationMode.selector, IJobMarket.VerificationMode.ZkFull)
        );
        market.answerFromCache(jobId, refJobId, OUTPUT, "");
    }
}
