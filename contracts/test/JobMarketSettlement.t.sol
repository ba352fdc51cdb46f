// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {MarketFixture} from "./utils/MarketFixture.sol";
import {IJobMarket} from "../src/interfaces/IJobMarket.sol";
import {INodeRegistry} from "../src/interfaces/INodeRegistry.sol";

/// @notice Refuses ETH, to make `withdraw` fail.
contract RejectingReceiver {
    receive() external payable {
        revert("no");
    }
}

/// @title JobMarketSettlementTest
/// @notice Unit tests of JobMarket's node functions (claim, commit) and of settlement
///         (finalize, expire, withdraw), with the money checked to the wei.
contract JobMarketSettlementTest is MarketFixture {
    event JobClaimed(uint256 indexed jobId, address indexed node, uint256 price, uint256 collateral);
    event ResultCommitted(
        uint256 indexed jobId,
        address indexed node,
        bytes32 resultHash,
        bytes output,
        string outputURI,
        uint256 windowEnd
    );
    event JobFinalized(uint256 indexed jobId, address indexed node, uint256 nodePayout, uint256 fee, uint256 refund);
    event JobExpired(
        uint256 indexed jobId, uint256 refund, uint256 slashed, uint256 compensation, address indexed caller
    );
    event Withdrawal(address indexed account, uint256 amount);

    /// @dev collateralFor(MAX_FEE) with the default parameters.
    uint256 internal constant COLLATERAL = uint256(MAX_FEE) * COLLATERAL_BPS / 10_000;

    function _ids(uint256 a, uint256 b) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](2);
        ids[0] = a;
        ids[1] = b;
    }

    // ---------------------------------------------------------------- claimJob

    function test_claimJob_locksCollateralAndEmits() public {
        uint256 jobId = _submit();
        vm.expectEmit(address(market));
        emit JobClaimed(jobId, node, PRICE, COLLATERAL);
        _claim(jobId);

        IJobMarket.Job memory job = market.getJob(jobId);
        assertEq(uint8(job.status), uint8(IJobMarket.JobStatus.Claimed));
        assertEq(job.node, node);
        assertEq(job.price, PRICE);
        assertEq(job.collateral, COLLATERAL);
        assertEq(nodes.getNode(node).locked, COLLATERAL);
    }

    function test_claimJob_succeedsAtDeadline() public {
        uint256 jobId = _submit();
        vm.warp(market.getJob(jobId).deadline);
        _claim(jobId);
        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Claimed));
    }

    function test_claimJob_revertsOnJobNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotFound.selector, 1));
        _claim(1);
    }

    function test_claimJob_revertsWhenAlreadyClaimed() public {
        uint256 jobId = _submit();
        _claim(jobId);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.InvalidJobStatus.selector, jobId, IJobMarket.JobStatus.Claimed)
        );
        _claim(jobId);
    }

    function test_claimJob_revertsOnDeadlinePassed() public {
        uint256 jobId = _submit();
        uint256 deadline = market.getJob(jobId).deadline;
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.DeadlinePassed.selector, jobId, deadline));
        _claim(jobId);
    }

    function test_claimJob_revertsOnModelNotServed() public {
        uint256 jobId = _submit();
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.ModelNotServed.selector, keeper, modelId));
        vm.prank(keeper);
        market.claimJob(jobId);
    }

    function test_claimJob_revertsOnPriceAboveMaxFee() public {
        uint256 jobId = _submit(uint96(PRICE - 1));
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.PriceAboveMaxFee.selector, jobId, PRICE, PRICE - 1));
        _claim(jobId);
    }

    function test_claimJob_revertsOnInsufficientFreeStake() public {
        address smallNode = makeAddr("smallNode");
        _stakeNode(smallNode, MIN_STAKE, PRICE);
        uint96 bigFee = 1 ether; // collateral 2 ether > 1 ether of stake
        uint256 jobId = _submit(bigFee);
        vm.expectRevert(
            abi.encodeWithSelector(INodeRegistry.InsufficientFreeStake.selector, smallNode, 2 ether, MIN_STAKE)
        );
        vm.prank(smallNode);
        market.claimJob(jobId);
    }

    // ---------------------------------------------------------------- claimJobs

    function test_claimJobs_claimsAllAndLocksTheSum() public {
        uint256 a = _submit();
        uint256 b = _submit(MAX_FEE * 2);
        vm.prank(node);
        market.claimJobs(_ids(a, b));
        assertEq(uint8(market.getJob(b).status), uint8(IJobMarket.JobStatus.Claimed));
        assertEq(nodes.getNode(node).locked, COLLATERAL * 3);
    }

    function test_claimJobs_revertsWhenOneIsNotOpen() public {
        uint256 a = _submit();
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotFound.selector, 9));
        vm.prank(node);
        market.claimJobs(_ids(a, 9));
    }

    // ---------------------------------------------------------------- commitResult

    function test_commitResult_storesAndEmits() public {
        uint256 jobId = _submit();
        _claim(jobId);
        vm.expectEmit(address(market));
        emit ResultCommitted(jobId, node, keccak256(OUTPUT), OUTPUT, "", block.timestamp + CHALLENGE_WINDOW);
        _commit(jobId);

        IJobMarket.Job memory job = market.getJob(jobId);
        assertEq(uint8(job.status), uint8(IJobMarket.JobStatus.Committed));
        assertEq(job.resultHash, keccak256(OUTPUT));
        assertEq(job.windowEnd, block.timestamp + CHALLENGE_WINDOW);
    }

    function test_commitResult_acceptsOutputURI() public {
        uint256 jobId = _submit();
        _claim(jobId);
        vm.prank(node);
        market.commitResult(jobId, bytes32(uint256(5)), "", "blob://out");
        assertEq(market.getJob(jobId).resultHash, bytes32(uint256(5)));
    }

    function test_commitResult_succeedsAtDeadline() public {
        uint256 jobId = _submit();
        _claim(jobId);
        vm.warp(market.getJob(jobId).deadline);
        _commit(jobId);
        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Committed));
    }

    function test_commitResult_revertsOnJobNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotFound.selector, 3));
        _commit(3);
    }

    function test_commitResult_revertsWhenOpen() public {
        uint256 jobId = _submit();
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.InvalidJobStatus.selector, jobId, IJobMarket.JobStatus.Open));
        _commit(jobId);
    }

    function test_commitResult_revertsOnNotClaimer() public {
        uint256 jobId = _submit();
        _claim(jobId);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.NotClaimer.selector, jobId, keeper));
        vm.prank(keeper);
        market.commitResult(jobId, keccak256(OUTPUT), OUTPUT, "");
    }

    function test_commitResult_revertsOnDeadlinePassed() public {
        uint256 jobId = _submit();
        _claim(jobId);
        uint256 deadline = market.getJob(jobId).deadline;
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.DeadlinePassed.selector, jobId, deadline));
        _commit(jobId);
    }

    function test_commitResult_revertsOnOutputHashMismatch() public {
        uint256 jobId = _submit();
        _claim(jobId);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.OutputHashMismatch.selector, bytes32(uint256(1)), keccak256(OUTPUT))
        );
        vm.prank(node);
        market.commitResult(jobId, bytes32(uint256(1)), OUTPUT, "");
    }

    function test_commitResult_revertsOnMissingOutput() public {
        uint256 jobId = _submit();
        _claim(jobId);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.MissingOutput.selector));
        vm.prank(node);
        market.commitResult(jobId, keccak256(OUTPUT), "", "");
    }

    // ---------------------------------------------------------------- commitResults

    function test_commitResults_commitsAll() public {
        uint256 a = _submit();
        uint256 b = _submit();
        vm.prank(node);
        market.claimJobs(_ids(a, b));
        bytes32[] memory hashes = new bytes32[](2);
        hashes[0] = keccak256(OUTPUT);
        hashes[1] = bytes32(uint256(7));
        bytes[] memory outputs = new bytes[](2);
        outputs[0] = OUTPUT;
        string[] memory uris = new string[](2);
        uris[1] = "blob://b";
        vm.prank(node);
        market.commitResults(_ids(a, b), hashes, outputs, uris);
        assertEq(uint8(market.getJob(a).status), uint8(IJobMarket.JobStatus.Committed));
        assertEq(market.getJob(b).resultHash, bytes32(uint256(7)));
    }

    function test_commitResults_revertsOnLengthMismatch() public {
        uint256[] memory ids = _ids(1, 2);
        vm.startPrank(node);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.LengthMismatch.selector, 2, 1));
        market.commitResults(ids, new bytes32[](1), new bytes[](2), new string[](2));
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.LengthMismatch.selector, 2, 3));
        market.commitResults(ids, new bytes32[](2), new bytes[](3), new string[](2));
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.LengthMismatch.selector, 2, 0));
        market.commitResults(ids, new bytes32[](2), new bytes[](2), new string[](0));
        vm.stopPrank();
    }

    // ---------------------------------------------------------------- finalize

    function test_finalize_paysNodeTreasuryAndPayer() public {
        uint256 jobId = _committedJob();
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        uint256 fee = PRICE * FEE_BPS / 10_000;
        vm.expectEmit(address(market));
        emit JobFinalized(jobId, node, PRICE - fee, fee, MAX_FEE - PRICE);
        vm.prank(keeper);
        market.finalize(jobId);

        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Settled));
        assertEq(market.withdrawable(node), PRICE - fee);
        assertEq(market.withdrawable(treasury), fee);
        assertEq(market.withdrawable(payer), MAX_FEE - PRICE);
        assertEq(market.totalEscrow(), 0);
        assertEq(nodes.getNode(node).locked, 0);
        _assertSolvent(_accounts());
    }

    function test_finalize_refundsVaultPayerIntoVault() public {
        uint256 jobId = _submitFromVault(MAX_FEE);
        _claim(jobId);
        _commit(jobId);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        market.finalize(jobId);

        assertEq(vault.getAccount(agent).balance, VAULT_DEPOSIT - PRICE);
        assertEq(market.withdrawable(agent), 0);
        assertEq(address(market).balance, PRICE);
        _assertSolvent(_accounts());
    }

    function test_finalize_revertsOnWindowNotOver() public {
        uint256 jobId = _committedJob();
        uint256 windowEnd = market.getJob(jobId).windowEnd;
        vm.warp(windowEnd - 1);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.WindowNotOver.selector, jobId, windowEnd));
        market.finalize(jobId);
    }

    function test_finalize_revertsWhenNotCommitted() public {
        uint256 jobId = _submit();
        _claim(jobId);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.InvalidJobStatus.selector, jobId, IJobMarket.JobStatus.Claimed)
        );
        market.finalize(jobId);
    }

    function test_finalize_revertsWhenSettled() public {
        uint256 jobId = _committedJob();
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        market.finalize(jobId);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.InvalidJobStatus.selector, jobId, IJobMarket.JobStatus.Settled)
        );
        market.finalize(jobId);
    }

    function test_finalize_revertsOnJobNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotFound.selector, 0));
        market.finalize(0);
    }

    // ---------------------------------------------------------------- finalizeMany

    function test_finalizeMany_skipsJobsNotFinalizable() public {
        uint256 a = _committedJob();
        uint256 b = _submit();
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        uint256[] memory ids = new uint256[](4);
        (ids[0], ids[1], ids[2], ids[3]) = (a, b, 99, a);
        assertEq(market.finalizeMany(ids), 1);
        assertEq(uint8(market.getJob(a).status), uint8(IJobMarket.JobStatus.Settled));
        assertEq(uint8(market.getJob(b).status), uint8(IJobMarket.JobStatus.Open));
        assertEq(market.totalEscrow(), MAX_FEE);
        _assertSolvent(_accounts());
    }

    // ---------------------------------------------------------------- expire

    function test_expire_refundsOpenJob() public {
        uint256 jobId = _submit();
        vm.warp(market.getJob(jobId).deadline + 1);
        vm.expectEmit(address(market));
        emit JobExpired(jobId, MAX_FEE, 0, 0, keeper);
        vm.prank(keeper);
        market.expire(jobId);

        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Expired));
        assertEq(market.withdrawable(payer), MAX_FEE);
        assertEq(market.withdrawable(keeper), 0);
        _assertSolvent(_accounts());
    }

    function test_expire_slashesClaimerAndSplits() public {
        uint256 jobId = _submit();
        _claim(jobId);
        vm.warp(market.getJob(jobId).deadline + 1);
        uint256 compensation = COLLATERAL * SLASH_PAYER_BPS / 10_000;
        vm.expectEmit(address(market));
        emit JobExpired(jobId, MAX_FEE, COLLATERAL, compensation, keeper);
        vm.prank(keeper);
        market.expire(jobId);

        assertEq(market.withdrawable(payer), MAX_FEE + compensation);
        assertEq(market.withdrawable(keeper), COLLATERAL - compensation);
        assertEq(nodes.getNode(node).stake, NODE_STAKE - COLLATERAL);
        assertEq(nodes.getNode(node).locked, 0);
        assertEq(address(nodes).balance, NODE_STAKE - COLLATERAL);
        assertEq(market.totalEscrow(), 0);
        _assertSolvent(_accounts());
    }

    function test_expire_refundsVaultPayerWithCompensation() public {
        uint256 jobId = _submitFromVault(MAX_FEE);
        _claim(jobId);
        vm.warp(market.getJob(jobId).deadline + 1);
        vm.prank(keeper);
        market.expire(jobId);

        uint256 compensation = COLLATERAL * SLASH_PAYER_BPS / 10_000;
        assertEq(vault.getAccount(agent).balance, VAULT_DEPOSIT + compensation);
        assertEq(address(vault).balance, VAULT_DEPOSIT + compensation);
        assertEq(market.withdrawable(keeper), COLLATERAL - compensation);
        _assertSolvent(_accounts());
    }

    function test_expire_revertsOnDeadlineNotPassed() public {
        uint256 jobId = _submit();
        uint256 deadline = market.getJob(jobId).deadline;
        vm.warp(deadline);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.DeadlineNotPassed.selector, jobId, deadline));
        market.expire(jobId);
    }

    function test_expire_revertsWhenCommitted() public {
        uint256 jobId = _committedJob();
        vm.warp(block.timestamp + 2 hours);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.InvalidJobStatus.selector, jobId, IJobMarket.JobStatus.Committed)
        );
        market.expire(jobId);
    }

    function test_expire_revertsOnJobNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotFound.selector, 4));
        market.expire(4);
    }

    // ---------------------------------------------------------------- expireMany

    function test_expireMany_skipsJobsNotExpirable() public {
        uint256 a = _submit();
        uint256 b = _submit();
        _claim(b);
        uint256 c = _committedJob();
        vm.warp(block.timestamp + 1 hours + 1);
        uint256 d = _submit(); // deadline still ahead
        uint256[] memory ids = new uint256[](5);
        (ids[0], ids[1], ids[2], ids[3], ids[4]) = (a, b, c, d, a);
        vm.prank(keeper);
        assertEq(market.expireMany(ids), 2);
        assertEq(uint8(market.getJob(b).status), uint8(IJobMarket.JobStatus.Expired));
        assertEq(uint8(market.getJob(d).status), uint8(IJobMarket.JobStatus.Open));
        assertEq(market.totalEscrow(), 2 * uint256(MAX_FEE));
        _assertSolvent(_accounts());
    }

    // ---------------------------------------------------------------- withdraw

    function test_withdraw_paysWholeBalance() public {
        uint256 jobId = _submit();
        vm.prank(payer);
        market.cancel(jobId);
        uint256 before = payer.balance;
        vm.expectEmit(address(market));
        emit Withdrawal(payer, MAX_FEE);
        vm.prank(payer);
        market.withdraw();
        assertEq(payer.balance, before + MAX_FEE);
        assertEq(market.withdrawable(payer), 0);
        assertEq(address(market).balance, 0);
    }

    function test_withdraw_revertsOnNothingToWithdraw() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.NothingToWithdraw.selector, keeper));
        vm.prank(keeper);
        market.withdraw();
    }

    function test_withdraw_revertsOnTransferFailed() public {
        address rejecter = address(new RejectingReceiver());
        vm.deal(rejecter, MAX_FEE);
        vm.prank(rejecter);
        uint256 jobId = market.submitJob{value: MAX_FEE}(_request(MAX_FEE));
        vm.prank(rejecter);
        market.cancel(jobId);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.TransferFailed.selector, rejecter, MAX_FEE));
        vm.prank(rejecter);
        market.withdraw();
    }
}
