// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {MarketFixture} from "./utils/MarketFixture.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {IJobMarket} from "../src/interfaces/IJobMarket.sol";
import {IModelRegistry} from "../src/interfaces/IModelRegistry.sol";
import {INodeRegistry} from "../src/interfaces/INodeRegistry.sol";
import {IPaymentVault} from "../src/interfaces/IPaymentVault.sol";

/// @title JobMarketTest
/// @notice Unit tests of JobMarket's deployment, requester functions (submit, cancel), owner
///         functions and views. Node and settlement functions: JobMarketSettlement.t.sol.
contract JobMarketTest is MarketFixture {
    event JobSubmitted(
        uint256 indexed jobId,
        address indexed payer,
        bytes32 indexed modelId,
        bytes32 inputHash,
        bytes input,
        string inputURI,
        uint256 maxFee,
        uint256 deadline,
        IJobMarket.VerificationMode mode,
        address callback,
        uint32 callbackGasLimit,
        bool fromVault
    );
    event JobCancelled(uint256 indexed jobId, uint256 refund);
    event FeeSet(uint256 feeBps);
    event TreasurySet(address indexed treasury);

    // ---------------------------------------------------------------- constructor

    function test_constructor_setsParameters() public view {
        assertEq(market.owner(), deployer);
        assertEq(address(market.nodeRegistry()), address(nodes));
        assertEq(address(market.modelRegistry()), address(models));
        assertEq(address(market.paymentVault()), address(vault));
        assertEq(market.treasury(), treasury);
        assertEq(market.feeBps(), FEE_BPS);
        assertEq(market.challengeWindow(), CHALLENGE_WINDOW);
        assertEq(market.maxJobDuration(), MAX_JOB_DURATION);
        assertEq(market.collateralBps(), COLLATERAL_BPS);
        assertEq(market.minJobCollateral(), MIN_JOB_COLLATERAL);
        assertEq(market.slashPayerBps(), SLASH_PAYER_BPS);
        assertEq(market.maxCallbackGas(), MAX_CALLBACK_GAS);
        assertEq(market.jobCount(), 0);
        assertEq(market.totalEscrow(), 0);
    }

    function _newMarket(
        address treasury_,
        uint16 fee,
        uint256 window,
        uint256 duration,
        uint256 minColl,
        uint16 slashBps
    ) internal returns (JobMarket) {
        return new JobMarket(
            INodeRegistry(address(nodes)),
            IModelRegistry(address(models)),
            IPaymentVault(address(vault)),
            treasury_,
            fee,
            window,
            duration,
            COLLATERAL_BPS,
            minColl,
            slashBps,
            MAX_CALLBACK_GAS
        );
    }

    function test_constructor_revertsOnZeroAddress() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ZeroAddress.selector));
        _newMarket(address(0), FEE_BPS, 60, 3600, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ZeroAddress.selector));
        new JobMarket(INodeRegistry(address(0)), models, vault, treasury, FEE_BPS, 60, 3600, 0, 0, 0, MAX_CALLBACK_GAS);
    }

    function test_constructor_revertsOnFeeTooHigh() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.FeeTooHigh.selector, 1001, 1000));
        _newMarket(treasury, 1001, 60, 3600, 0, 0);
    }

    function test_constructor_revertsOnSlashPayerBpsTooHigh() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.BpsTooHigh.selector, 10_001, 10_000));
        _newMarket(treasury, FEE_BPS, 60, 3600, 0, 10_001);
    }

    function test_constructor_revertsOnDurationTooLong() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.DurationTooLong.selector, 365 days + 1, 365 days));
        _newMarket(treasury, FEE_BPS, 365 days + 1, 3600, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.DurationTooLong.selector, 365 days + 1, 365 days));
        _newMarket(treasury, FEE_BPS, 60, 365 days + 1, 0, 0);
    }

    function test_constructor_revertsOnMinCollateralAboveUint96() public {
        uint256 tooBig = uint256(type(uint96).max) + 1;
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 96, tooBig));
        _newMarket(treasury, FEE_BPS, 60, 3600, tooBig, 0);
    }

    // ---------------------------------------------------------------- receive

    function test_receive_revertsFromStranger() public {
        vm.deal(payer, 1 ether);
        vm.prank(payer);
        (bool ok, bytes memory data) = address(market).call{value: 1}("");
        assertFalse(ok);
        assertEq(data, abi.encodeWithSelector(IJobMarket.UnexpectedETH.selector, payer));
    }

    // ---------------------------------------------------------------- submitJob

    function test_submitJob_storesJobAndEmits() public {
        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        r.callback = address(0xC0FFEE);
        r.callbackGasLimit = 100_000;
        vm.expectEmit(address(market));
        emit JobSubmitted(
            1, payer, modelId, keccak256(INPUT), INPUT, "", MAX_FEE, r.deadline, r.mode, r.callback, 100_000, false
        );
        vm.prank(payer);
        uint256 jobId = market.submitJob{value: MAX_FEE}(r);

        assertEq(jobId, 1);
        assertEq(market.jobCount(), 1);
        assertEq(market.totalEscrow(), MAX_FEE);
        assertEq(address(market).balance, MAX_FEE);
        IJobMarket.Job memory job = market.getJob(1);
        assertEq(job.payer, payer);
        assertEq(uint8(job.status), uint8(IJobMarket.JobStatus.Open));
        assertEq(uint8(job.mode), uint8(IJobMarket.VerificationMode.None));
        assertFalse(job.fromVault);
        assertEq(job.deadline, r.deadline);
        assertEq(job.callbackGasLimit, 100_000);
        assertEq(job.node, address(0));
        assertEq(job.windowEnd, 0);
        assertEq(job.feeBps, FEE_BPS);
        assertEq(job.callback, address(0xC0FFEE));
        assertEq(job.maxFee, MAX_FEE);
        assertEq(job.price, 0);
        assertEq(job.collateral, 0);
        assertEq(job.modelId, modelId);
        assertEq(job.inputHash, keccak256(INPUT));
        assertEq(job.resultHash, bytes32(0));
    }

    function test_submitJob_fromVaultPullsEscrow() public {
        vm.expectEmit(address(market));
        emit JobSubmitted(
            1,
            agent,
            modelId,
            keccak256(INPUT),
            INPUT,
            "",
            MAX_FEE,
            block.timestamp + 1 hours,
            IJobMarket.VerificationMode.None,
            address(0),
            0,
            true
        );
        uint256 jobId = _submitFromVault(MAX_FEE);

        IJobMarket.Job memory job = market.getJob(jobId);
        assertEq(job.payer, agent);
        assertTrue(job.fromVault);
        assertEq(vault.getAccount(agent).balance, VAULT_DEPOSIT - MAX_FEE);
        assertEq(address(market).balance, MAX_FEE);
        assertEq(market.totalEscrow(), MAX_FEE);
    }

    function test_submitJob_acceptsInputURI() public {
        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        r.input = "";
        r.inputURI = "blob://input";
        vm.prank(payer);
        assertEq(market.submitJob{value: MAX_FEE}(r), 1);
    }

    function test_submitJob_snapshotsFeeBps() public {
        uint256 jobId = _submit();
        vm.prank(deployer);
        market.setFeeBps(0);
        assertEq(market.getJob(jobId).feeBps, FEE_BPS);
        assertEq(market.getJob(_submit()).feeBps, 0);
    }

    function test_submitJob_revertsOnModelNotRegistered() public {
        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        r.modelId = keccak256("unknown");
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ModelNotRegistered.selector, r.modelId));
        vm.prank(payer);
        market.submitJob{value: MAX_FEE}(r);
    }

    function test_submitJob_revertsOnZeroFee() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ZeroFee.selector));
        vm.prank(payer);
        market.submitJob(_request(0));
    }

    function test_submitJob_revertsOnDeadlineInPast() public {
        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        r.deadline = uint40(block.timestamp);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.DeadlineInPast.selector, block.timestamp, block.timestamp));
        vm.prank(payer);
        market.submitJob{value: MAX_FEE}(r);
    }

    function test_submitJob_revertsOnDeadlineTooFar() public {
        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        uint256 latest = block.timestamp + MAX_JOB_DURATION;
        r.deadline = uint40(latest + 1);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.DeadlineTooFar.selector, latest + 1, latest));
        vm.prank(payer);
        market.submitJob{value: MAX_FEE}(r);
    }

    function test_submitJob_acceptsLatestDeadline() public {
        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        r.deadline = uint40(block.timestamp + MAX_JOB_DURATION);
        vm.prank(payer);
        assertEq(market.submitJob{value: MAX_FEE}(r), 1);
    }

    function test_submitJob_revertsOnUnsupportedVerificationMode() public {
        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        r.mode = IJobMarket.VerificationMode.ZkSpot;
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.UnsupportedVerificationMode.selector, IJobMarket.VerificationMode.ZkSpot)
        );
        vm.prank(payer);
        market.submitJob{value: MAX_FEE}(r);
    }

    function test_submitJob_revertsOnCallbackGasTooHigh() public {
        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        r.callbackGasLimit = MAX_CALLBACK_GAS + 1;
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.CallbackGasTooHigh.selector, MAX_CALLBACK_GAS + 1, MAX_CALLBACK_GAS)
        );
        vm.prank(payer);
        market.submitJob{value: MAX_FEE}(r);
    }

    function test_submitJob_revertsOnInputHashMismatch() public {
        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        r.inputHash = bytes32(uint256(1));
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.InputHashMismatch.selector, bytes32(uint256(1)), keccak256(INPUT))
        );
        vm.prank(payer);
        market.submitJob{value: MAX_FEE}(r);
    }

    function test_submitJob_revertsOnMissingInput() public {
        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        r.input = "";
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.MissingInput.selector));
        vm.prank(payer);
        market.submitJob{value: MAX_FEE}(r);
    }

    function test_submitJob_revertsOnValueMismatch() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ValueMismatch.selector, MAX_FEE, MAX_FEE - 1));
        vm.prank(payer);
        market.submitJob{value: MAX_FEE - 1}(_request(MAX_FEE));
    }

    function test_submitJob_revertsOnValueWithVaultPayment() public {
        vm.deal(spender, 1 ether);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ValueMismatch.selector, 0, MAX_FEE));
        vm.prank(spender);
        market.submitJob{value: MAX_FEE}(_vaultRequest(MAX_FEE));
    }

    function test_submitJob_revertsOnUnauthorizedVaultSpender() public {
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.SpenderNotAuthorized.selector, agent, payer));
        vm.prank(payer);
        market.submitJob(_vaultRequest(MAX_FEE));
    }

    function test_submitJob_revertsOnVaultPolicy() public {
        address poorAgent = makeAddr("poorAgent");
        _openVault(poorAgent, 1 ether, MAX_FEE - 1);
        IJobMarket.JobRequest memory r = _vaultRequest(MAX_FEE);
        r.vaultAgent = poorAgent;
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.FeeAbovePolicy.selector, poorAgent, MAX_FEE, MAX_FEE - 1));
        vm.prank(poorAgent);
        market.submitJob(r);
    }

    // ---------------------------------------------------------------- submitJobs

    function test_submitJobs_mixesValueAndVault() public {
        IJobMarket.JobRequest[] memory rs = new IJobMarket.JobRequest[](3);
        rs[0] = _request(MAX_FEE);
        rs[1] = _vaultRequest(MAX_FEE + 1);
        rs[2] = _request(MAX_FEE + 2);
        vm.deal(spender, 1 ether);
        vm.prank(spender);
        uint256 first = market.submitJobs{value: 2 * MAX_FEE + 2}(rs);

        assertEq(first, 1);
        assertEq(market.jobCount(), 3);
        assertEq(market.getJob(1).payer, spender);
        assertEq(market.getJob(2).payer, agent);
        assertTrue(market.getJob(2).fromVault);
        assertEq(market.getJob(3).maxFee, MAX_FEE + 2);
        assertEq(market.totalEscrow(), 3 * uint256(MAX_FEE) + 3);
        assertEq(address(market).balance, 3 * uint256(MAX_FEE) + 3);
        assertEq(vault.getAccount(agent).balance, VAULT_DEPOSIT - MAX_FEE - 1);
        assertEq(_submit(), 4);
    }

    function test_submitJobs_emptyBatchDoesNothing() public {
        vm.prank(payer);
        assertEq(market.submitJobs(new IJobMarket.JobRequest[](0)), 1);
        assertEq(market.jobCount(), 0);
    }

    function test_submitJobs_revertsOnValueMismatch() public {
        IJobMarket.JobRequest[] memory rs = new IJobMarket.JobRequest[](2);
        rs[0] = _request(MAX_FEE);
        rs[1] = _request(MAX_FEE);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ValueMismatch.selector, 2 * uint256(MAX_FEE), MAX_FEE));
        vm.prank(payer);
        market.submitJobs{value: MAX_FEE}(rs);
    }

    function test_submitJobs_revertsWhenOneRequestIsInvalid() public {
        IJobMarket.JobRequest[] memory rs = new IJobMarket.JobRequest[](2);
        rs[0] = _request(MAX_FEE);
        rs[1] = _request(0);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ZeroFee.selector));
        vm.prank(payer);
        market.submitJobs{value: MAX_FEE}(rs);
    }

    // ---------------------------------------------------------------- cancel

    function test_cancel_refundsDirectPayer() public {
        uint256 jobId = _submit();
        vm.expectEmit(address(market));
        emit JobCancelled(jobId, MAX_FEE);
        vm.prank(payer);
        market.cancel(jobId);

        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Cancelled));
        assertEq(market.withdrawable(payer), MAX_FEE);
        assertEq(market.totalEscrow(), 0);
        _assertSolvent(_accounts());
    }

    function test_cancel_refundsVaultAccount() public {
        uint256 jobId = _submitFromVault(MAX_FEE);
        vm.prank(agent);
        market.cancel(jobId);

        assertEq(vault.getAccount(agent).balance, VAULT_DEPOSIT);
        assertEq(market.withdrawable(agent), 0);
        assertEq(address(market).balance, 0);
        assertEq(market.totalEscrow(), 0);
    }

    function test_cancel_revertsOnNotPayer() public {
        uint256 jobId = _submit();
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.NotPayer.selector, jobId, keeper));
        vm.prank(keeper);
        market.cancel(jobId);
    }

    function test_cancel_revertsWhenClaimed() public {
        uint256 jobId = _submit();
        _claim(jobId);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.InvalidJobStatus.selector, jobId, IJobMarket.JobStatus.Claimed)
        );
        vm.prank(payer);
        market.cancel(jobId);
    }

    function test_cancel_revertsOnJobNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobNotFound.selector, 7));
        vm.prank(payer);
        market.cancel(7);
    }

    // ---------------------------------------------------------------- owner

    function test_setFeeBps_setsAndEmits() public {
        vm.expectEmit(address(market));
        emit FeeSet(1000);
        vm.prank(deployer);
        market.setFeeBps(1000);
        assertEq(market.feeBps(), 1000);
    }

    function test_setFeeBps_revertsOnFeeTooHigh() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.FeeTooHigh.selector, 1001, 1000));
        vm.prank(deployer);
        market.setFeeBps(1001);
    }

    function test_setFeeBps_revertsOnNotOwner() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, payer));
        vm.prank(payer);
        market.setFeeBps(1);
    }

    function test_setTreasury_setsAndEmits() public {
        vm.expectEmit(address(market));
        emit TreasurySet(keeper);
        vm.prank(deployer);
        market.setTreasury(keeper);
        assertEq(market.treasury(), keeper);
    }

    function test_setTreasury_revertsOnZeroAddress() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.ZeroAddress.selector));
        vm.prank(deployer);
        market.setTreasury(address(0));
    }

    function test_setTreasury_revertsOnNotOwner() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, payer));
        vm.prank(payer);
        market.setTreasury(payer);
    }

    function test_transferOwnership_takesTwoSteps() public {
        vm.prank(deployer);
        market.transferOwnership(keeper);
        assertEq(market.owner(), deployer);
        vm.prank(keeper);
        market.acceptOwnership();
        assertEq(market.owner(), keeper);
    }

    // ---------------------------------------------------------------- views

    function test_collateralFor_appliesFloorAndBps() public view {
        assertEq(market.collateralFor(1), MIN_JOB_COLLATERAL);
        assertEq(market.collateralFor(1 ether), 2 ether);
        assertEq(market.collateralFor(MIN_JOB_COLLATERAL / 2), MIN_JOB_COLLATERAL);
        assertEq(market.collateralFor(MIN_JOB_COLLATERAL / 2 + 1), MIN_JOB_COLLATERAL + 2);
    }

    function test_longestWindow_sumsDurationAndWindow() public view {
        assertEq(market.longestWindow(), MAX_JOB_DURATION + CHALLENGE_WINDOW);
    }

    function test_getJob_unknownIsEmpty() public view {
        assertEq(uint8(market.getJob(0).status), uint8(IJobMarket.JobStatus.None));
        assertEq(market.getJob(5).payer, address(0));
    }
}
