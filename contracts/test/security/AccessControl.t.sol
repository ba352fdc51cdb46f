// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

import {MarketFixture} from "../utils/MarketFixture.sol";
import {DigitsConsumer} from "../../src/examples/DigitsConsumer.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {INodeRegistry} from "../../src/interfaces/INodeRegistry.sol";
import {IPaymentVault} from "../../src/interfaces/IPaymentVault.sol";

/// @title AccessControlTest
/// @notice Every privileged function of the protocol called by a fuzzed caller that is not the
///         one it belongs to: each call is refused with its exact custom error and changes
///         nothing. Market-only (registry, vault), deployer-only (binding), funder-only (vault
///         accounts), owner-only (market, example consumer), payer-only (cancel), claimer-only
///         (commit), node-only (stake management) and own-balance-only (withdraw).
contract AccessControlTest is MarketFixture {
    DigitsConsumer internal consumer;
    address internal consumerOwner = makeAddr("consumerOwner");

    function setUp() public override {
        super.setUp();
        vm.prank(consumerOwner);
        consumer = new DigitsConsumer(market, modelId, 300_000);
    }

    /// @dev Rules out `authorized` and the cheatcode address (which cannot be pranked).
    function _assumeStranger(address caller, address authorized) internal pure {
        vm.assume(caller != authorized && caller != address(vm));
    }

    function _notOwner(address caller) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, caller);
    }

    // ---------------------------------------------------------------- NodeRegistry

    function testFuzz_registry_setMarket_onlyDeployer(address caller, address newMarket) public {
        _assumeStranger(caller, deployer);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.NotDeployer.selector, caller));
        vm.prank(caller);
        nodes.setMarket(newMarket);
        assertEq(nodes.market(), address(market));
    }

    function testFuzz_registry_lockCollateral_onlyMarket(address caller, uint256 amount) public {
        _assumeStranger(caller, address(market));
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.NotMarket.selector, caller));
        vm.prank(caller);
        nodes.lockCollateral(node, amount);
        assertEq(nodes.getNode(node).locked, 0);
    }

    function testFuzz_registry_unlockCollateral_onlyMarket(address caller, uint256 amount) public {
        _claim(_submit());
        uint256 locked = nodes.getNode(node).locked;
        _assumeStranger(caller, address(market));
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.NotMarket.selector, caller));
        vm.prank(caller);
        nodes.unlockCollateral(node, amount);
        assertEq(nodes.getNode(node).locked, locked);
    }

    function testFuzz_registry_slash_onlyMarket(address caller, uint256 amount) public {
        _claim(_submit());
        _assumeStranger(caller, address(market));
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.NotMarket.selector, caller));
        vm.prank(caller);
        nodes.slash(node, amount);
        assertEq(nodes.getNode(node).stake, NODE_STAKE);
        assertEq(address(nodes).balance, NODE_STAKE);
    }

    function testFuzz_registry_nodeFunctions_onlyRegisteredNode(address caller, uint256 amount) public {
        vm.assume(!nodes.getNode(caller).registered);
        _assumeStranger(caller, node);
        bytes memory notNode = abi.encodeWithSelector(INodeRegistry.NodeNotRegistered.selector, caller);
        vm.deal(caller, 1 ether);
        vm.startPrank(caller);
        vm.expectRevert(notNode);
        nodes.addStake{value: 1 ether}();
        vm.expectRevert(notNode);
        nodes.requestUnbond(bound(amount, 1, NODE_STAKE));
        vm.expectRevert(notNode);
        nodes.setModelPrice(modelId, amount);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.ModelNotServed.selector, caller, modelId));
        nodes.removeModel(modelId);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.NothingToWithdraw.selector, caller));
        nodes.withdrawUnbonded();
        vm.stopPrank();
        assertEq(nodes.getNode(node).stake, NODE_STAKE);
        (bool served,) = nodes.priceOf(node, modelId);
        assertTrue(served);
    }

    // ---------------------------------------------------------------- PaymentVault

    function testFuzz_vault_setMarket_onlyDeployer(address caller, address newMarket) public {
        _assumeStranger(caller, deployer);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.NotDeployer.selector, caller));
        vm.prank(caller);
        vault.setMarket(newMarket);
        assertEq(vault.market(), address(market));
    }

    function testFuzz_vault_pull_onlyMarket(address caller, uint256 amount) public {
        _assumeStranger(caller, address(market));
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.NotMarket.selector, caller));
        vm.prank(caller);
        vault.pull(agent, agent, modelId, amount);
        assertEq(vault.getAccount(agent).balance, VAULT_DEPOSIT);
    }

    function testFuzz_vault_refund_onlyMarket(address caller, uint256 amount) public {
        _assumeStranger(caller, address(market));
        amount = bound(amount, 0, 10 ether);
        vm.deal(caller, amount);
        vm.expectRevert(abi.encodeWithSelector(IPaymentVault.NotMarket.selector, caller));
        vm.prank(caller);
        vault.refund{value: amount}(agent);
        assertEq(vault.getAccount(agent).balance, VAULT_DEPOSIT);
    }

    function testFuzz_vault_funderFunctions_onlyFunder(address caller, uint256 amount, bytes32 model) public {
        _assumeStranger(caller, funder);
        vm.prank(funder);
        vault.requestWithdrawal(agent, 1 ether);
        vm.warp(block.timestamp + WITHDRAWAL_DELAY);
        IPaymentVault.Account memory before = vault.getAccount(agent);
        IPaymentVault.Policy memory policy = IPaymentVault.Policy({
            maxFeePerJob: type(uint128).max, budgetPerPeriod: type(uint128).max, periodLength: 1, anyModel: false
        });
        bytes memory notFunder = abi.encodeWithSelector(IPaymentVault.NotFunder.selector, agent, caller);

        vm.startPrank(caller);
        vm.expectRevert(notFunder);
        vault.setPolicy(agent, policy);
        vm.expectRevert(notFunder);
        vault.setModelAllowed(agent, model, true);
        vm.expectRevert(notFunder);
        vault.setSpender(agent, caller, true);
        vm.expectRevert(notFunder);
        vault.requestWithdrawal(agent, bound(amount, 1, type(uint128).max));
        vm.expectRevert(notFunder);
        vault.cancelWithdrawal(agent);
        vm.expectRevert(notFunder);
        vault.withdraw(agent);
        vm.stopPrank();

        IPaymentVault.Account memory afterwards = vault.getAccount(agent);
        assertEq(afterwards.balance, before.balance);
        assertEq(afterwards.pendingWithdrawal, 1 ether);
        assertEq(afterwards.policy.periodLength, 1 days);
        assertTrue(afterwards.policy.anyModel);
        assertEq(vault.isSpender(agent, caller), caller == agent || caller == spender);
    }

    // ---------------------------------------------------------------- JobMarket: owner

    function testFuzz_market_ownerFunctions_onlyOwner(address caller, uint16 newFee, address newTreasury) public {
        _assumeStranger(caller, deployer);
        vm.startPrank(caller);
        vm.expectRevert(_notOwner(caller));
        market.setFeeBps(uint16(bound(newFee, 0, 1000)));
        vm.expectRevert(_notOwner(caller));
        market.setTreasury(newTreasury == address(0) ? caller : newTreasury);
        vm.expectRevert(_notOwner(caller));
        market.transferOwnership(caller);
        vm.expectRevert(_notOwner(caller));
        market.renounceOwnership();
        vm.stopPrank();
        assertEq(market.owner(), deployer);
        assertEq(market.feeBps(), FEE_BPS);
        assertEq(market.treasury(), treasury);
    }

    function testFuzz_market_acceptOwnership_onlyPendingOwner(address caller, address nominee) public {
        vm.assume(nominee != address(0));
        _assumeStranger(caller, nominee);
        vm.prank(deployer);
        market.transferOwnership(nominee);
        vm.expectRevert(_notOwner(caller));
        vm.prank(caller);
        market.acceptOwnership();
        assertEq(market.owner(), deployer);
        assertEq(market.pendingOwner(), nominee);
    }

    // ---------------------------------------------------------------- JobMarket: payer, claimer, balance

    function testFuzz_market_cancel_onlyPayer(address caller) public {
        _assumeStranger(caller, payer);
        uint256 jobId = _submit();
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.NotPayer.selector, jobId, caller));
        vm.prank(caller);
        market.cancel(jobId);
        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Open));
    }

    function testFuzz_market_cancelVaultJob_onlyTheAgent(address caller) public {
        _assumeStranger(caller, agent); // not its spender, not its funder either
        uint256 jobId = _submitFromVault(MAX_FEE);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.NotPayer.selector, jobId, caller));
        vm.prank(caller);
        market.cancel(jobId);
        assertEq(market.totalEscrow(), MAX_FEE);
    }

    function testFuzz_market_commit_onlyClaimer(address caller, bytes32 resultHash) public {
        _assumeStranger(caller, node);
        uint256 jobId = _submit();
        _claim(jobId);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.NotClaimer.selector, jobId, caller));
        vm.prank(caller);
        market.commitResult(jobId, resultHash, "", "blob://forged");
        assertEq(uint8(market.getJob(jobId).status), uint8(IJobMarket.JobStatus.Claimed));
    }

    function testFuzz_market_commitResults_onlyClaimerOfEveryJob(address caller, bool forgeFirst) public {
        _assumeStranger(caller, node);
        // The caller claims one job itself; the batch also holds one claimed by `node`.
        _stakeNode(caller, MIN_STAKE, PRICE);
        uint256 own = _submit();
        uint256 foreign = _submit();
        vm.prank(caller);
        market.claimJob(own);
        _claim(foreign);
        uint256[] memory ids = new uint256[](2);
        (ids[0], ids[1]) = forgeFirst ? (foreign, own) : (own, foreign);
        bytes32[] memory hashes = new bytes32[](2);
        (hashes[0], hashes[1]) = (keccak256(OUTPUT), keccak256(OUTPUT));
        bytes[] memory outputs = new bytes[](2);
        (outputs[0], outputs[1]) = (OUTPUT, OUTPUT);

        vm.expectRevert(abi.encodeWithSelector(IJobMarket.NotClaimer.selector, foreign, caller));
        vm.prank(caller);
        market.commitResults(ids, hashes, outputs, new string[](2));
        assertEq(uint8(market.getJob(own).status), uint8(IJobMarket.JobStatus.Claimed), "all or nothing");
        assertEq(uint8(market.getJob(foreign).status), uint8(IJobMarket.JobStatus.Claimed));
    }

    function testFuzz_market_withdraw_paysOnlyTheCallersOwnBalance(address caller) public {
        vm.assume(caller != payer && caller != address(vm));
        uint256 jobId = _submit();
        vm.prank(payer);
        market.cancel(jobId);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.NothingToWithdraw.selector, caller));
        vm.prank(caller);
        market.withdraw();
        assertEq(market.withdrawable(payer), MAX_FEE);
        assertEq(address(market).balance, MAX_FEE);
    }

    // ---------------------------------------------------------------- example consumer

    function testFuzz_digitsConsumer_ownerFunctions_onlyOwner(address caller, uint256 jobId) public {
        _assumeStranger(caller, consumerOwner);
        vm.deal(caller, MAX_FEE);
        vm.startPrank(caller);
        vm.expectRevert(_notOwner(caller));
        consumer.classify{value: MAX_FEE}(INPUT, uint40(block.timestamp + 60));
        vm.expectRevert(_notOwner(caller));
        consumer.classifyFromVault(INPUT, MAX_FEE, uint40(block.timestamp + 60));
        vm.expectRevert(_notOwner(caller));
        consumer.cancel(jobId);
        vm.expectRevert(_notOwner(caller));
        consumer.withdrawRefunds(payable(caller));
        vm.stopPrank();
        assertEq(market.jobCount(), 0);
    }

    function testFuzz_digitsConsumer_callbackAndReceive_onlyMarket(address caller, uint256 jobId) public {
        _assumeStranger(caller, address(market));
        vm.deal(caller, 1);
        vm.startPrank(caller);
        vm.expectRevert(abi.encodeWithSelector(DigitsConsumer.NotMarket.selector, caller));
        consumer.onJobResult(jobId, keccak256(OUTPUT), OUTPUT);
        vm.expectRevert(abi.encodeWithSelector(DigitsConsumer.NotMarket.selector, caller));
        (bool ok,) = address(consumer).call{value: 1}("");
        vm.stopPrank();
        assertTrue(ok, "expectRevert makes the reverting call report success");
        assertFalse(consumer.resultOf(jobId).received);
    }
}
