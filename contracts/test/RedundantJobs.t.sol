// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {MarketFixture} from "./utils/MarketFixture.sol";
import {RedundantJobs} from "../src/RedundantJobs.sol";
import {IRedundantJobs} from "../src/interfaces/IRedundantJobs.sol";
import {IModelRegistry} from "../src/interfaces/IModelRegistry.sol";
import {INodeRegistry} from "../src/interfaces/INodeRegistry.sol";

/// @title RedundantJobsTest
/// @notice k-of-n commit-reveal jobs against the real registries: copying, late reveals, ties,
///         no quorum, slashing, payment split, access rules, and a fuzzed solvency check.
contract RedundantJobsTest is MarketFixture {
    RedundantJobs internal rj;
    address[] internal seat;

    uint96 internal constant FEE = 0.03 ether;
    uint96 internal constant BOND = 0.05 ether;
    bytes32 internal constant GOOD = keccak256("good");
    bytes32 internal constant BAD = keccak256("bad");

    function setUp() public override {
        super.setUp();
        rj = new RedundantJobs(INodeRegistry(address(nodes)), IModelRegistry(address(models)));
        for (uint256 i; i < 5; ++i) {
            address who = makeAddr(string.concat("seat", vm.toString(i)));
            _stakeNode(who, 10 ether, PRICE);
            vm.deal(who, 10 ether);
            seat.push(who);
        }
    }

    // ---------------------------------------------------------------- helpers

    function _req(uint8 k, uint8 n) internal view returns (IRedundantJobs.Request memory) {
        return IRedundantJobs.Request({
            modelId: modelId,
            inputHash: keccak256(INPUT),
            input: INPUT,
            inputURI: "",
            k: k,
            n: n,
            bond: BOND,
            commitDeadline: uint40(block.timestamp + 10 minutes),
            revealDeadline: uint40(block.timestamp + 20 minutes)
        });
    }

    function _open(uint8 k, uint8 n) internal returns (uint256) {
        return _open(k, n, FEE);
    }

    function _open(uint8 k, uint8 n, uint96 fee) internal returns (uint256 jobId) {
        vm.prank(payer);
        jobId = rj.submit{value: fee}(_req(k, n));
    }

    function _salt(uint256 i) internal pure returns (bytes32) {
        return keccak256(abi.encode("salt", i));
    }

    function _commit(uint256 jobId, uint256 i, bytes32 result) internal {
        bytes32 commitment = rj.commitmentOf(result, _salt(i), seat[i]);
        vm.prank(seat[i]);
        rj.commit{value: BOND}(jobId, commitment);
    }

    function _reveal(uint256 jobId, uint256 i, bytes32 result) internal {
        vm.prank(seat[i]);
        rj.reveal(jobId, result, _salt(i), "");
    }

    function _assertSolvent() internal view {
        assertEq(address(rj).balance, rj.totalOwed(), "balance != owed");
    }

    // ---------------------------------------------------------------- happy path

    function test_TwoOfThreeAgree_SplitsFeeAndSlashesDissenter() public {
        uint256 jobId = _open(2, 3);
        _commit(jobId, 0, GOOD);
        _commit(jobId, 1, GOOD);
        _commit(jobId, 2, BAD);
        _reveal(jobId, 0, GOOD);
        _reveal(jobId, 1, GOOD);
        assertFalse(rj.canFinalize(jobId), "one reveal pending before the deadline");
        _reveal(jobId, 2, BAD);
        assertTrue(rj.canFinalize(jobId));
        vm.prank(keeper);
        rj.finalize(jobId);

        IRedundantJobs.Job memory job = rj.getJob(jobId);
        assertEq(uint8(job.status), uint8(IRedundantJobs.Status.Settled));
        assertEq(job.winner, GOOD);
        assertEq(rj.withdrawable(seat[0]), BOND + FEE / 2);
        assertEq(rj.withdrawable(seat[1]), BOND + FEE / 2);
        assertEq(rj.withdrawable(seat[2]), 0, "dissenter slashed");
        assertEq(rj.withdrawable(payer), BOND, "slashed bond to the payer");
        _assertSolvent();

        uint256 before = seat[0].balance;
        vm.prank(seat[0]);
        rj.withdraw();
        assertEq(seat[0].balance - before, BOND + FEE / 2);
        _assertSolvent();
    }

    function test_AllAgree_FeeSplitThreeWaysDustToPayer() public {
        uint256 jobId = _open(2, 3, 0.1 ether + 1);
        for (uint256 i; i < 3; ++i) {
            _commit(jobId, i, GOOD);
        }
        for (uint256 i; i < 3; ++i) {
            _reveal(jobId, i, GOOD);
        }
        rj.finalize(jobId);
        uint256 total = 0.1 ether + 1;
        uint256 share = total / 3;
        for (uint256 i; i < 3; ++i) {
            assertEq(rj.withdrawable(seat[i]), BOND + share);
        }
        assertEq(rj.withdrawable(payer), total - 3 * share);
        _assertSolvent();
    }

    function test_RevealCarriesOutputCheckedAgainstHash() public {
        bytes memory output = hex"00010203";
        bytes32 h = keccak256(output);
        uint256 jobId = _open(2, 3);
        _commit(jobId, 0, h);
        _commit(jobId, 1, h);
        _commit(jobId, 2, h);
        vm.prank(seat[0]);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.OutputHashMismatch.selector, h, keccak256(hex"ff")));
        rj.reveal(jobId, h, _salt(0), hex"ff");
        vm.prank(seat[0]);
        rj.reveal(jobId, h, _salt(0), output);
        assertEq(rj.seatOf(jobId, seat[0]).revealed, h);
    }

    // ---------------------------------------------------------------- copying

    function test_CopiedCommitmentCannotBeOpened() public {
        uint256 jobId = _open(2, 3);
        _commit(jobId, 0, GOOD);
        // seat 1 copies seat 0's commitment verbatim
        bytes32 copied = rj.seatOf(jobId, seat[0]).commitment;
        vm.prank(seat[1]);
        rj.commit{value: BOND}(jobId, copied);
        _commit(jobId, 2, GOOD);
        _reveal(jobId, 0, GOOD); // seat 0's (hash, salt) are now public
        vm.prank(seat[1]);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.CommitmentMismatch.selector, jobId, seat[1]));
        rj.reveal(jobId, GOOD, _salt(0), "");
        _reveal(jobId, 2, GOOD);
        vm.warp(block.timestamp + 21 minutes);
        rj.finalize(jobId);
        assertEq(rj.withdrawable(seat[1]), 0, "copier never revealed: slashed");
        assertEq(rj.withdrawable(payer), BOND);
        _assertSolvent();
    }

    function test_NoRevealBeforeAllCommitsOrDeadline() public {
        uint256 jobId = _open(2, 3);
        _commit(jobId, 0, GOOD);
        _commit(jobId, 1, GOOD);
        vm.prank(seat[0]);
        vm.expectRevert(
            abi.encodeWithSelector(IRedundantJobs.RevealNotOpen.selector, jobId, 2, block.timestamp + 10 minutes)
        );
        rj.reveal(jobId, GOOD, _salt(0), "");
        // after the commit deadline the two seats may reveal, and a late committer cannot join
        vm.warp(block.timestamp + 10 minutes + 1);
        bytes32 late = rj.commitmentOf(GOOD, _salt(2), seat[2]);
        vm.prank(seat[2]);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.CommitClosed.selector, jobId, block.timestamp - 1));
        rj.commit{value: BOND}(jobId, late);
        _reveal(jobId, 0, GOOD);
        _reveal(jobId, 1, GOOD);
        assertTrue(rj.canFinalize(jobId), "every seat revealed after the commit deadline");
        rj.finalize(jobId);
        assertEq(rj.withdrawable(seat[0]), BOND + FEE / 2);
        _assertSolvent();
    }

    function test_ReplayedRevealAndDoubleCommitFail() public {
        uint256 jobId = _open(2, 3);
        _commit(jobId, 0, GOOD);
        vm.prank(seat[0]);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.AlreadyCommitted.selector, jobId, seat[0]));
        rj.commit{value: BOND}(jobId, bytes32(uint256(1)));
        _commit(jobId, 1, GOOD);
        _commit(jobId, 2, GOOD);
        vm.prank(seat[3]);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.JobFull.selector, jobId, 3));
        rj.commit{value: BOND}(jobId, bytes32(uint256(1)));
        _reveal(jobId, 0, GOOD);
        vm.prank(seat[0]);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.AlreadyRevealed.selector, jobId, seat[0]));
        rj.reveal(jobId, GOOD, _salt(0), "");
        vm.prank(seat[3]);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.NotCommitted.selector, jobId, seat[3]));
        rj.reveal(jobId, GOOD, _salt(0), "");
    }

    // ---------------------------------------------------------------- late reveal

    function test_LateRevealRejectedAndSlashed() public {
        uint256 jobId = _open(2, 3);
        for (uint256 i; i < 3; ++i) {
            _commit(jobId, i, GOOD);
        }
        _reveal(jobId, 0, GOOD);
        _reveal(jobId, 1, GOOD);
        uint256 revealDeadline = rj.getJob(jobId).revealDeadline;
        vm.warp(revealDeadline + 1);
        vm.prank(seat[2]);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.RevealClosed.selector, jobId, revealDeadline));
        rj.reveal(jobId, GOOD, _salt(2), "");
        rj.finalize(jobId);
        assertEq(rj.withdrawable(seat[2]), 0, "late: slashed");
        assertEq(rj.withdrawable(seat[0]), BOND + FEE / 2);
        assertEq(rj.withdrawable(payer), BOND);
        _assertSolvent();
    }

    function test_FinalizeWaitsForPendingReveals() public {
        uint256 jobId = _open(2, 3);
        for (uint256 i; i < 3; ++i) {
            _commit(jobId, i, GOOD);
        }
        _reveal(jobId, 0, GOOD);
        _reveal(jobId, 1, GOOD);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.NotReady.selector, jobId));
        rj.finalize(jobId);
        _reveal(jobId, 2, GOOD);
        rj.finalize(jobId);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.JobClosed.selector, jobId, IRedundantJobs.Status.Settled));
        rj.finalize(jobId);
    }

    // ---------------------------------------------------------------- ties and no quorum

    function test_Tie_TwoAgainstTwo_RefundsAndKeepsRevealersBonds() public {
        uint256 jobId = _open(3, 4, 0.04 ether);
        _commit(jobId, 0, GOOD);
        _commit(jobId, 1, GOOD);
        _commit(jobId, 2, BAD);
        _commit(jobId, 3, BAD);
        for (uint256 i; i < 2; ++i) {
            _reveal(jobId, i, GOOD);
        }
        for (uint256 i = 2; i < 4; ++i) {
            _reveal(jobId, i, BAD);
        }
        rj.finalize(jobId);
        IRedundantJobs.Job memory job = rj.getJob(jobId);
        assertEq(uint8(job.status), uint8(IRedundantJobs.Status.Refunded));
        assertEq(job.winner, bytes32(0));
        assertEq(rj.withdrawable(payer), 0.04 ether, "fee refunded");
        for (uint256 i; i < 4; ++i) {
            assertEq(rj.withdrawable(seat[i]), BOND, "revealers keep their bond");
        }
        _assertSolvent();
    }

    function test_TieProneQuorumRejected() public {
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.InvalidQuorum.selector, 2, 4, 16));
        rj.submit{value: FEE}(_req(2, 4));
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.InvalidQuorum.selector, 4, 3, 16));
        rj.submit{value: FEE}(_req(4, 3));
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.InvalidQuorum.selector, 9, 17, 16));
        rj.submit{value: FEE}(_req(9, 17));
    }

    function test_NoQuorum_AllDifferent_Refund() public {
        uint256 jobId = _open(2, 3);
        _commit(jobId, 0, GOOD);
        _commit(jobId, 1, BAD);
        _commit(jobId, 2, keccak256("other"));
        _reveal(jobId, 0, GOOD);
        _reveal(jobId, 1, BAD);
        vm.warp(block.timestamp + 21 minutes); // seat 2 never reveals
        uint256 payerBefore = payer.balance;
        rj.finalize(jobId);
        assertEq(rj.withdrawable(payer), FEE, "fee back");
        assertEq(rj.withdrawable(seat[0]), BOND + BOND / 2, "revealers share the silent bond");
        assertEq(rj.withdrawable(seat[1]), BOND + BOND / 2);
        assertEq(rj.withdrawable(seat[2]), 0);
        vm.prank(payer);
        rj.withdraw();
        assertEq(payer.balance - payerBefore, FEE);
        _assertSolvent();
    }

    /// @notice A requester whose own two nodes take seats and never reveal (to read the
    ///         honest node's output and get the fee back) pays their bonds to the honest node.
    function test_WithheldRevealsPayTheHonestRevealer() public {
        vm.prank(seat[1]);
        nodes.setModelPrice(modelId, 0);
        vm.prank(seat[2]);
        nodes.setModelPrice(modelId, 0);
        uint256 jobId = _open(2, 3);
        _commit(jobId, 0, GOOD);
        _commit(jobId, 1, GOOD); // the requester's nodes
        _commit(jobId, 2, GOOD);
        _reveal(jobId, 0, GOOD);
        vm.warp(block.timestamp + 21 minutes);
        rj.finalize(jobId);
        assertEq(rj.withdrawable(seat[0]), 3 * BOND, "its bond and both withheld ones");
        assertGe(3 * BOND - BOND, FEE, "more than its share of the fee would have been");
        assertEq(rj.withdrawable(payer), FEE);
        _assertSolvent();
    }

    function test_NoQuorum_TooFewCommits_RefundAfterCommitDeadline() public {
        uint256 jobId = _open(2, 3);
        _commit(jobId, 0, GOOD);
        assertFalse(rj.canFinalize(jobId));
        vm.warp(block.timestamp + 10 minutes + 1);
        assertTrue(rj.canFinalize(jobId), "quorum out of reach");
        rj.finalize(jobId);
        assertEq(rj.withdrawable(payer), FEE + BOND, "seat 0 never revealed, nobody did");
        _assertSolvent();
    }

    function test_NobodyCommits_AnyoneRefunds() public {
        uint256 jobId = _open(2, 3);
        vm.warp(block.timestamp + 10 minutes + 1);
        vm.prank(keeper);
        rj.finalize(jobId);
        assertEq(rj.withdrawable(payer), FEE);
        assertEq(address(rj).balance, FEE);
    }

    // ---------------------------------------------------------------- access and inputs

    function test_NodeChecks() public {
        uint256 jobId = _open(2, 3);
        address stranger = makeAddr("stranger");
        vm.deal(stranger, 1 ether);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.NodeNotStaked.selector, stranger));
        rj.commit{value: BOND}(jobId, bytes32(uint256(1)));

        vm.prank(seat[0]);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.ValueMismatch.selector, BOND, 1));
        rj.commit{value: 1}(jobId, bytes32(uint256(1)));

        vm.prank(seat[0]);
        vm.expectRevert(IRedundantJobs.ZeroHash.selector);
        rj.commit{value: BOND}(jobId, bytes32(0));

        vm.prank(seat[4]);
        nodes.removeModel(modelId);
        vm.prank(seat[4]);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.ModelNotServed.selector, seat[4], modelId));
        rj.commit{value: BOND}(jobId, bytes32(uint256(1)));

        vm.prank(seat[3]);
        nodes.setModelPrice(modelId, FEE / 3 + 1);
        vm.prank(seat[3]);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.PriceAboveShare.selector, seat[3], FEE / 3 + 1, FEE / 3));
        rj.commit{value: BOND}(jobId, bytes32(uint256(1)));

        vm.prank(seat[2]);
        nodes.requestUnbond(10 ether);
        vm.prank(seat[2]);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.NodeNotStaked.selector, seat[2]));
        rj.commit{value: BOND}(jobId, bytes32(uint256(1)));
    }

    function test_SubmitChecks() public {
        IRedundantJobs.Request memory r = _req(2, 3);
        vm.startPrank(payer);
        vm.expectRevert(IRedundantJobs.ZeroFee.selector);
        rj.submit(r);
        r.bond = FEE / 3 - 1;
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.BondTooLow.selector, FEE / 3 - 1, FEE / 3));
        rj.submit{value: FEE}(r);
        r = _req(2, 3);
        r.inputHash = bytes32(uint256(7));
        vm.expectRevert(
            abi.encodeWithSelector(IRedundantJobs.InputHashMismatch.selector, bytes32(uint256(7)), keccak256(INPUT))
        );
        rj.submit{value: FEE}(r);
        r = _req(2, 3);
        r.input = "";
        vm.expectRevert(IRedundantJobs.MissingInput.selector);
        rj.submit{value: FEE}(r);
        r = _req(2, 3);
        r.revealDeadline = r.commitDeadline;
        vm.expectRevert(
            abi.encodeWithSelector(
                IRedundantJobs.InvalidRevealDeadline.selector,
                r.commitDeadline,
                uint256(r.commitDeadline) + 1,
                block.timestamp + 30 days
            )
        );
        rj.submit{value: FEE}(r);
        r = _req(2, 3);
        r.commitDeadline = uint40(block.timestamp);
        vm.expectRevert(
            abi.encodeWithSelector(IRedundantJobs.DeadlineInPast.selector, block.timestamp, block.timestamp)
        );
        rj.submit{value: FEE}(r);
        r = _req(2, 3);
        r.modelId = bytes32(uint256(5));
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.ModelNotRegistered.selector, bytes32(uint256(5))));
        rj.submit{value: FEE}(r);
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.JobNotFound.selector, 99));
        rj.finalize(99);
        vm.expectRevert(abi.encodeWithSelector(IRedundantJobs.NothingToWithdraw.selector, address(this)));
        rj.withdraw();
    }

    // ---------------------------------------------------------------- fuzz: solvency

    /// @notice Random k-of-n jobs (n ≤ 5), random answers and reveal patterns, random timing:
    ///         after every step the contract's ETH equals what it owes; after finalize and
    ///         all withdrawals it holds nothing and the money is conserved.
    function testFuzz_BalanceEqualsOwed(uint8 nRaw, uint8 kRaw, uint96 feeRaw, uint256 answers, uint256 seed) public {
        uint8 n = uint8(bound(nRaw, 1, 5));
        uint8 k = uint8(bound(kRaw, n / 2 + 1, n));
        uint96 fee = uint96(bound(feeRaw, 5 * PRICE, BOND));
        uint256 jobId = _open(k, n, fee);
        _assertSolvent();
        uint256 commits = bound(seed, 0, n);
        for (uint256 i; i < commits; ++i) {
            _commit(jobId, i, (answers >> i) & 1 == 0 ? GOOD : BAD);
            _assertSolvent();
        }
        if (commits < n) vm.warp(block.timestamp + 10 minutes + 1);
        for (uint256 i; i < commits; ++i) {
            if ((seed >> (8 + i)) & 1 == 1) continue; // this seat stays silent
            _reveal(jobId, i, (answers >> i) & 1 == 0 ? GOOD : BAD);
            _assertSolvent();
        }
        if (!rj.canFinalize(jobId)) vm.warp(block.timestamp + 21 minutes);
        rj.finalize(jobId);
        _assertSolvent();

        uint256 total;
        address[] memory accounts = new address[](n + 1);
        accounts[n] = payer;
        for (uint256 i; i < n; ++i) {
            accounts[i] = seat[i];
        }
        for (uint256 i; i <= n; ++i) {
            uint256 amount = rj.withdrawable(accounts[i]);
            total += amount;
            if (amount != 0) {
                vm.prank(accounts[i]);
                rj.withdraw();
            }
            _assertSolvent();
        }
        assertEq(total, uint256(fee) + commits * BOND, "everything paid out");
        assertEq(address(rj).balance, 0);
    }
}
