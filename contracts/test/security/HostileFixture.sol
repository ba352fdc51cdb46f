// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {MarketFixture} from "../utils/MarketFixture.sol";
import {HostileActor} from "./mocks/HostileActor.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {INodeRegistry} from "../../src/interfaces/INodeRegistry.sol";
import {IPaymentVault} from "../../src/interfaces/IPaymentVault.sol";

/// @title HostileFixture
/// @notice MarketFixture plus helpers that make a HostileActor contract play a role (payer,
///         node, keeper, funder) and check the three solvency equalities exactly.
abstract contract HostileFixture is MarketFixture {
    /// @dev Every account a test may have credited in the market, for the solvency check.
    address[] internal _creditable;

    /// @dev Every node whose stake the registry holds (the fixture's node included).
    address[] internal _stakers;

    /// @dev Every vault account (the fixture's agent included).
    address[] internal _vaultAgents;

    function setUp() public virtual override {
        super.setUp();
        _trackDefaults();
    }

    /// @dev Resets the tracked accounts to the fixture's own (call after a re-`_deploy`).
    function _trackDefaults() internal {
        delete _creditable;
        delete _stakers;
        delete _vaultAgents;
        address[] memory defaults = _accounts();
        for (uint256 i; i < defaults.length; ++i) {
            _creditable.push(defaults[i]);
        }
        _stakers.push(node);
        _vaultAgents.push(agent);
    }

    // ---------------------------------------------------------------- actors

    /// @notice A new hostile actor in `mode`, labelled, tracked as creditable.
    function _hostile(string memory name, HostileActor.Mode mode) internal returns (HostileActor h) {
        h = new HostileActor();
        h.setMode(mode);
        vm.label(address(h), name);
        _creditable.push(address(h));
    }

    /// @notice `h` submits a `maxFee` job paid with ETH (dealt to it first).
    function _submitAs(HostileActor h, uint96 maxFee) internal returns (uint256) {
        vm.deal(address(h), address(h).balance + maxFee);
        bytes memory ret = h.exec(address(market), maxFee, abi.encodeCall(IJobMarket.submitJob, (_request(maxFee))));
        return abi.decode(ret, (uint256));
    }

    /// @notice `h` registers as a node with `stake` wei and serves the model at `price`.
    function _stakeAs(HostileActor h, uint256 stake, uint256 price) internal {
        vm.deal(address(h), address(h).balance + stake);
        h.exec(address(nodes), stake, abi.encodeCall(INodeRegistry.register, ()));
        h.exec(address(nodes), 0, abi.encodeCall(INodeRegistry.setModelPrice, (modelId, price)));
        _stakers.push(address(h));
    }

    /// @notice `h` claims `jobId`.
    function _claimAs(HostileActor h, uint256 jobId) internal {
        h.exec(address(market), 0, abi.encodeCall(IJobMarket.claimJob, (jobId)));
    }

    /// @notice `h` commits OUTPUT for `jobId`.
    function _commitAs(HostileActor h, uint256 jobId) internal {
        h.exec(address(market), 0, _commitCall(jobId));
    }

    /// @notice Calldata of a commit of OUTPUT for `jobId`.
    function _commitCall(uint256 jobId) internal pure returns (bytes memory) {
        return abi.encodeCall(IJobMarket.commitResult, (jobId, keccak256(OUTPUT), OUTPUT, ""));
    }

    /// @notice `h` withdraws its market balance.
    function _withdrawAs(HostileActor h) internal {
        h.exec(address(market), 0, abi.encodeCall(IJobMarket.withdraw, ()));
    }

    /// @notice `h` opens a vault account for itself (funder and agent at once) with `amount`.
    function _openOwnVault(HostileActor h, uint256 amount) internal {
        IPaymentVault.Policy memory policy = IPaymentVault.Policy({
            maxFeePerJob: type(uint128).max, budgetPerPeriod: type(uint128).max, periodLength: 1 days, anyModel: true
        });
        vm.deal(address(h), address(h).balance + amount);
        h.exec(
            address(vault),
            amount,
            abi.encodeCall(IPaymentVault.openAccount, (address(h), policy, new bytes32[](0), new address[](0)))
        );
        _vaultAgents.push(address(h));
    }

    // ---------------------------------------------------------------- checks

    /// @notice market ETH == escrow + Σ withdrawable; registry ETH == Σ stakes; vault ETH ==
    ///         Σ account balances, over the tracked accounts.
    function _assertAllSolvent() internal view {
        uint256 owed = market.totalEscrow();
        for (uint256 i; i < _creditable.length; ++i) {
            owed += market.withdrawable(_creditable[i]);
        }
        assertEq(address(market).balance, owed, "market ETH != escrow + withdrawable");

        uint256 stakes;
        for (uint256 i; i < _stakers.length; ++i) {
            stakes += nodes.getNode(_stakers[i]).stake;
        }
        assertEq(address(nodes).balance, stakes, "registry ETH != stakes");

        uint256 balances;
        for (uint256 i; i < _vaultAgents.length; ++i) {
            balances += vault.getAccount(_vaultAgents[i]).balance;
        }
        assertEq(address(vault).balance, balances, "vault ETH != account balances");
    }

    /// @notice Re-entrant call `index` of `h`'s last payment failed with exactly `reason`.
    function _assertReentryRefused(HostileActor h, uint256 index, bytes memory reason) internal view {
        (bool ok, bytes memory data) = h.outcome(index);
        assertFalse(ok, string.concat("re-entry ", vm.toString(index), " succeeded"));
        assertEq(data, reason, string.concat("re-entry ", vm.toString(index), " error"));
    }

    /// @notice Re-entrant call `index` of `h`'s last payment was stopped by the market's guard.
    function _assertGuarded(HostileActor h, uint256 index) internal view {
        _assertReentryRefused(
            h, index, abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)
        );
    }

    /// @notice Re-entrant call `index` of `h`'s last payment succeeded.
    function _assertReentryOk(HostileActor h, uint256 index) internal view {
        (bool ok,) = h.outcome(index);
        assertTrue(ok, string.concat("re-entry ", vm.toString(index), " failed"));
    }

    /// @notice `jobId`'s status.
    function _status(uint256 jobId) internal view returns (IJobMarket.JobStatus) {
        return market.getJob(jobId).status;
    }

    /// @notice Asserts `jobId` is in `expected` status.
    function _assertStatus(uint256 jobId, IJobMarket.JobStatus expected) internal view {
        assertEq(uint8(_status(jobId)), uint8(expected), string.concat("status of job ", vm.toString(jobId)));
    }

    /// @notice A one-element id list.
    function _ids(uint256 a) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](1);
        ids[0] = a;
    }

    /// @notice A two-element id list.
    function _ids(uint256 a, uint256 b) internal pure returns (uint256[] memory ids) {
        ids = new uint256[](2);
        (ids[0], ids[1]) = (a, b);
    }

    /// @notice The fee, node payout and refund of a finalized job of `price` at FEE_BPS.
    function _split(uint256 price, uint256 maxFee) internal pure returns (uint256 fee, uint256 payout, uint256 refund) {
        fee = price * FEE_BPS / 10_000;
        payout = price - fee;
        refund = maxFee - price;
    }
}
