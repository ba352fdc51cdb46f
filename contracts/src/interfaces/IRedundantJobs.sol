// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IRedundantJobs
/// @notice k-of-n redundant inference jobs agreed on chain with commit-reveal: n staked nodes
///         each post a bond and commit `keccak256(abi.encode(resultHash, salt, node))`; once all
///         n have committed (or the commit deadline has passed) they reveal; the result hash
///         revealed by at least k nodes wins. Agreeing nodes share the fee and get their bond
///         back; nodes that revealed another hash or never revealed lose their bond to the
///         payer. Without a quorum the payer is refunded and the bonds of nodes that never
///         revealed go to those that did. See docs/redundancy.md.
interface IRedundantJobs {
    /// @notice A redundant job's states.
    enum Status {
        None,
        Open,
        Settled,
        Refunded
    }

    /// @notice What a requester asks for; the fee is msg.value.
    struct Request {
        /// @notice ModelRegistry id of the model to run.
        bytes32 modelId;
        /// @notice keccak256 of the canonical input encoding.
        bytes32 inputHash;
        /// @notice The input bytes inline (checked against inputHash), or empty with inputURI.
        bytes input;
        /// @notice Content-addressed URI of the input when it is not inline.
        string inputURI;
        /// @notice Quorum: matching reveals needed for a result (2k > n).
        uint8 k;
        /// @notice Number of node seats (k ≤ n ≤ MAX_NODES).
        uint8 n;
        /// @notice Bond each node posts with its commit, in wei (≥ fee / n, > 0).
        uint96 bond;
        /// @notice Last time (unix seconds) a node may commit.
        uint40 commitDeadline;
        /// @notice Last time (unix seconds) a node may reveal (> commitDeadline).
        uint40 revealDeadline;
    }

    /// @notice A redundant job as stored (5 slots).
    struct Job {
        address payer;
        Status status;
        uint8 k;
        uint8 n;
        uint8 commits;
        uint8 reveals;
        uint40 commitDeadline;
        uint40 revealDeadline;
        uint96 fee;
        uint96 bond;
        bytes32 modelId;
        bytes32 inputHash;
        /// @notice The hash that first reached k reveals (zero until then).
        bytes32 winner;
    }

    /// @notice A node's seat in a job.
    struct Seat {
        /// @notice keccak256(abi.encode(resultHash, salt, node)); zero: no seat.
        bytes32 commitment;
        /// @notice The revealed result hash; zero: not revealed.
        bytes32 revealed;
    }

    // ---------------------------------------------------------------- events

    /// @notice Job `jobId` was submitted by `payer` with escrow `fee`.
    event RedundantJobSubmitted(
        uint256 indexed jobId,
        address indexed payer,
        bytes32 indexed modelId,
        bytes32 inputHash,
        bytes input,
        string inputURI,
        uint256 fee,
        uint8 k,
        uint8 n,
        uint256 bond,
        uint256 commitDeadline,
        uint256 revealDeadline
    );
    /// @notice `node` took seat number `commits` of job `jobId` with `commitment`.
    event Committed(uint256 indexed jobId, address indexed node, bytes32 commitment, uint256 commits);
    /// @notice `node` revealed `resultHash` (and, if not empty, the output) for job `jobId`.
    event Revealed(uint256 indexed jobId, address indexed node, bytes32 resultHash, bytes output);
    /// @notice Job `jobId` settled on `resultHash`: `agreeing` nodes got `share` each; `slashed`
    ///         wei of bonds (and the fee's rounding dust) went to the payer.
    event RedundantJobSettled(
        uint256 indexed jobId, bytes32 resultHash, uint256 agreeing, uint256 share, uint256 slashed
    );
    /// @notice Job `jobId` reached no quorum: `refund` (the fee) went back to the payer;
    ///         `slashed` (bonds of nodes that never revealed) was split among the nodes that
    ///         revealed (to the payer if none did).
    event RedundantJobRefunded(uint256 indexed jobId, uint256 refund, uint256 slashed);
    /// @notice `node` lost its `bond` in job `jobId` (another hash, or no reveal).
    event BondSlashed(uint256 indexed jobId, address indexed node, uint256 bond);
    /// @notice `account` withdrew `amount` wei.
    event Withdrawal(address indexed account, uint256 amount);

    // ---------------------------------------------------------------- errors

    /// @notice Model `modelId` is not registered.
    error ModelNotRegistered(bytes32 modelId);
    /// @notice The fee (msg.value) is zero.
    error ZeroFee();
    /// @notice The bond is below fee / n: a requester's own nodes could then take seats,
    ///         never reveal, and read the honest nodes' revealed output for little.
    error BondTooLow(uint256 bond, uint256 minimum);
    /// @notice k and n must satisfy 1 ≤ k ≤ n ≤ `maxNodes` and 2k > n (one possible winner).
    error InvalidQuorum(uint256 k, uint256 n, uint256 maxNodes);
    /// @notice The commit deadline is not in the future.
    error DeadlineInPast(uint256 deadline, uint256 nowTs);
    /// @notice The reveal deadline is not after the commit deadline, or too far ahead.
    error InvalidRevealDeadline(uint256 revealDeadline, uint256 earliest, uint256 latest);
    /// @notice keccak256(input) differs from the declared input hash.
    error InputHashMismatch(bytes32 declared, bytes32 actual);
    /// @notice Neither inline input nor an input URI was given.
    error MissingInput();
    /// @notice Job `jobId` does not exist.
    error JobNotFound(uint256 jobId);
    /// @notice Job `jobId` is settled or refunded.
    error JobClosed(uint256 jobId, Status status);
    /// @notice msg.value differs from what the call needs.
    error ValueMismatch(uint256 expected, uint256 actual);
    /// @notice The commit deadline of job `jobId` has passed.
    error CommitClosed(uint256 jobId, uint256 commitDeadline);
    /// @notice All n seats of job `jobId` are taken.
    error JobFull(uint256 jobId, uint256 n);
    /// @notice `node` already holds a seat in job `jobId`.
    error AlreadyCommitted(uint256 jobId, address node);
    /// @notice A zero commitment or zero result hash.
    error ZeroHash();
    /// @notice `node` does not serve model `modelId` in the NodeRegistry.
    error ModelNotServed(address node, bytes32 modelId);
    /// @notice `node` is not registered with at least the registry's minimum bonded stake.
    error NodeNotStaked(address node);
    /// @notice `node`'s price for the model is above the per-node share fee / n.
    error PriceAboveShare(address node, uint256 price, uint256 share);
    /// @notice `node` holds no seat in job `jobId`.
    error NotCommitted(uint256 jobId, address node);
    /// @notice `node` already revealed in job `jobId`.
    error AlreadyRevealed(uint256 jobId, address node);
    /// @notice Reveals open when all n have committed or after the commit deadline.
    error RevealNotOpen(uint256 jobId, uint256 commits, uint256 commitDeadline);
    /// @notice The reveal deadline of job `jobId` has passed.
    error RevealClosed(uint256 jobId, uint256 revealDeadline);
    /// @notice (resultHash, salt, msg.sender) does not open the node's commitment.
    error CommitmentMismatch(uint256 jobId, address node);
    /// @notice keccak256(output) differs from the revealed result hash.
    error OutputHashMismatch(bytes32 declared, bytes32 actual);
    /// @notice Job `jobId` cannot be finalized yet (reveals pending before the deadline).
    error NotReady(uint256 jobId);
    /// @notice `account` has nothing to withdraw.
    error NothingToWithdraw(address account);
    /// @notice Sending `amount` wei to `to` failed.
    error TransferFailed(address to, uint256 amount);
    /// @notice A constructor address is zero.
    error ZeroAddress();

    // ---------------------------------------------------------------- functions

    /// @notice Opens a redundant job; msg.value is the fee split among the agreeing nodes.
    function submit(Request calldata request) external payable returns (uint256 jobId);
    /// @notice Takes a seat in job `jobId` with `commitment`; msg.value must equal the bond.
    function commit(uint256 jobId, bytes32 commitment) external payable;
    /// @notice Opens msg.sender's commitment with (resultHash, salt); `output` is optional.
    function reveal(uint256 jobId, bytes32 resultHash, bytes32 salt, bytes calldata output) external;
    /// @notice Settles or refunds job `jobId` once its outcome is fixed; anyone.
    function finalize(uint256 jobId) external;
    /// @notice Sends msg.sender's whole withdrawable balance.
    function withdraw() external;

    /// @notice The commitment a node must post: keccak256(abi.encode(resultHash, salt, node)).
    function commitmentOf(bytes32 resultHash, bytes32 salt, address node) external pure returns (bytes32);
    /// @notice Job `jobId`.
    function getJob(uint256 jobId) external view returns (Job memory);
    /// @notice The nodes holding seats of job `jobId`, in commit order.
    function nodesOf(uint256 jobId) external view returns (address[] memory);
    /// @notice `node`'s seat in job `jobId`.
    function seatOf(uint256 jobId, address node) external view returns (Seat memory);
    /// @notice Whether `finalize(jobId)` would succeed now.
    function canFinalize(uint256 jobId) external view returns (bool);
    /// @notice Wei the contract owes: open jobs' fees and bonds plus all withdrawable balances.
    function totalOwed() external view returns (uint256);
    /// @notice Number of jobs; the last id (ids start at 1).
    function jobCount() external view returns (uint256);
    /// @notice Withdrawable balance of `account`.
    function withdrawable(address account) external view returns (uint256);
}
