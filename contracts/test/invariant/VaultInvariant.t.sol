// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "../utils/Test.sol";
import {PaymentVault} from "../../src/PaymentVault.sol";
import {IPaymentVault} from "../../src/interfaces/IPaymentVault.sol";

/// @dev Drives the vault with bounded, mostly valid actions. It is also the vault's market, so
///      it sees every wei that `pull` sends and pays every refund. Ghost sums record each
///      movement of ETH into and out of the vault.
contract VaultHandler is Test {
    uint256 internal constant AGENTS = 4;
    uint256 internal constant FUNDERS = 3;
    bytes32 internal constant MODEL = keccak256("model");

    PaymentVault public immutable vault;

    address[] public agents;
    address[] public funders;

    /// @dev ETH that entered the vault by openAccount or deposit.
    uint256 public ghost_deposits;
    /// @dev ETH the vault sent to the market by pull, as the market received it.
    uint256 public ghost_pulls;
    /// @dev ETH the market sent back by refund.
    uint256 public ghost_refunds;
    /// @dev ETH funders received from withdraw, measured on their balances.
    uint256 public ghost_withdrawals;
    /// @dev ETH that arrived at the handler from the vault (must equal ghost_pulls).
    uint256 public ghost_receivedFromVault;
    /// @dev ETH that arrived at the handler from anyone else (must stay zero).
    uint256 public ghost_receivedFromOthers;

    mapping(bytes32 action => uint256 count) public calls;

    constructor(PaymentVault vault_) {
        vault = vault_;
        for (uint256 i = 0; i < AGENTS; ++i) {
            agents.push(makeAddr(string.concat("agent", vm.toString(i))));
        }
        for (uint256 i = 0; i < FUNDERS; ++i) {
            funders.push(makeAddr(string.concat("funder", vm.toString(i))));
        }
    }

    receive() external payable {
        if (msg.sender == address(vault)) ghost_receivedFromVault += msg.value;
        else ghost_receivedFromOthers += msg.value;
    }

    // ---------------------------------------------------------------- actions

    function openAccount(
        uint256 agentSeed,
        uint256 funderSeed,
        uint256 amount,
        uint128 maxFee,
        uint128 budget,
        uint64 period,
        bool anyModel
    ) external {
        address agent = _agent(agentSeed);
        if (vault.getAccount(agent).funder != address(0)) return;
        address funder = funders[funderSeed % FUNDERS];
        amount = bound(amount, 0, 100 ether);
        IPaymentVault.Policy memory policy = IPaymentVault.Policy({
            maxFeePerJob: uint128(bound(maxFee, 1, 10 ether)),
            budgetPerPeriod: uint128(bound(budget, 1, 20 ether)),
            periodLength: uint64(bound(period, 1, 7 days)),
            anyModel: anyModel
        });
        bytes32[] memory models = new bytes32[](1);
        models[0] = MODEL;

        vm.deal(funder, funder.balance + amount);
        vm.prank(funder);
        vault.openAccount{value: amount}(agent, policy, models, new address[](0));
        ghost_deposits += amount;
        calls["openAccount"]++;
    }

    function deposit(uint256 agentSeed, uint256 amount, address from) external {
        address agent = _agent(agentSeed);
        if (vault.getAccount(agent).funder == address(0)) return;
        amount = bound(amount, 1, 50 ether);
        if (from == address(0) || from == address(this) || from == address(vault)) from = address(0xD0D0);

        vm.deal(from, from.balance + amount);
        vm.prank(from);
        vault.deposit{value: amount}(agent);
        ghost_deposits += amount;
        calls["deposit"]++;
    }

    function pull(uint256 agentSeed, uint256 amount) external {
        address agent = _agent(agentSeed);
        IPaymentVault.Account memory account = vault.getAccount(agent);
        if (account.funder == address(0)) return;
        uint256 most = vault.spendable(agent);
        if (account.policy.maxFeePerJob < most) most = account.policy.maxFeePerJob;
        if (most == 0) return;
        amount = bound(amount, 1, most);

        uint256 before = address(this).balance;
        vault.pull(agent, agent, MODEL, amount);
        ghost_pulls += address(this).balance - before;
        calls["pull"]++;
    }

    function refund(uint256 agentSeed, uint256 amount) external {
        address agent = _agent(agentSeed);
        if (vault.getAccount(agent).funder == address(0)) return;
        amount = bound(amount, 0, address(this).balance);

        vault.refund{value: amount}(agent);
        ghost_refunds += amount;
        calls["refund"]++;
    }

    function requestWithdrawal(uint256 agentSeed, uint256 amount) external {
        address agent = _agent(agentSeed);
        address funder = vault.getAccount(agent).funder;
        if (funder == address(0)) return;
        amount = bound(amount, 1, 150 ether);

        vm.prank(funder);
        vault.requestWithdrawal(agent, amount);
        calls["requestWithdrawal"]++;
    }

    function withdraw(uint256 agentSeed) external {
        address agent = _agent(agentSeed);
        IPaymentVault.Account memory account = vault.getAccount(agent);
        if (account.pendingWithdrawal == 0 || vm.getBlockTimestamp() < account.withdrawalReadyAt) return;

        uint256 before = account.funder.balance;
        vm.prank(account.funder);
        vault.withdraw(agent);
        ghost_withdrawals += account.funder.balance - before;
        calls["withdraw"]++;
    }

    function setPolicy(uint256 agentSeed, uint128 maxFee, uint128 budget, uint64 period) external {
        address agent = _agent(agentSeed);
        address funder = vault.getAccount(agent).funder;
        if (funder == address(0)) return;
        IPaymentVault.Policy memory policy = IPaymentVault.Policy({
            maxFeePerJob: uint128(bound(maxFee, 1, 10 ether)),
            budgetPerPeriod: uint128(bound(budget, 1, 20 ether)),
            periodLength: uint64(bound(period, 1, 7 days)),
            anyModel: true
        });

        vm.prank(funder);
        vault.setPolicy(agent, policy);
        calls["setPolicy"]++;
    }

    function warp(uint256 seconds_) external {
        skip(bound(seconds_, 1, 3 days));
        calls["warp"]++;
    }

    // ---------------------------------------------------------------- helpers

    function agentCount() external pure returns (uint256) {
        return AGENTS;
    }

    function _agent(uint256 seed) internal view returns (address) {
        return agents[seed % AGENTS];
    }
}

/// @notice Solvency and conservation of ETH for PaymentVault.
contract VaultInvariantTest is Test {
    PaymentVault internal vault;
    VaultHandler internal handler;

    function setUp() public {
        vm.warp(1_700_000_000);
        vault = new PaymentVault(1 days);
        handler = new VaultHandler(vault);
        vault.setMarket(address(handler));

        bytes4[] memory selectors = new bytes4[](8);
        selectors[0] = VaultHandler.openAccount.selector;
        selectors[1] = VaultHandler.deposit.selector;
        selectors[2] = VaultHandler.pull.selector;
        selectors[3] = VaultHandler.refund.selector;
        selectors[4] = VaultHandler.requestWithdrawal.selector;
        selectors[5] = VaultHandler.withdraw.selector;
        selectors[6] = VaultHandler.setPolicy.selector;
        selectors[7] = VaultHandler.warp.selector;
        targetContract(address(handler));
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
        excludeSender(address(vault));
        excludeSender(address(handler));
    }

    /// @dev The vault holds exactly the sum of account balances (no ETH is force-fed here).
    function invariant_solvency() public view {
        uint256 sum;
        for (uint256 i = 0; i < handler.agentCount(); ++i) {
            sum += vault.getAccount(handler.agents(i)).balance;
        }
        assertEq(address(vault).balance, sum, "vault balance != sum of accounts");
    }

    /// @dev Money leaves only to the market (pull) or the funder (withdraw).
    function invariant_conservation() public view {
        assertEq(
            handler.ghost_deposits() + handler.ghost_refunds() - handler.ghost_pulls() - handler.ghost_withdrawals(),
            address(vault).balance,
            "deposits + refunds - pulls - withdrawals != balance"
        );
        assertEq(handler.ghost_receivedFromVault(), handler.ghost_pulls(), "market received != pulls");
        assertEq(handler.ghost_receivedFromOthers(), 0, "market received ETH from elsewhere");
    }

    /// @dev A period's escrow never exceeds the budget in force when it was taken: spent grows only
    ///      by pulls that fit the remaining budget, so with budgets bounded at 20 ether it stays below.
    function invariant_spentWithinBudgetCap() public view {
        for (uint256 i = 0; i < handler.agentCount(); ++i) {
            assertLe(vault.getAccount(handler.agents(i)).spentInPeriod, 20 ether, "spent above budget cap");
        }
    }
}
