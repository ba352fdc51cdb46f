// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IModelRegistry} from "./IModelRegistry.sol";
import {IZkVerification} from "./IZkVerification.sol";

/// @title IJobMarket
/// @notice Inference jobs: escrow at submit, claim by a staked node, result commit with a
///         consumer callback, and settlement that any caller can trigger once its time has come.
interface IJobMarket {
    /// @notice Job states; the Python index mirrors this enum (market.chain.types.JobStatus).
    enum JobStatus {
        None,
        Open,
        Claimed,
        Committed,
        Disputed,
        Settled,
        Slashed,
        Cancelled,
        Expired
    }

    /// @notice How a result is checked. `submitJob(s)` take None; `submitZkJob` takes ZkSpot
    ///         and ZkFull (checked by the ZkVerification module); Redundant is not supported yet.
    enum VerificationMode {
        None,
        ZkSpot,
        ZkFull,
        Redundant
    }

    /// @notice What a requester asks for.
    struct JobRequest {
        /// @notice ModelRegistry id of the model to run.
        bytes32 modelId;
        /// @notice keccak256 of the canonical input encoding.
        bytes32 inputHash;
        /// @notice The input bytes inline (checked against inputHash), or empty with inputURI.
        bytes input;
        /// @notice Content-addressed URI of the input when it is not inline.
        string inputURI;
        /// @notice Escrow: the most the requester pays.
        uint96 maxFee;
        /// @notice Latest time (unix seconds) for the result commit.
        uint40 deadline;
        /// @notice Verification mode.
        VerificationMode mode;
        /// @notice Contract to call with the result (zero: no callback).
        address callback;
        /// @notice Gas forwarded to the callback (0: no callback).
        uint32 callbackGasLimit;
        /// @notice Zero: pay from msg.value. Otherwise: pay from this agent's vault account
        ///         (msg.sender must be the agent or one of its authorized spenders).
        address vaultAgent;
    }

    /// @notice A job as stored (packed into 7 slots).
    struct Job {
        address payer;
        JobStatus status;
        VerificationMode mode;
        bool fromVault;
        uint40 deadline;
        uint32 callbackGasLimit;
        address node;
        uint40 windowEnd;
        uint16 feeBps;
        address callback;
        uint96 maxFee;
        uint96 price;
        uint96 collateral;
        bytes32 modelId;
        bytes32 inputHash;
        bytes32 resultHash;
    }

    event JobSubmitted(
        uint256 indexed jobId,
        address indexed payer,
        bytes32 indexed modelId,
        bytes32 inputHash,
        bytes input,
        string inputURI,
        uint256 maxFee,
        uint256 deadline,
        VerificationMode mode,
        address callback,
        uint32 callbackGasLimit,
        bool fromVault
    );
    event JobClaimed(uint256 indexed jobId, address indexed node, uint256 price, uint256 collateral);
    event ResultCommitted(
        uint256 indexed jobId,
        address indexed node,
        bytes32 resultHash,
        bytes output,
        string outputURI,
        uint256 windowEnd
    );
    event CallbackFailed(uint256 indexed jobId, address indexed callback);
    event JobFinalized(uint256 indexed jobId, address indexed node, uint256 nodePayout, uint256 fee, uint256 refund);
    event JobExpired(
        uint256 indexed jobId, uint256 refund, uint256 slashed, uint256 compensation, address indexed caller
    );
    event JobCancelled(uint256 indexed jobId, uint256 refund);
    event Withdrawal(address indexed account, uint256 amount);
    event FeeSet(uint256 feeBps);
    event TreasurySet(address indexed treasury);
    /// @notice The zk verification module was bound (once).
    event VerificationSet(address indexed verification);
    /// @notice The verification module put job `jobId` in dispute (Committed -> Disputed).
    event JobDisputed(uint256 indexed jobId);
    /// @notice Job `jobId`'s disputes were resolved in the node's favour (Disputed -> Committed).
    event JobDisputeCleared(uint256 indexed jobId);
    /// @notice Job `jobId` failed its verification: the whole escrow `refund` back to the payer,
    ///         `slashed` collateral split into `compensation` for the payer and the rest for
    ///         `beneficiary` (who proved the fault: the caller of the slash, or the disputer).
    event JobSlashed(
        uint256 indexed jobId, uint256 refund, uint256 slashed, uint256 compensation, address indexed beneficiary
    );

    /// @notice Open job `jobId` was answered by `node` from its result cache with the result of
    ///         settled job `refJobId` (same model and input), at the node's cache price.
    event JobAnsweredFromCache(uint256 indexed jobId, uint256 indexed refJobId, address indexed node, uint256 price);

    error JobNotFound(uint256 jobId);
    error InvalidJobStatus(uint256 jobId, JobStatus status);
    error ModelNotRegistered(bytes32 modelId);
    error InputHashMismatch(bytes32 expected, bytes32 actual);
    error OutputHashMismatch(bytes32 expected, bytes32 actual);
    error MissingInput();
    error MissingOutput();
    error ZeroFee();
    error ValueMismatch(uint256 expected, uint256 actual);
    error DeadlineInPast(uint256 deadline, uint256 nowTs);
    error DeadlineTooFar(uint256 deadline, uint256 latest);
    error UnsupportedVerificationMode(VerificationMode mode);
    error CallbackGasTooHigh(uint32 gasLimit, uint32 maximum);
    error DeadlinePassed(uint256 jobId, uint256 deadline);
    error DeadlineNotPassed(uint256 jobId, uint256 deadline);
    error WindowNotOver(uint256 jobId, uint256 windowEnd);
    error NotPayer(uint256 jobId, address caller);
    error NotClaimer(uint256 jobId, address caller);
    error PriceAboveMaxFee(uint256 jobId, uint256 price, uint256 maxFee);
    error InsufficientGasForCallback(uint256 available, uint256 required);
    error NothingToWithdraw(address account);
    error TransferFailed(address to, uint256 amount);
    error FeeTooHigh(uint256 feeBps, uint256 maximum);
    error ZeroAddress();
    error LengthMismatch(uint256 a, uint256 b);
    error UnexpectedETH(address from);
    /// @notice A basis-point parameter is above its maximum (constructor: slashPayerBps ≤ 10,000).
    error BpsTooHigh(uint256 bps, uint256 maximum);
    /// @notice A duration parameter is above its maximum (constructor: challengeWindow, maxJobDuration).
    error DurationTooLong(uint256 duration, uint256 maximum);
    /// @notice No zk verification module is bound, so zk jobs cannot be submitted.
    error VerificationNotSet();
    /// @notice The verification module is already bound to `verification`.
    error VerificationAlreadySet(address verification);
    /// @notice `verification` verifies for `itsMarket`, not for this market.
    error VerificationNotBound(address verification, address itsMarket);
    /// @notice `caller` is not the verification module.
    error NotVerification(address caller);
    /// @notice Job `jobId` has mode `mode`: zk jobs commit with `commitZkResult` (boundary
    ///         hashes), other jobs with `commitResult(s)`.
    error VerificationModeMismatch(uint256 jobId, VerificationMode mode);
    /// @notice Zk job `jobId`'s verification is not satisfied yet (proofs or attestation).
    error NotVerified(uint256 jobId);
    /// @notice Reference job `refJobId` has another model or input hash than job `jobId`.
    error CacheReferenceMismatch(uint256 jobId, uint256 refJobId);
    /// @notice `node` does not answer `modelId` jobs from its cache (NodeRegistry.cachePriceOf).
    error CacheNotOffered(address node, bytes32 modelId);

    // ---------------------------------------------------------------- requester
    function submitJob(JobRequest calldata request) external payable returns (uint256 jobId);
    /// @notice Submits several jobs; msg.value must equal the sum of maxFee of those not paid from a vault.
    function submitJobs(JobRequest[] calldata requests) external payable returns (uint256 firstJobId);
    /// @notice Submits a zk job (`request.mode` ZkSpot or ZkFull), paid like `submitJob`;
    ///         `params` go to the verification module.
    function submitZkJob(JobRequest calldata request, IZkVerification.ZkParams calldata params)
        external
        payable
        returns (uint256 jobId);
    function cancel(uint256 jobId) external;

    // ---------------------------------------------------------------- node
    function claimJob(uint256 jobId) external;
    function claimJobs(uint256[] calldata jobIds) external;
    function commitResult(uint256 jobId, bytes32 resultHash, bytes calldata output, string calldata outputURI) external;
    function commitResults(
        uint256[] calldata jobIds,
        bytes32[] calldata resultHashes,
        bytes[] calldata outputs,
        string[] calldata outputURIs
    ) external;
    /// @notice Commits a zk job's result with its k + 1 boundary hashes (claimer only, by the
    ///         deadline); the module checks and records them, then the consumer is called.
    function commitZkResult(
        uint256 jobId,
        bytes32 resultHash,
        bytes calldata output,
        string calldata outputURI,
        uint256[] calldata boundaryHashes
    ) external;

    /// @notice Answers Open job `jobId` at once with the result of Settled job `refJobId` (same
    ///         model and input hash), at msg.sender's cache price: the job settles in the same
    ///         call (no claim, no collateral, no window), then the consumer is called.
    function answerFromCache(uint256 jobId, uint256 refJobId, bytes calldata output, string calldata outputURI) external;

    // ---------------------------------------------------------------- verification module
    /// @notice Slashes a Committed or Disputed job's node for a failed verification (module
    ///         only): escrow refunded, collateral split between the payer and `beneficiary`.
    function slashJob(uint256 jobId, address beneficiary) external returns (uint256 slashed);
    /// @notice Moves a job Committed -> Disputed (`disputed`) or back (module only).
    function setDisputed(uint256 jobId, bool disputed) external;

    // ---------------------------------------------------------------- anyone
    function finalize(uint256 jobId) external;
    /// @notice Finalizes those of `jobIds` that can be; skips the others (no revert), returns how many settled.
    function finalizeMany(uint256[] calldata jobIds) external returns (uint256 settled);
    function expire(uint256 jobId) external;
    /// @notice Expires those of `jobIds` that can be; skips the others, returns how many expired.
    function expireMany(uint256[] calldata jobIds) external returns (uint256 expired);
    function withdraw() external;

    // ---------------------------------------------------------------- owner
    function setFeeBps(uint16 feeBps) external;
    function setTreasury(address treasury) external;
    /// @notice Binds the zk verification module, once (its `market()` must be this market).
    function setVerification(IZkVerification verification) external;

    // ---------------------------------------------------------------- views
    function getJob(uint256 jobId) external view returns (Job memory);
    function jobCount() external view returns (uint256);
    function withdrawable(address account) external view returns (uint256);
    function collateralFor(uint256 maxFee) external view returns (uint256);
    /// @notice maxJobDuration + challengeWindow: the longest a claimed job can keep collateral locked.
    function longestWindow() external view returns (uint256);
    function challengeWindow() external view returns (uint256);
    function maxJobDuration() external view returns (uint256);
    function feeBps() external view returns (uint16);
    function treasury() external view returns (address);
    function totalEscrow() external view returns (uint256);
    /// @notice The zk verification module (zero until `setVerification`).
    function verification() external view returns (IZkVerification);
    /// @notice The model registry the market checks models against.
    function modelRegistry() external view returns (IModelRegistry);
}
