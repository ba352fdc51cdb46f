// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {MarketFixture} from "./utils/MarketFixture.sol";
import {JobMarket} from "../src/JobMarket.sol";
import {IJobMarket} from "../src/interfaces/IJobMarket.sol";

/// @title GasTest
/// @notice Gas of a job's lifecycle (submit, claim, commit, finalize), one job at a time and
///         in batches of 32, logged per step and per job (`forge test --mt test_gas -vv`).
/// @dev A forge test is one transaction, so storage touched by an earlier step would be warm
///      (and dirty) for a later one. Each step therefore runs on its own protocol deployment,
///      prepared in setUp: every step is measured as a transaction of its own would see it,
///      in a steady-state market (node, treasury and payer already have balances). Figures are
///      execution gas; a transaction adds 21,000 plus its calldata.
contract GasTest is MarketFixture {
    event log_named_uint(string key, uint256 val);

    uint256 internal constant BATCH = 32;

    /// @notice One deployment, holding jobs ready for the step measured on it.
    struct Stage {
        JobMarket market;
        uint256[] jobIds;
    }

    /// @dev [0]: nothing to do yet (submit), [1]: Open jobs (claim), [2]: Claimed (commit),
    ///      [3]: Committed with the window over (finalize).
    Stage[4] internal single;
    Stage[4] internal batched;

    function setUp() public override {
        for (uint256 step; step < 4; ++step) {
            _prepare(single[step], step, 1);
            _prepare(batched[step], step, BATCH);
        }
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
    }

    /// @dev Deploys a fresh protocol, runs one job through (steady state), then brings `count`
    ///      jobs to the state before `step`.
    function _prepare(Stage storage stage, uint256 step, uint256 count) internal {
        _deploy(_defaultParams());
        uint256 warmup = _committedJob();
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        market.finalize(warmup);

        stage.market = market;
        if (step == 0) return;
        for (uint256 i; i < count; ++i) {
            uint256 jobId = _submit();
            if (step >= 2) _claim(jobId);
            if (step >= 3) _commit(jobId);
            stage.jobIds.push(jobId);
        }
    }

    function _requests(uint256 count) internal view returns (IJobMarket.JobRequest[] memory rs) {
        rs = new IJobMarket.JobRequest[](count);
        for (uint256 i; i < count; ++i) {
            rs[i] = _request(MAX_FEE);
        }
    }

    function _commitArgs(uint256 count)
        internal
        pure
        returns (bytes32[] memory hashes, bytes[] memory outputs, string[] memory uris)
    {
        hashes = new bytes32[](count);
        outputs = new bytes[](count);
        uris = new string[](count);
        for (uint256 i; i < count; ++i) {
            hashes[i] = keccak256(OUTPUT);
            outputs[i] = OUTPUT;
        }
    }

    function test_gas_singleLifecycle() public {
        IJobMarket.JobRequest memory r = _request(MAX_FEE);
        JobMarket m = single[0].market;
        vm.prank(payer);
        uint256 g = gasleft();
        m.submitJob{value: MAX_FEE}(r);
        uint256 submitGas = g - gasleft();

        m = single[1].market;
        uint256 jobId = single[1].jobIds[0];
        vm.prank(node);
        g = gasleft();
        m.claimJob(jobId);
        uint256 claimGas = g - gasleft();

        m = single[2].market;
        jobId = single[2].jobIds[0];
        bytes32 resultHash = keccak256(OUTPUT);
        bytes memory output = OUTPUT;
        vm.prank(node);
        g = gasleft();
        m.commitResult(jobId, resultHash, output, "");
        uint256 commitGas = g - gasleft();

        m = single[3].market;
        jobId = single[3].jobIds[0];
        vm.prank(keeper);
        g = gasleft();
        m.finalize(jobId);
        uint256 finalizeGas = g - gasleft();

        assertEq(uint8(m.getJob(jobId).status), uint8(IJobMarket.JobStatus.Settled));
        emit log_named_uint("single: submitJob", submitGas);
        emit log_named_uint("single: claimJob", claimGas);
        emit log_named_uint("single: commitResult", commitGas);
        emit log_named_uint("single: finalize", finalizeGas);
        emit log_named_uint("single: total per job", submitGas + claimGas + commitGas + finalizeGas);
    }

    function test_gas_batchedLifecycle() public {
        IJobMarket.JobRequest[] memory rs = _requests(BATCH);
        JobMarket m = batched[0].market;
        vm.prank(payer);
        uint256 g = gasleft();
        m.submitJobs{value: BATCH * MAX_FEE}(rs);
        uint256 submitGas = g - gasleft();

        m = batched[1].market;
        uint256[] memory ids = batched[1].jobIds;
        vm.prank(node);
        g = gasleft();
        m.claimJobs(ids);
        uint256 claimGas = g - gasleft();

        m = batched[2].market;
        ids = batched[2].jobIds;
        (bytes32[] memory hashes, bytes[] memory outputs, string[] memory uris) = _commitArgs(BATCH);
        vm.prank(node);
        g = gasleft();
        m.commitResults(ids, hashes, outputs, uris);
        uint256 commitGas = g - gasleft();

        m = batched[3].market;
        ids = batched[3].jobIds;
        vm.prank(keeper);
        g = gasleft();
        uint256 settled = m.finalizeMany(ids);
        uint256 finalizeGas = g - gasleft();

        assertEq(settled, BATCH);
        emit log_named_uint("batch 32: submitJobs, per job", submitGas / BATCH);
        emit log_named_uint("batch 32: claimJobs, per job", claimGas / BATCH);
        emit log_named_uint("batch 32: commitResults, per job", commitGas / BATCH);
        emit log_named_uint("batch 32: finalizeMany, per job", finalizeGas / BATCH);
        emit log_named_uint("batch 32: total per job", (submitGas + claimGas + commitGas + finalizeGas) / BATCH);
    }
}
