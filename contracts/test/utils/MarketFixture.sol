// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "./Test.sol";
import {JobMarket} from "../../src/JobMarket.sol";
import {ModelRegistry} from "../../src/ModelRegistry.sol";
import {NodeRegistry} from "../../src/NodeRegistry.sol";
import {PaymentVault} from "../../src/PaymentVault.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IModelRegistry} from "../../src/interfaces/IModelRegistry.sol";
import {INodeRegistry} from "../../src/interfaces/INodeRegistry.sol";
import {IPaymentVault} from "../../src/interfaces/IPaymentVault.sol";

/// @title MarketFixture
/// @notice The real protocol (ModelRegistry, NodeRegistry, PaymentVault, JobMarket) deployed
///         and bound, one registered model, one staked node serving it, one direct payer and
///         one vault-funded agent, plus helpers that walk a job through its states.
abstract contract MarketFixture is Test {
    /// @notice Market parameters a deployment takes.
    struct Params {
        uint16 feeBps;
        uint256 challengeWindow;
        uint256 maxJobDuration;
        uint16 collateralBps;
        uint256 minJobCollateral;
        uint16 slashPayerBps;
        uint32 maxCallbackGas;
    }

    uint16 internal constant FEE_BPS = 250;
    uint256 internal constant CHALLENGE_WINDOW = 60;
    uint256 internal constant MAX_JOB_DURATION = 3600;
    uint16 internal constant COLLATERAL_BPS = 20_000;
    uint256 internal constant MIN_JOB_COLLATERAL = 1e14;
    uint16 internal constant SLASH_PAYER_BPS = 8000;
    uint32 internal constant MAX_CALLBACK_GAS = 2_000_000;
    uint256 internal constant MIN_STAKE = 1 ether;
    uint256 internal constant UNBONDING_PERIOD = 7 days;
    uint256 internal constant WITHDRAWAL_DELAY = 1 days;

    uint256 internal constant NODE_STAKE = 100 ether;
    uint256 internal constant PRICE = 0.01 ether;
    uint96 internal constant MAX_FEE = 0.02 ether;
    uint256 internal constant VAULT_DEPOSIT = 50 ether;

    ModelRegistry internal models;
    NodeRegistry internal nodes;
    PaymentVault internal vault;
    JobMarket internal market;

    address internal deployer = makeAddr("deployer");
    address internal treasury = makeAddr("treasury");
    address internal payer = makeAddr("payer");
    address internal node = makeAddr("node");
    address internal keeper = makeAddr("keeper");
    address internal agent = makeAddr("agent");
    address internal funder = makeAddr("funder");
    address internal spender = makeAddr("spender");

    bytes32 internal modelId;
    bytes internal constant INPUT = hex"00000001000000000000000200000000000000000000000000000000000000ff";
    bytes internal constant OUTPUT = hex"000000010000000000000000000000000000000a0000000000000001fffffffffffffff7";

    /// @notice Default parameters (those of the embedded demo).
    function _defaultParams() internal pure returns (Params memory) {
        return Params({
            feeBps: FEE_BPS,
            challengeWindow: CHALLENGE_WINDOW,
            maxJobDuration: MAX_JOB_DURATION,
            collateralBps: COLLATERAL_BPS,
            minJobCollateral: MIN_JOB_COLLATERAL,
            slashPayerBps: SLASH_PAYER_BPS,
            maxCallbackGas: MAX_CALLBACK_GAS
        });
    }

    function setUp() public virtual {
        _deploy(_defaultParams());
    }

    /// @notice Deploys and binds the protocol with `p`, registers the model, stakes the node
    ///         (serving at PRICE), funds the payer and opens the agent's vault account.
    function _deploy(Params memory p) internal {
        vm.startPrank(deployer);
        models = new ModelRegistry();
        uint256 longestWindow = p.maxJobDuration + p.challengeWindow;
        uint256 unbonding = longestWindow > UNBONDING_PERIOD ? longestWindow : UNBONDING_PERIOD;
        nodes = new NodeRegistry(address(models), MIN_STAKE, unbonding);
        vault = new PaymentVault(WITHDRAWAL_DELAY);
        market = new JobMarket(
            INodeRegistry(address(nodes)),
            IModelRegistry(address(models)),
            IPaymentVault(address(vault)),
            treasury,
            p.feeBps,
            p.challengeWindow,
            p.maxJobDuration,
            p.collateralBps,
            p.minJobCollateral,
            p.slashPayerBps,
            p.maxCallbackGas
        );
        nodes.setMarket(address(market));
        vault.setMarket(address(market));
        vm.stopPrank();

        modelId = _registerModel(keccak256("digits-mlp"));
        _stakeNode(node, NODE_STAKE, PRICE);
        vm.deal(payer, 1000 ether);
        _openVault(agent, VAULT_DEPOSIT, type(uint128).max);
    }

    /// @notice Registers a one-segment model with `artifactsHash`.
    function _registerModel(bytes32 artifactsHash) internal returns (bytes32) {
        IModelRegistry.Segment[] memory segments = new IModelRegistry.Segment[](1);
        segments[0] = IModelRegistry.Segment({segmentHash: artifactsHash, vkHash: bytes32(0), verifier: address(0)});
        return models.registerModel(artifactsHash, 16, "blob://model", segments);
    }

    /// @notice Registers `who` with `stake` wei and prices `modelId` at `price`.
    function _stakeNode(address who, uint256 stake, uint256 price) internal {
        vm.deal(who, stake);
        vm.startPrank(who);
        nodes.register{value: stake}();
        nodes.setModelPrice(modelId, price);
        vm.stopPrank();
    }

    /// @notice Opens `who`'s vault account with `amount` wei, any model, `spender` authorized.
    function _openVault(address who, uint256 amount, uint256 maxFeePerJob) internal {
        address[] memory spenders = new address[](1);
        spenders[0] = spender;
        IPaymentVault.Policy memory policy = IPaymentVault.Policy({
            maxFeePerJob: uint128(maxFeePerJob),
            budgetPerPeriod: type(uint128).max,
            periodLength: 1 days,
            anyModel: true
        });
        vm.deal(funder, amount);
        vm.prank(funder);
        vault.openAccount{value: amount}(who, policy, new bytes32[](0), spenders);
    }

    /// @notice A request for INPUT paid with ETH, no callback, deadline in one hour.
    function _request(uint96 maxFee) internal view returns (IJobMarket.JobRequest memory) {
        return IJobMarket.JobRequest({
            modelId: modelId,
            inputHash: keccak256(INPUT),
            input: INPUT,
            inputURI: "",
            maxFee: maxFee,
            deadline: uint40(block.timestamp + 1 hours),
            mode: IJobMarket.VerificationMode.None,
            callback: address(0),
            callbackGasLimit: 0,
            vaultAgent: address(0)
        });
    }

    /// @notice The same request paid from `agent`'s vault account.
    function _vaultRequest(uint96 maxFee) internal view returns (IJobMarket.JobRequest memory r) {
        r = _request(maxFee);
        r.vaultAgent = agent;
    }

    /// @notice Submits a MAX_FEE job from `payer`.
    function _submit() internal returns (uint256) {
        return _submit(MAX_FEE);
    }

    /// @notice Submits a `maxFee` job from `payer`, paid with ETH.
    function _submit(uint96 maxFee) internal returns (uint256) {
        vm.prank(payer);
        return market.submitJob{value: maxFee}(_request(maxFee));
    }

    /// @notice Submits a `maxFee` job from `spender`, paid from `agent`'s vault account.
    function _submitFromVault(uint96 maxFee) internal returns (uint256) {
        vm.prank(spender);
        return market.submitJob(_vaultRequest(maxFee));
    }

    /// @notice `node` claims `jobId`.
    function _claim(uint256 jobId) internal {
        vm.prank(node);
        market.claimJob(jobId);
    }

    /// @notice `node` commits OUTPUT for `jobId`.
    function _commit(uint256 jobId) internal {
        vm.prank(node);
        market.commitResult(jobId, keccak256(OUTPUT), OUTPUT, "");
    }

    /// @notice A MAX_FEE job from `payer`, claimed and committed by `node`.
    function _committedJob() internal returns (uint256 jobId) {
        jobId = _submit();
        _claim(jobId);
        _commit(jobId);
    }

    /// @notice The market's ETH equals its escrow plus the balances of `accounts` (the only
    ///         ones a test credited).
    function _assertSolvent(address[] memory accounts) internal view {
        uint256 owed = market.totalEscrow();
        for (uint256 i; i < accounts.length; ++i) {
            owed += market.withdrawable(accounts[i]);
        }
        assertEq(address(market).balance, owed, "market ETH != escrow + withdrawable");
    }

    /// @notice The usual accounts a test credits.
    function _accounts() internal view returns (address[] memory accounts) {
        accounts = new address[](5);
        accounts[0] = payer;
        accounts[1] = node;
        accounts[2] = treasury;
        accounts[3] = keeper;
        accounts[4] = agent;
    }
}
