// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

import {MarketFixture} from "./utils/MarketFixture.sol";
import {DigitsConsumer} from "../src/examples/DigitsConsumer.sol";
import {IJobMarket} from "../src/interfaces/IJobMarket.sol";

/// @title DigitsConsumerTest
/// @notice The example agent against the real market: both ways of paying, the callback,
///         refunds, and who may call what.
contract DigitsConsumerTest is MarketFixture {
    event DigitClassified(uint256 indexed jobId, bytes32 resultHash, bytes output);

    uint32 internal constant CALLBACK_GAS = 300_000;

    DigitsConsumer internal consumer;
    address internal owner = makeAddr("owner");

    function setUp() public override {
        super.setUp();
        vm.prank(owner);
        consumer = new DigitsConsumer(market, modelId, CALLBACK_GAS);
        _openVault(address(consumer), 1 ether, 1 ether);
        vm.deal(owner, 10 ether);
    }

    function _deadline() internal view returns (uint40) {
        return uint40(block.timestamp + 10 minutes);
    }

    function test_classify_paysWithEthAndReceivesResult() public {
        vm.prank(owner);
        uint256 jobId = consumer.classify{value: MAX_FEE}(INPUT, _deadline());

        IJobMarket.Job memory job = market.getJob(jobId);
        assertEq(job.payer, address(consumer));
        assertFalse(job.fromVault);
        assertEq(job.callback, address(consumer));
        assertEq(job.callbackGasLimit, CALLBACK_GAS);
        assertEq(job.inputHash, keccak256(INPUT));
        assertFalse(consumer.resultOf(jobId).received);

        _claim(jobId);
        vm.expectEmit(address(consumer));
        emit DigitClassified(jobId, keccak256(OUTPUT), OUTPUT);
        _commit(jobId);

        DigitsConsumer.Result memory result = consumer.resultOf(jobId);
        assertTrue(result.received);
        assertEq(result.resultHash, keccak256(OUTPUT));
        assertEq(result.output, OUTPUT);
    }

    function test_classifyFromVault_paysFromItsOwnAccount() public {
        vm.prank(owner);
        uint256 jobId = consumer.classifyFromVault(INPUT, MAX_FEE, _deadline());

        IJobMarket.Job memory job = market.getJob(jobId);
        assertEq(job.payer, address(consumer));
        assertTrue(job.fromVault);
        assertEq(vault.getAccount(address(consumer)).balance, 1 ether - MAX_FEE);

        _claim(jobId);
        _commit(jobId);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        market.finalize(jobId);
        assertTrue(consumer.resultOf(jobId).received);
        assertEq(vault.getAccount(address(consumer)).balance, 1 ether - PRICE);
    }

    function test_cancel_refundsAndWithdrawRefundsForwards() public {
        vm.prank(owner);
        uint256 jobId = consumer.classify{value: MAX_FEE}(INPUT, _deadline());
        vm.prank(owner);
        consumer.cancel(jobId);
        assertEq(market.withdrawable(address(consumer)), MAX_FEE);

        address payable to = payable(makeAddr("to"));
        vm.prank(owner);
        consumer.withdrawRefunds(to);
        assertEq(to.balance, MAX_FEE);
        assertEq(address(consumer).balance, 0);
    }

    function test_onJobResult_revertsOnNotMarket() public {
        vm.expectRevert(abi.encodeWithSelector(DigitsConsumer.NotMarket.selector, payer));
        vm.prank(payer);
        consumer.onJobResult(1, bytes32(0), "");
    }

    function test_onJobResult_revertsOnSecondDelivery() public {
        vm.startPrank(address(market));
        consumer.onJobResult(1, bytes32(uint256(1)), OUTPUT);
        vm.expectRevert(abi.encodeWithSelector(DigitsConsumer.AlreadyReceived.selector, 1));
        consumer.onJobResult(1, bytes32(uint256(2)), OUTPUT);
        vm.stopPrank();
        assertEq(consumer.resultOf(1).resultHash, bytes32(uint256(1)));
    }

    function test_classify_revertsOnNotOwner() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, payer));
        vm.prank(payer);
        consumer.classify{value: MAX_FEE}(INPUT, _deadline());
    }

    function test_classifyFromVault_revertsOnNotOwner() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, payer));
        vm.prank(payer);
        consumer.classifyFromVault(INPUT, MAX_FEE, _deadline());
    }

    function test_receive_revertsOnNotMarket() public {
        vm.prank(payer);
        (bool ok, bytes memory data) = address(consumer).call{value: 1}("");
        assertFalse(ok);
        assertEq(data, abi.encodeWithSelector(DigitsConsumer.NotMarket.selector, payer));
    }
}
