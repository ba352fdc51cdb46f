// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {HostileFixture} from "./HostileFixture.sol";
import {HostileActor} from "./mocks/HostileActor.sol";
import {JobMarket} from "../../src/JobMarket.sol";
import {NodeRegistry} from "../../src/NodeRegistry.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";

/// @title HostileSettlementGasTest
/// @notice The cost of settling N jobs in one finalizeMany / expireMany when payers, nodes,
///         keeper and treasury are hostile contracts (refusing, gas-burning, re-entrant) is
///         bounded by a line in N, and equals the cost with plain EOAs: settlement only
///         credits balances and never calls a payee, so hostility cannot make it dearer.
/// @dev Bound, in execution gas (a transaction adds 21,000 and its calldata), with every slot
///      cold and every job's payer and node a fresh account, the dearest shape:
///        finalizeMany(N) <= 75,000 + 75,000 * N      expireMany(N) <= 75,000 + 75,000 * N
///      Measured (forge 1.7.1, cancun, contracts of commit HEAD when written): finalizeMany 112,876 /
///      610,658 / 2,259,277 and expireMany 101,006 / 515,936 / 1,880,504 gas for N = 1 / 8 / 32
///      (about 69k and 57k per extra job), the same to within 0.02% with EOAs. Each stage
///      runs on its own deployment prepared in setUp, so the measured call sees cold storage
///      as a transaction of its own would (see Gas.t.sol).
contract HostileSettlementGasTest is HostileFixture {
    event log_named_uint(string key, uint256 val);

    uint256 internal constant BASE_GAS = 75_000;
    uint256 internal constant GAS_PER_JOB = 75_000;

    /// @notice One deployment holding N jobs ready to settle, and every account they credit.
    struct Stage {
        JobMarket market;
        NodeRegistry registry;
        uint256[] ids;
        address[] payees;
        address keeper;
    }

    Stage[3] internal _finalizeHostile; // N = 1, 8, 32
    Stage internal _finalizeBenign; // N = 32
    Stage[3] internal _expireHostile; // N = 1, 8, 32
    Stage internal _expireBenign; // N = 32

    uint256[3] internal _sizes = [uint256(1), 8, 32];

    function setUp() public override {
        for (uint256 s; s < 3; ++s) {
            _prepare(_finalizeHostile[s], _sizes[s], true, true);
            _prepare(_expireHostile[s], _sizes[s], true, false);
        }
        _prepare(_finalizeBenign, 32, false, true);
        _prepare(_expireBenign, 32, false, false);
        vm.warp(block.timestamp + 1 hours + 1); // past every deadline and window
    }

    /// @dev Deploys the protocol and brings `n` jobs to Committed (`commit`) or Claimed.
    ///      Hostile: job i's payer is a fresh contract refusing / burning gas / re-entering /
    ///      accepting, or (every fifth) the vault agent; its node a fresh node contract in one
    ///      of the same four modes; the treasury and keeper refuse payment. Benign: the same
    ///      shape with fresh EOAs. Fresh accounts everywhere make every credit a new slot.
    function _prepare(Stage storage stage, uint256 n, bool hostile, bool commit) internal {
        _deploy(_defaultParams());
        stage.market = market;
        stage.registry = nodes;

        if (hostile) {
            HostileActor badTreasury = _hostile("badTreasury", HostileActor.Mode.Revert);
            vm.prank(deployer);
            market.setTreasury(address(badTreasury));
            stage.keeper = address(_hostile("badKeeper", HostileActor.Mode.Revert));
            stage.payees.push(address(badTreasury));
        } else {
            address benignTreasury = makeAddr("benignTreasury");
            vm.prank(deployer);
            market.setTreasury(benignTreasury);
            stage.keeper = makeAddr("benignKeeper");
            stage.payees.push(benignTreasury);
        }
        stage.payees.push(stage.keeper);
        stage.payees.push(payer);

        for (uint256 i; i < n; ++i) {
            uint256 jobId;
            if (i % 5 == 4) {
                jobId = _submitFromVault(MAX_FEE);
            } else {
                address who;
                (jobId, who) = _submitFrom(i, hostile);
                stage.payees.push(who);
            }
            address claimer = _freshNode(i, hostile);
            stage.payees.push(claimer);
            vm.prank(claimer);
            market.claimJob(jobId);
            if (commit) {
                vm.prank(claimer);
                market.commitResult(jobId, keccak256(OUTPUT), OUTPUT, "");
            }
            stage.ids.push(jobId);
        }
    }

    /// @dev A fresh node staked for one job: a hostile contract (mode i % 4) or an EOA.
    function _freshNode(uint256 i, bool hostile) internal returns (address who) {
        uint256 stake = MIN_STAKE;
        if (!hostile) {
            who = makeAddr(string.concat("benignNode", vm.toString(i)));
            _stakeNode(who, stake, PRICE);
            return who;
        }
        HostileActor h = _hostile("hostileNode", HostileActor.Mode(i % 4));
        if (i % 4 == uint256(HostileActor.Mode.Reenter)) {
            h.addReentry(address(nodes), abi.encodeCall(NodeRegistry.withdrawUnbonded, ()));
        }
        _stakeAs(h, stake, PRICE);
        return address(h);
    }

    /// @dev Job `i` from a fresh payer: a hostile contract (mode i % 4) or an EOA.
    function _submitFrom(uint256 i, bool hostile) internal returns (uint256 jobId, address who) {
        if (hostile) {
            HostileActor h = _hostile("hostilePayer", HostileActor.Mode(i % 4));
            if (i % 4 == uint256(HostileActor.Mode.Reenter)) {
                h.addReentry(address(market), abi.encodeCall(IJobMarket.withdraw, ()));
            }
            jobId = _submitAs(h, MAX_FEE);
            who = address(h);
        } else {
            who = makeAddr(string.concat("benignPayer", vm.toString(i)));
            vm.deal(who, MAX_FEE);
            vm.prank(who);
            jobId = market.submitJob{value: MAX_FEE}(_request(MAX_FEE));
        }
    }

    /// @dev Settles `stage` with finalizeMany (or expireMany) from its keeper; returns the gas.
    function _settle(Stage storage stage, bool finalize) internal returns (uint256 used) {
        vm.prank(stage.keeper);
        uint256 before = gasleft();
        uint256 count = finalize ? stage.market.finalizeMany(stage.ids) : stage.market.expireMany(stage.ids);
        used = before - gasleft();
        assertEq(count, stage.ids.length, "not every job settled");
    }

    /// @dev Every job terminal, no escrow left, market ETH == Σ withdrawable of its payees,
    ///      registry ETH == Σ stakes.
    function _assertSettled(Stage storage stage, IJobMarket.JobStatus expected) internal view {
        JobMarket m = stage.market;
        for (uint256 i; i < stage.ids.length; ++i) {
            assertEq(uint8(m.getJob(stage.ids[i]).status), uint8(expected));
        }
        assertEq(m.totalEscrow(), 0);
        uint256 owed;
        for (uint256 i; i < stage.payees.length; ++i) {
            owed += m.withdrawable(stage.payees[i]);
        }
        assertEq(address(m).balance, owed, "market ETH != withdrawable");
        uint256 stakes = stage.registry.getNode(node).stake;
        for (uint256 i; i < stage.payees.length; ++i) {
            stakes += stage.registry.getNode(stage.payees[i]).stake;
        }
        assertEq(address(stage.registry).balance, stakes, "registry ETH != stakes");
    }

    function _bound(uint256 n) internal pure returns (uint256) {
        return BASE_GAS + GAS_PER_JOB * n;
    }

    function test_finalizeMany_hostilePayeesCostLinearGas() public {
        for (uint256 s; s < 3; ++s) {
            uint256 n = _sizes[s];
            uint256 used = _settle(_finalizeHostile[s], true);
            emit log_named_uint(string.concat("finalizeMany hostile N=", vm.toString(n)), used);
            emit log_named_uint("  per job", used / n);
            assertLe(used, _bound(n), "finalizeMany above the linear bound");
            _assertSettled(_finalizeHostile[s], IJobMarket.JobStatus.Settled);
        }
        uint256 benign = _settle(_finalizeBenign, true);
        emit log_named_uint("finalizeMany benign N=32", benign);
        _assertSettled(_finalizeBenign, IJobMarket.JobStatus.Settled);
    }

    function test_finalizeMany_hostilityCostsNothingExtra() public {
        uint256 hostile = _settle(_finalizeHostile[2], true);
        uint256 benign = _settle(_finalizeBenign, true);
        assertApproxEqAbs(hostile, benign, benign / 100, "hostile payees change the settlement cost");
    }

    function test_expireMany_hostileNodesAndPayeesCostLinearGas() public {
        for (uint256 s; s < 3; ++s) {
            uint256 n = _sizes[s];
            uint256 used = _settle(_expireHostile[s], false);
            emit log_named_uint(string.concat("expireMany hostile N=", vm.toString(n)), used);
            emit log_named_uint("  per job", used / n);
            assertLe(used, _bound(n), "expireMany above the linear bound");
            _assertSettled(_expireHostile[s], IJobMarket.JobStatus.Expired);
        }
        uint256 benign = _settle(_expireBenign, false);
        emit log_named_uint("expireMany benign N=32", benign);
        _assertSettled(_expireBenign, IJobMarket.JobStatus.Expired);
    }
}
