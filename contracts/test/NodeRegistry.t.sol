// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "./utils/Test.sol";
import {ModelRegistry} from "../src/ModelRegistry.sol";
import {NodeRegistry} from "../src/NodeRegistry.sol";
import {IModelRegistry} from "../src/interfaces/IModelRegistry.sol";
import {INodeRegistry} from "../src/interfaces/INodeRegistry.sol";

/// @dev Stands in for JobMarket: reports a longest window, forwards the market-only calls and
///      receives slashed stake (or refuses it, to exercise TransferFailed).
contract MockMarket {
    INodeRegistry public registry;
    uint256 public longestWindow;
    bool public rejectETH;

    constructor(uint256 longestWindow_) {
        longestWindow = longestWindow_;
    }

    function setRegistry(INodeRegistry registry_) external {
        registry = registry_;
    }

    function setRejectETH(bool reject) external {
        rejectETH = reject;
    }

    function lock(address node, uint256 amount) external {
        registry.lockCollateral(node, amount);
    }

    function unlock(address node, uint256 amount) external {
        registry.unlockCollateral(node, amount);
    }

    function slash(address node, uint256 amount) external returns (uint256) {
        return registry.slash(node, amount);
    }

    receive() external payable {
        require(!rejectETH, "MockMarket: rejects ETH");
    }
}

/// @dev A node contract whose receive() refuses ETH or tries to re-enter withdrawUnbonded.
contract ContractNode {
    INodeRegistry public immutable registry;
    bool public reenter;
    bool public reentered;

    constructor(INodeRegistry registry_) payable {
        registry = registry_;
    }

    function register(uint256 stake) external {
        registry.register{value: stake}();
    }

    function requestUnbond(uint256 amount) external {
        registry.requestUnbond(amount);
    }

    function withdrawUnbonded() external {
        registry.withdrawUnbonded();
    }

    function setReenter(bool reenter_) external {
        reenter = reenter_;
    }

    receive() external payable {
        require(reenter, "ContractNode: rejects ETH");
        // Re-entry must fail; record whether it did not.
        try registry.withdrawUnbonded() {
            reentered = true;
        } catch {}
    }
}

contract NodeRegistryTest is Test {
    event NodeRegistered(address indexed node, uint256 stake);
    event StakeAdded(address indexed node, uint256 amount, uint256 stake);
    event UnbondingRequested(address indexed node, uint256 amount, uint256 readyAt);
    event UnbondedWithdrawn(address indexed node, uint256 amount);
    event ModelPriceSet(address indexed node, bytes32 indexed modelId, uint256 price);
    event ModelRemoved(address indexed node, bytes32 indexed modelId);
    event CollateralLocked(address indexed node, uint256 amount);
    event CollateralUnlocked(address indexed node, uint256 amount);
    event NodeSlashed(address indexed node, uint256 amount);
    event MarketSet(address indexed market);

    uint256 internal constant MIN_STAKE = 1 ether;
    uint256 internal constant UNBONDING = 7 days;
    uint256 internal constant WINDOW = 2 days;
    uint256 internal constant T0 = 1_700_000_000;

    ModelRegistry internal models;
    NodeRegistry internal registry;
    MockMarket internal market;
    bytes32 internal modelId;

    address internal node = makeAddr("node");
    address internal other = makeAddr("other");

    function setUp() public {
        vm.warp(T0);
        models = new ModelRegistry();
        registry = new NodeRegistry(address(models), MIN_STAKE, UNBONDING);
        market = new MockMarket(WINDOW);
        market.setRegistry(registry);
        registry.setMarket(address(market));

        IModelRegistry.Segment[] memory segments = new IModelRegistry.Segment[](1);
        segments[0].segmentHash = keccak256("segment");
        modelId = models.registerModel(keccak256("artifacts"), 8, "ipfs://m", segments);

        vm.deal(node, 1000 ether);
        vm.deal(other, 1000 ether);
    }

    // ---------------------------------------------------------------- helpers

    function _register(address who, uint256 stake) internal {
        vm.prank(who);
        registry.register{value: stake}();
    }

    function _assertNode(address who, uint256 stake, uint256 locked, uint256 unbonding) internal view {
        INodeRegistry.Node memory n = registry.getNode(who);
        assertEq(uint256(n.stake), stake, "stake");
        assertEq(uint256(n.locked), locked, "locked");
        assertEq(uint256(n.unbonding), unbonding, "unbonding");
    }

    // ---------------------------------------------------------------- constructor

    function test_constructor_setsParameters() public view {
        assertEq(address(registry.modelRegistry()), address(models));
        assertEq(registry.minStake(), MIN_STAKE);
        assertEq(registry.unbondingPeriod(), UNBONDING);
        assertEq(registry.deployer(), address(this));
        assertEq(registry.market(), address(market));
    }

    // ---------------------------------------------------------------- setMarket

    function test_setMarket_bindsMarket() public {
        NodeRegistry fresh = new NodeRegistry(address(models), MIN_STAKE, UNBONDING);
        vm.expectEmit(address(fresh));
        emit MarketSet(address(market));
        fresh.setMarket(address(market));
        assertEq(fresh.market(), address(market));
    }

    function test_setMarket_acceptsPeriodEqualToWindow() public {
        NodeRegistry fresh = new NodeRegistry(address(models), MIN_STAKE, WINDOW);
        fresh.setMarket(address(market));
        assertEq(fresh.market(), address(market));
    }

    function test_setMarket_revertsNotDeployer() public {
        NodeRegistry fresh = new NodeRegistry(address(models), MIN_STAKE, UNBONDING);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.NotDeployer.selector, other));
        vm.prank(other);
        fresh.setMarket(address(market));
    }

    function test_setMarket_revertsMarketAlreadySet() public {
        MockMarket second = new MockMarket(WINDOW);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.MarketAlreadySet.selector, address(market)));
        registry.setMarket(address(second));
    }

    function test_setMarket_revertsUnbondingPeriodTooShort() public {
        NodeRegistry fresh = new NodeRegistry(address(models), MIN_STAKE, WINDOW - 1);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.UnbondingPeriodTooShort.selector, WINDOW - 1, WINDOW));
        fresh.setMarket(address(market));
    }

    function test_setMarket_revertsForNonContract() public {
        NodeRegistry fresh = new NodeRegistry(address(models), MIN_STAKE, UNBONDING);
        vm.expectRevert();
        fresh.setMarket(address(0));
    }

    // ---------------------------------------------------------------- register

    function test_register_storesStake() public {
        vm.expectEmit(address(registry));
        emit NodeRegistered(node, 2 ether);
        _register(node, 2 ether);

        INodeRegistry.Node memory n = registry.getNode(node);
        assertTrue(n.registered);
        assertEq(uint256(n.stake), 2 ether);
        assertEq(registry.freeStake(node), 2 ether);
        assertEq(address(registry).balance, 2 ether);
    }

    function test_register_revertsAlreadyRegistered() public {
        _register(node, MIN_STAKE);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.NodeAlreadyRegistered.selector, node));
        _register(node, MIN_STAKE);
    }

    function test_register_revertsStakeBelowMinimum() public {
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.StakeBelowMinimum.selector, MIN_STAKE - 1, MIN_STAKE));
        _register(node, MIN_STAKE - 1);
    }

    function testFuzz_register_acceptsAtLeastMinimum(uint256 stake) public {
        stake = bound(stake, 0, 1000 ether);
        if (stake < MIN_STAKE) {
            vm.expectRevert(abi.encodeWithSelector(INodeRegistry.StakeBelowMinimum.selector, stake, MIN_STAKE));
        }
        _register(node, stake);
        assertEq(registry.getNode(node).stake, stake < MIN_STAKE ? 0 : stake);
    }

    // ---------------------------------------------------------------- addStake

    function test_addStake_increasesStake() public {
        _register(node, MIN_STAKE);
        vm.expectEmit(address(registry));
        emit StakeAdded(node, 3 ether, MIN_STAKE + 3 ether);
        vm.prank(node);
        registry.addStake{value: 3 ether}();
        _assertNode(node, MIN_STAKE + 3 ether, 0, 0);
        assertEq(address(registry).balance, MIN_STAKE + 3 ether);
    }

    function test_addStake_revertsNodeNotRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.NodeNotRegistered.selector, node));
        vm.prank(node);
        registry.addStake{value: 1 ether}();
    }

    function test_addStake_revertsZeroAmount() public {
        _register(node, MIN_STAKE);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.ZeroAmount.selector));
        vm.prank(node);
        registry.addStake();
    }

    // ---------------------------------------------------------------- requestUnbond

    function test_requestUnbond_startsTimer() public {
        _register(node, 5 ether);
        vm.expectEmit(address(registry));
        emit UnbondingRequested(node, 2 ether, T0 + UNBONDING);
        vm.prank(node);
        registry.requestUnbond(2 ether);

        _assertNode(node, 5 ether, 0, 2 ether);
        assertEq(uint256(registry.getNode(node).unbondingReadyAt), T0 + UNBONDING);
        assertEq(registry.freeStake(node), 3 ether);
    }

    function test_requestUnbond_secondRequestAddsAndRestartsTimer() public {
        _register(node, 5 ether);
        vm.prank(node);
        registry.requestUnbond(1 ether);
        skip(3 days);
        vm.prank(node);
        registry.requestUnbond(2 ether);

        _assertNode(node, 5 ether, 0, 3 ether);
        assertEq(uint256(registry.getNode(node).unbondingReadyAt), T0 + 3 days + UNBONDING);
    }

    function test_requestUnbond_revertsNodeNotRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.NodeNotRegistered.selector, node));
        vm.prank(node);
        registry.requestUnbond(1);
    }

    function test_requestUnbond_revertsZeroAmount() public {
        _register(node, MIN_STAKE);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.ZeroAmount.selector));
        vm.prank(node);
        registry.requestUnbond(0);
    }

    function test_requestUnbond_revertsInsufficientFreeStake() public {
        _register(node, 5 ether);
        market.lock(node, 2 ether);
        vm.prank(node);
        registry.requestUnbond(1 ether);

        vm.expectRevert(
            abi.encodeWithSelector(INodeRegistry.InsufficientFreeStake.selector, node, 2 ether + 1, 2 ether)
        );
        vm.prank(node);
        registry.requestUnbond(2 ether + 1);
    }

    function testFuzz_requestUnbond_onlyFromFreeStake(uint256 stake, uint256 locked, uint256 first, uint256 second)
        public
    {
        stake = bound(stake, MIN_STAKE, 1000 ether);
        locked = bound(locked, 0, stake);
        first = bound(first, 1, stake - locked + 1);
        _register(node, stake);
        market.lock(node, locked);

        uint256 free = stake - locked;
        if (first > free) {
            vm.expectRevert(abi.encodeWithSelector(INodeRegistry.InsufficientFreeStake.selector, node, first, free));
            vm.prank(node);
            registry.requestUnbond(first);
            return;
        }
        vm.prank(node);
        registry.requestUnbond(first);
        free -= first;

        second = bound(second, 1, free + 1);
        if (second > free) {
            vm.expectRevert(abi.encodeWithSelector(INodeRegistry.InsufficientFreeStake.selector, node, second, free));
        }
        vm.prank(node);
        registry.requestUnbond(second);

        INodeRegistry.Node memory n = registry.getNode(node);
        assertLe(uint256(n.locked) + n.unbonding, n.stake);
        assertEq(registry.freeStake(node), uint256(n.stake) - n.locked - n.unbonding);
    }

    // ---------------------------------------------------------------- withdrawUnbonded

    function test_withdrawUnbonded_sendsStake() public {
        _register(node, 5 ether);
        vm.prank(node);
        registry.requestUnbond(2 ether);
        skip(UNBONDING);

        uint256 before = node.balance;
        vm.expectEmit(address(registry));
        emit UnbondedWithdrawn(node, 2 ether);
        vm.prank(node);
        registry.withdrawUnbonded();

        assertEq(node.balance, before + 2 ether);
        _assertNode(node, 3 ether, 0, 0);
        assertEq(uint256(registry.getNode(node).unbondingReadyAt), 0);
        assertEq(address(registry).balance, 3 ether);
        assertTrue(registry.getNode(node).registered);
    }

    function test_withdrawUnbonded_revertsNothingToWithdraw() public {
        _register(node, MIN_STAKE);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.NothingToWithdraw.selector, node));
        vm.prank(node);
        registry.withdrawUnbonded();
    }

    function test_withdrawUnbonded_revertsUnbondingNotReady() public {
        _register(node, MIN_STAKE);
        vm.prank(node);
        registry.requestUnbond(1);
        skip(UNBONDING - 1);
        vm.expectRevert(
            abi.encodeWithSelector(INodeRegistry.UnbondingNotReady.selector, node, T0 + UNBONDING, T0 + UNBONDING - 1)
        );
        vm.prank(node);
        registry.withdrawUnbonded();
    }

    function test_withdrawUnbonded_revertsTransferFailed() public {
        ContractNode cn = new ContractNode{value: 2 ether}(registry);
        cn.register(2 ether);
        cn.requestUnbond(1 ether);
        skip(UNBONDING);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.TransferFailed.selector, address(cn), 1 ether));
        cn.withdrawUnbonded();
    }

    function test_withdrawUnbonded_blocksReentrancy() public {
        ContractNode cn = new ContractNode{value: 2 ether}(registry);
        cn.register(2 ether);
        cn.requestUnbond(1 ether);
        skip(UNBONDING);
        cn.setReenter(true);

        cn.withdrawUnbonded();

        assertFalse(cn.reentered());
        assertEq(address(cn).balance, 1 ether);
        assertEq(address(registry).balance, 1 ether);
        _assertNode(address(cn), 1 ether, 0, 0);
    }

    function testFuzz_withdrawUnbonded_onlyAfterPeriod(uint256 period, uint256 wait, uint256 amount) public {
        period = bound(period, WINDOW, 365 days);
        wait = bound(wait, 0, 2 * period);
        amount = bound(amount, 1, 10 ether);
        NodeRegistry fresh = new NodeRegistry(address(models), MIN_STAKE, period);
        vm.startPrank(node);
        fresh.register{value: 10 ether}();
        fresh.requestUnbond(amount);
        skip(wait);
        if (wait < period) {
            vm.expectRevert(
                abi.encodeWithSelector(INodeRegistry.UnbondingNotReady.selector, node, T0 + period, T0 + wait)
            );
        }
        uint256 before = node.balance;
        fresh.withdrawUnbonded();
        vm.stopPrank();

        assertEq(node.balance, wait < period ? before : before + amount);
        assertEq(address(fresh).balance, wait < period ? 10 ether : 10 ether - amount);
    }

    // ---------------------------------------------------------------- setModelPrice

    function test_setModelPrice_setsPrice() public {
        _register(node, MIN_STAKE);
        vm.expectEmit(address(registry));
        emit ModelPriceSet(node, modelId, 0.01 ether);
        vm.prank(node);
        registry.setModelPrice(modelId, 0.01 ether);

        (bool served, uint256 price) = registry.priceOf(node, modelId);
        assertTrue(served);
        assertEq(price, 0.01 ether);
    }

    function test_setModelPrice_updatesPrice() public {
        _register(node, MIN_STAKE);
        vm.startPrank(node);
        registry.setModelPrice(modelId, 1);
        registry.setModelPrice(modelId, 0);
        vm.stopPrank();

        (bool served, uint256 price) = registry.priceOf(node, modelId);
        assertTrue(served);
        assertEq(price, 0);
    }

    function test_setModelPrice_revertsNodeNotRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.NodeNotRegistered.selector, node));
        vm.prank(node);
        registry.setModelPrice(modelId, 1);
    }

    function test_setModelPrice_revertsModelNotRegistered() public {
        _register(node, MIN_STAKE);
        bytes32 unknown = keccak256("unknown");
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.ModelNotRegistered.selector, unknown));
        vm.prank(node);
        registry.setModelPrice(unknown, 1);
    }

    // ---------------------------------------------------------------- removeModel

    function test_removeModel_stopsServing() public {
        _register(node, MIN_STAKE);
        vm.prank(node);
        registry.setModelPrice(modelId, 5);

        vm.expectEmit(address(registry));
        emit ModelRemoved(node, modelId);
        vm.prank(node);
        registry.removeModel(modelId);

        (bool served, uint256 price) = registry.priceOf(node, modelId);
        assertFalse(served);
        assertEq(price, 0);
    }

    function test_removeModel_revertsModelNotServed() public {
        _register(node, MIN_STAKE);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.ModelNotServed.selector, node, modelId));
        vm.prank(node);
        registry.removeModel(modelId);
    }

    // ---------------------------------------------------------------- lockCollateral

    function test_lockCollateral_locksFreeStake() public {
        _register(node, 5 ether);
        vm.expectEmit(address(registry));
        emit CollateralLocked(node, 2 ether);
        market.lock(node, 2 ether);
        _assertNode(node, 5 ether, 2 ether, 0);
        assertEq(registry.freeStake(node), 3 ether);
    }

    function test_lockCollateral_revertsNotMarket() public {
        _register(node, 5 ether);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.NotMarket.selector, other));
        vm.prank(other);
        registry.lockCollateral(node, 1);
    }

    function test_lockCollateral_revertsNodeNotRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.NodeNotRegistered.selector, node));
        market.lock(node, 1);
    }

    function test_lockCollateral_revertsInsufficientFreeStake() public {
        _register(node, 5 ether);
        vm.prank(node);
        registry.requestUnbond(2 ether);
        market.lock(node, 2 ether);
        vm.expectRevert(
            abi.encodeWithSelector(INodeRegistry.InsufficientFreeStake.selector, node, 1 ether + 1, 1 ether)
        );
        market.lock(node, 1 ether + 1);
    }

    // ---------------------------------------------------------------- unlockCollateral

    function test_unlockCollateral_releasesLocked() public {
        _register(node, 5 ether);
        market.lock(node, 2 ether);
        vm.expectEmit(address(registry));
        emit CollateralUnlocked(node, 1.5 ether);
        market.unlock(node, 1.5 ether);
        _assertNode(node, 5 ether, 0.5 ether, 0);
        assertEq(registry.freeStake(node), 4.5 ether);
    }

    function test_unlockCollateral_revertsNotMarket() public {
        _register(node, 5 ether);
        market.lock(node, 2 ether);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.NotMarket.selector, node));
        vm.prank(node);
        registry.unlockCollateral(node, 2 ether);
    }

    function test_unlockCollateral_revertsInsufficientLocked() public {
        _register(node, 5 ether);
        market.lock(node, 2 ether);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.InsufficientLocked.selector, node, 2 ether + 1, 2 ether));
        market.unlock(node, 2 ether + 1);
    }

    // ---------------------------------------------------------------- slash

    function test_slash_sendsToMarket() public {
        _register(node, 5 ether);
        market.lock(node, 2 ether);
        vm.expectEmit(address(registry));
        emit NodeSlashed(node, 1 ether);
        uint256 slashed = market.slash(node, 1 ether);

        assertEq(slashed, 1 ether);
        assertEq(address(market).balance, 1 ether);
        assertEq(address(registry).balance, 4 ether);
        _assertNode(node, 4 ether, 1 ether, 0);
    }

    function test_slash_capsAtLocked() public {
        _register(node, 5 ether);
        market.lock(node, 2 ether);
        vm.prank(node);
        registry.requestUnbond(3 ether);

        uint256 slashed = market.slash(node, 10 ether);

        assertEq(slashed, 2 ether);
        assertEq(address(market).balance, 2 ether);
        _assertNode(node, 3 ether, 0, 3 ether);
    }

    function test_slash_nothingLockedSlashesNothing() public {
        _register(node, 5 ether);
        assertEq(market.slash(node, 1 ether), 0);
        assertEq(address(market).balance, 0);
        _assertNode(node, 5 ether, 0, 0);
    }

    function test_slash_revertsNotMarket() public {
        _register(node, 5 ether);
        market.lock(node, 2 ether);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.NotMarket.selector, other));
        vm.prank(other);
        registry.slash(node, 1 ether);
    }

    function test_slash_revertsTransferFailed() public {
        _register(node, 5 ether);
        market.lock(node, 2 ether);
        market.setRejectETH(true);
        vm.expectRevert(abi.encodeWithSelector(INodeRegistry.TransferFailed.selector, address(market), 2 ether));
        market.slash(node, 2 ether);
    }

    function testFuzz_slash_takesMinOfAmountAndLocked(uint256 stake, uint256 locked, uint256 amount) public {
        stake = bound(stake, MIN_STAKE, 1000 ether);
        locked = bound(locked, 0, stake);
        amount = bound(amount, 0, 2000 ether);
        _register(node, stake);
        market.lock(node, locked);

        uint256 slashed = market.slash(node, amount);

        uint256 expected = amount < locked ? amount : locked;
        assertEq(slashed, expected);
        assertEq(address(market).balance, expected);
        assertEq(address(registry).balance, stake - expected);
        _assertNode(node, stake - expected, locked - expected, 0);
    }

    // ---------------------------------------------------------------- views

    function test_freeStake_excludesLockedAndUnbonding() public {
        _register(node, 10 ether);
        market.lock(node, 3 ether);
        vm.prank(node);
        registry.requestUnbond(4 ether);
        assertEq(registry.freeStake(node), 3 ether);
    }

    function test_getNode_zeroForUnknown() public view {
        INodeRegistry.Node memory n = registry.getNode(other);
        assertFalse(n.registered);
        assertEq(uint256(n.stake), 0);
        assertEq(registry.freeStake(other), 0);
    }

    function test_priceOf_unservedModel() public view {
        (bool served, uint256 price) = registry.priceOf(node, modelId);
        assertFalse(served);
        assertEq(price, 0);
    }
}
