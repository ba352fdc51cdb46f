// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {MarketFixture} from "./utils/MarketFixture.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {IJobConsumer} from "../src/interfaces/IJobConsumer.sol";
import {IJobMarket} from "../src/interfaces/IJobMarket.sol";

/// @notice Records what it receives and how much gas it was given.
contract RecordingConsumer is IJobConsumer {
    uint256 public calls;
    uint256 public gasAtEntry;
    bytes32 public lastResultHash;
    bytes public lastOutput;

    function onJobResult(uint256, bytes32 resultHash, bytes calldata output) external {
        gasAtEntry = gasleft();
        ++calls;
        lastResultHash = resultHash;
        lastOutput = output;
    }
}

/// @notice Always reverts.
contract RevertingConsumer is IJobConsumer {
    function onJobResult(uint256, bytes32, bytes calldata) external pure {
        revert("consumer says no");
    }
}

/// @notice Burns every unit of gas it is given.
contract GasBurningConsumer is IJobConsumer {
    function onJobResult(uint256, bytes32, bytes calldata) external pure {
        while (true) {}
    }
}

/// @notice Returns `size` bytes of return data, to punish a caller that copies it.
contract ReturnBombConsumer is IJobConsumer {
    uint256 public immutable size;

    constructor(uint256 size_) {
        size = size_;
    }

    function onJobResult(uint256, bytes32, bytes calldata) external view {
        uint256 n = size;
        assembly {
            return(0, n)
        }
    }
}

/// @notice Re-enters the market from its callback: finalize, withdraw, a second commit.
contract ReentrantConsumer is IJobConsumer {
    JobMarket public immutable market;
    bool public finalizeOk;
    bool public withdrawOk;
    bool public commitOk;

    constructor(JobMarket market_) {
        market = market_;
    }

    function onJobResult(uint256 jobId, bytes32 resultHash, bytes calldata output) external {
        (finalizeOk,) = address(market).call(abi.encodeCall(IJobMarket.finalize, (jobId)));
        (withdrawOk,) = address(market).call(abi.encodeCall(IJobMarket.withdraw, ()));
        (commitOk,) = address(market).call(abi.encodeCall(IJobMarket.commitResult, (jobId, resultHash, output, "")));
    }

    receive() external payable {}
}

/// @title CallbackTest
/// @notice The consumer callback never blocks settlement and never moves extra wei: reverting,
///         gas-burning, return-data-bombing and re-entrant consumers, and the exact gas limit.
contract CallbackTest is MarketFixture {
    event CallbackFailed(uint256 indexed jobId, address indexed callback);

    uint32 internal constant LIMIT = 200_000;

    /// @dev Submits a MAX_FEE job from `payer` calling `consumer` back with `limit` gas, and claims it.
    function _claimedJobWithCallback(address consumer, uint32 limit) internal returns (uint256 jobId) {
        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        r.callback = consumer;
        r.callbackGasLimit = limit;
        vm.prank(payer);
        jobId = market.submitJob{value: MAX_FEE}(r);
        _claim(jobId);
    }

    /// @dev Commits, then finalizes after the window, and checks the money to the wei.
    function _commitAndSettle(uint256 jobId) internal {
        _commit(jobId);
        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Committed));
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.prank(keeper);
        market.finalize(jobId);
        _assertSettledExactly();
    }

    function _assertSettledExactly() internal view {
        uint256 fee = PRICE * FEE_BPS / 10_000;
        assertEq(market.withdrawable(node), PRICE - fee);
        assertEq(market.withdrawable(treasury), fee);
        assertEq(market.withdrawable(payer), MAX_FEE - PRICE);
        assertEq(address(market).balance, MAX_FEE);
        assertEq(market.totalEscrow(), 0);
        _assertSolvent(_accounts());
    }

    function test_callback_deliversResultWithExactGasLimit() public {
        RecordingConsumer consumer = new RecordingConsumer();
        uint256 jobId = _claimedJobWithCallback(address(consumer), LIMIT);
        _commit(jobId);

        assertEq(consumer.calls(), 1);
        assertEq(consumer.lastResultHash(), keccak256(OUTPUT));
        assertEq(consumer.lastOutput(), OUTPUT);
        assertLe(consumer.gasAtEntry(), LIMIT);
        assertGe(consumer.gasAtEntry(), LIMIT - 1000); // the limit minus the consumer's dispatch
    }

    function test_callback_passesEmptyOutputForURIResults() public {
        RecordingConsumer consumer = new RecordingConsumer();
        uint256 jobId = _claimedJobWithCallback(address(consumer), LIMIT);
        vm.prank(node);
        market.commitResult(jobId, bytes32(uint256(9)), "", "blob://out");
        assertEq(consumer.lastResultHash(), bytes32(uint256(9)));
        assertEq(consumer.lastOutput().length, 0);
    }

    function test_callback_skippedWhenGasLimitIsZero() public {
        RecordingConsumer consumer = new RecordingConsumer();
        uint256 jobId = _claimedJobWithCallback(address(consumer), 0);
        _commit(jobId);
        assertEq(consumer.calls(), 0);
    }

    function test_callback_revertingConsumerDoesNotBlockSettlement() public {
        address consumer = address(new RevertingConsumer());
        uint256 jobId = _claimedJobWithCallback(consumer, LIMIT);
        vm.expectEmit(address(market));
        emit CallbackFailed(jobId, consumer);
        _commitAndSettle(jobId);
    }

    function test_callback_gasBurningConsumerUsesOnlyItsLimit() public {
        address consumer = address(new GasBurningConsumer());
        uint256 jobId = _claimedJobWithCallback(consumer, LIMIT);
        vm.expectEmit(address(market));
        emit CallbackFailed(jobId, consumer);
        uint256 gasBefore = gasleft();
        _commit(jobId);
        uint256 used = gasBefore - gasleft();
        assertGe(used, LIMIT);
        assertLe(used, uint256(LIMIT) + 150_000); // the commit itself, not the caller's whole gas
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        market.finalize(jobId);
        _assertSettledExactly();
    }

    function test_callback_returnDataBombIsNotCopied() public {
        ReturnBombConsumer silent = new ReturnBombConsumer(0);
        ReturnBombConsumer bomb = new ReturnBombConsumer(150_000);
        uint256 silentJob = _claimedJobWithCallback(address(silent), LIMIT);
        uint256 bombJob = _claimedJobWithCallback(address(bomb), LIMIT);

        uint256 g = gasleft();
        _commit(silentJob);
        uint256 silentGas = g - gasleft();
        g = gasleft();
        _commit(bombJob);
        uint256 bombGas = g - gasleft();
        // The bomb's own 150 kB of memory cost ~57k, inside its limit. Copying it into the
        // market's memory would cost ~71k more.
        assertLe(bombGas, silentGas + 80_000);
        assertEq(uint8(market.getJob(bombJob).status), uint8(IJobMarket.JobStatus.Committed));
    }

    function test_callback_reentrantConsumerCannotSettleEarlyOrTakeWei() public {
        ReentrantConsumer consumer = new ReentrantConsumer(market);
        uint256 jobId = _claimedJobWithCallback(address(consumer), 1_000_000);
        _commitAndSettle(jobId);
        assertFalse(consumer.finalizeOk()); // window not over
        assertFalse(consumer.withdrawOk()); // nothing to withdraw
        assertFalse(consumer.commitOk()); // already committed, and not the claimer
        assertEq(address(consumer).balance, 0);
    }

    function test_callback_reentrantFinalizeWithZeroWindowPaysExactly() public {
        Params memory p = _defaultParams();
        p.challengeWindow = 0;
        _deploy(p);
        ReentrantConsumer consumer = new ReentrantConsumer(market);
        uint256 jobId = _claimedJobWithCallback(address(consumer), 1_000_000);
        _commit(jobId);
        // With no window, finalizing from the callback is a legitimate permissionless call.
        assertTrue(consumer.finalizeOk());
        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Settled));
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.InvalidJobStatus.selector, jobId, IJobMarket.JobStatus.Settled)
        );
        market.finalize(jobId);
        _assertSettledExactly();
        assertEq(address(consumer).balance, 0);
    }

    function test_callback_eoaCallbackSucceedsSilently() public {
        uint256 jobId = _claimedJobWithCallback(makeAddr("eoa"), LIMIT);
        vm.recordLogs();
        _commit(jobId);
        assertEq(vm.getRecordedLogs().length, 1); // ResultCommitted only
    }

    function test_commitResult_revertsOnInsufficientGasForCallback() public {
        uint256 jobId = _claimedJobWithCallback(address(new GasBurningConsumer()), 1_000_000);
        vm.expectPartialRevert(IJobMarket.InsufficientGasForCallback.selector);
        vm.prank(node);
        market.commitResult{gas: 900_000}(jobId, keccak256(OUTPUT), OUTPUT, "");
        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Claimed));
    }

    function test_commitResults_writesAllStateBeforeCallbacks() public {
        ReentrantConsumer consumer = new ReentrantConsumer(market);
        uint256 a = _claimedJobWithCallback(address(consumer), 1_000_000);
        uint256 b = _claimedJobWithCallback(address(new RevertingConsumer()), LIMIT);
        uint256[] memory ids = new uint256[](2);
        (ids[0], ids[1]) = (a, b);
        bytes32[] memory hashes = new bytes32[](2);
        (hashes[0], hashes[1]) = (keccak256(OUTPUT), keccak256(OUTPUT));
        bytes[] memory outputs = new bytes[](2);
        (outputs[0], outputs[1]) = (OUTPUT, OUTPUT);
        vm.prank(node);
        market.commitResults(ids, hashes, outputs, new string[](2));
        assertEq(uint8(market.getJob(b).status), uint8(IJobMarket.JobStatus.Committed));
        assertFalse(consumer.commitOk());
    }
}
