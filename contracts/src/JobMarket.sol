// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IJobConsumer} from "./interfaces/IJobConsumer.sol";
import {IJobMarket} from "./interfaces/IJobMarket.sol";
import {IModelRegistry} from "./interfaces/IModelRegistry.sol";
import {INodeRegistry} from "./interfaces/INodeRegistry.sol";
import {IPaymentVault} from "./interfaces/IPaymentVault.sol";
import {IZkVerification} from "./interfaces/IZkVerification.sol";

/// @title JobMarket
/// @notice Inference jobs between requesters (agents, their keys, their vault accounts) and
///         staked nodes: escrow at submit, claim with collateral, result commit with a consumer
///         callback, and settlement (finalize, expire) that anyone can trigger once its time has
///         come. Zk jobs (zk-spot, zk-full) are verified by the ZkVerification module bound
///         once with `setVerification`: it gates their finalize and asks for their slash. See
///         docs/protocol.md for the state machine, the money rules and the verification.
/// @dev Value leaves this contract only by `withdraw` (pull payments) or into the fixed
///      PaymentVault (`refund`) and NodeRegistry set at deployment; both are trusted.
///      Solvency: `address(this).balance == totalEscrow + Σ withdrawable` after every call.
///      Deadlines and windows compare against block.timestamp on purpose: they span minutes
///      to hours, and a validator can skew time by seconds only.
contract JobMarket is IJobMarket, Ownable2Step, ReentrancyGuardTransient {
    // ---------------------------------------------------------------- constants

    /// @notice Largest protocol fee, in basis points of the price (10%).
    uint16 public constant MAX_FEE_BPS = 1000;

    /// @notice Basis-point denominator.
    uint256 internal constant BPS = 10_000;

    /// @notice Longest `challengeWindow` or `maxJobDuration` the constructor accepts.
    /// @dev Keeps `block.timestamp + duration` far inside uint40 and `longestWindow` bounded.
    uint256 public constant MAX_DURATION = 365 days;

    /// @notice Gas kept back, on top of a callback's limit, for the CALL itself (a cold
    ///         account access costs 2,600) and the few instructions before it.
    uint256 public constant CALLBACK_GAS_OVERHEAD = 5000;

    // ---------------------------------------------------------------- immutables

    /// @notice Stakes, served models and prices of nodes; holds claim collateral.
    INodeRegistry public immutable nodeRegistry;

    /// @notice Registered models; a job's model must be registered at submit.
    IModelRegistry public immutable modelRegistry;

    /// @notice Purpose-bound agent budgets; pays escrow of vault-funded jobs, takes refunds.
    IPaymentVault public immutable paymentVault;

    /// @inheritdoc IJobMarket
    uint256 public immutable challengeWindow;

    /// @inheritdoc IJobMarket
    uint256 public immutable maxJobDuration;

    /// @notice Collateral a claim locks, in basis points of the job's maxFee (may exceed 100%).
    uint16 public immutable collateralBps;

    /// @notice Floor of the collateral a claim locks, in wei.
    uint96 public immutable minJobCollateral;

    /// @notice Share of a slashed collateral paid to the harmed payer, in basis points; the
    ///         rest rewards the caller of `expire`.
    uint16 public immutable slashPayerBps;

    /// @notice Largest callback gas limit a requester may ask for.
    uint32 public immutable maxCallbackGas;

    // ---------------------------------------------------------------- state

    /// @notice Number of jobs submitted; the last job id (ids start at 1).
    /// @dev Packed with `_totalEscrow`: a submit writes both in one slot, and the slot never
    ///      returns to zero (which would make the next submit pay for a fresh slot).
    uint128 internal _jobCount;

    /// @notice Sum of the escrow (maxFee) of all non-terminal jobs, in wei.
    uint128 internal _totalEscrow;

    /// @inheritdoc IJobMarket
    address public treasury;

    /// @inheritdoc IJobMarket
    /// @dev Snapshot into each job at submit; changing it does not touch existing jobs.
    uint16 public feeBps;

    /// @inheritdoc IJobMarket
    mapping(address account => uint256 amount) public withdrawable;

    /// @notice The jobs, by id (1-indexed; id 0 never exists).
    mapping(uint256 jobId => Job job) internal _jobs;

    /// @inheritdoc IJobMarket
    /// @dev Set once by the owner; zero until then (zk jobs are refused).
    IZkVerification public verification;

    // ---------------------------------------------------------------- modifiers

    /// @notice Reverts NotVerification unless msg.sender is the bound verification module.
    modifier onlyVerification() {
        if (msg.sender != address(verification)) revert NotVerification(msg.sender);
        _;
    }

    // ---------------------------------------------------------------- constructor

    /// @notice Deploys the market bound to its registries and vault; the deployer owns it.
    /// @param nodes NodeRegistry (binds to this market with `setMarket` afterwards).
    /// @param models ModelRegistry.
    /// @param vault PaymentVault (binds to this market with `setMarket` afterwards).
    /// @param treasury_ Receiver of protocol fees.
    /// @param feeBps_ Protocol fee in basis points of the price (≤ MAX_FEE_BPS).
    /// @param challengeWindow_ Seconds between a commit and the earliest finalize.
    /// @param maxJobDuration_ Longest time between a submit and the job's deadline.
    /// @param collateralBps_ Claim collateral in basis points of maxFee.
    /// @param minJobCollateral_ Floor of the claim collateral in wei (fits in uint96).
    /// @param slashPayerBps_ Payer's share of slashed collateral in basis points (≤ 10,000).
    /// @param maxCallbackGas_ Largest callback gas limit a requester may set.
    constructor(
        INodeRegistry nodes,
        IModelRegistry models,
        IPaymentVault vault,
        address treasury_,
        uint16 feeBps_,
        uint256 challengeWindow_,
        uint256 maxJobDuration_,
        uint16 collateralBps_,
        uint256 minJobCollateral_,
        uint16 slashPayerBps_,
        uint32 maxCallbackGas_
    ) Ownable(msg.sender) {
        if (
            address(nodes) == address(0) || address(models) == address(0) || address(vault) == address(0)
                || treasury_ == address(0)
        ) revert ZeroAddress();
        if (feeBps_ > MAX_FEE_BPS) revert FeeTooHigh(feeBps_, MAX_FEE_BPS);
        if (slashPayerBps_ > BPS) revert BpsTooHigh(slashPayerBps_, BPS);
        if (challengeWindow_ > MAX_DURATION) revert DurationTooLong(challengeWindow_, MAX_DURATION);
        if (maxJobDuration_ > MAX_DURATION) revert DurationTooLong(maxJobDuration_, MAX_DURATION);

        nodeRegistry = nodes;
        modelRegistry = models;
        paymentVault = vault;
        challengeWindow = challengeWindow_;
        maxJobDuration = maxJobDuration_;
        collateralBps = collateralBps_;
        minJobCollateral = SafeCast.toUint96(minJobCollateral_);
        slashPayerBps = slashPayerBps_;
        maxCallbackGas = maxCallbackGas_;
        treasury = treasury_;
        feeBps = feeBps_;
        emit TreasurySet(treasury_);
        emit FeeSet(feeBps_);
    }

    // ---------------------------------------------------------------- receive

    /// @notice Takes ETH only from the registry (slashed collateral) and the vault (escrow
    ///         pulled for a vault-funded job); anything else would break the solvency
    ///         accounting, so it reverts.
    receive() external payable {
        if (msg.sender != address(nodeRegistry) && msg.sender != address(paymentVault)) {
            revert UnexpectedETH(msg.sender);
        }
    }

    // ---------------------------------------------------------------- internal

    /// @notice Reverts unless `job` is in `expected` status (JobNotFound for an unknown id).
    /// @param jobId The job's id, for the error.
    /// @param status The job's current status.
    /// @param expected The status the caller needs.
    function _requireStatus(uint256 jobId, JobStatus status, JobStatus expected) internal pure {
        if (status != expected) {
            if (status == JobStatus.None) revert JobNotFound(jobId);
            revert InvalidJobStatus(jobId, status);
        }
    }

    /// @notice Collateral for a job of `maxFee`: max(minJobCollateral, maxFee * collateralBps / 10,000).
    /// @param maxFee The job's escrow in wei.
    /// @return The collateral in wei.
    function _collateralFor(uint256 maxFee) internal view returns (uint256) {
        uint256 proportional = maxFee * collateralBps / BPS;
        return proportional > minJobCollateral ? proportional : minJobCollateral;
    }

    /// @notice Checks a request against the rules (model, fee, deadline, mode, callback gas,
    ///         input). Reverts with the first rule it breaks.
    /// @param request The request.
    /// @param zk Whether it comes through `submitZkJob` (mode ZkSpot or ZkFull) rather than
    ///        `submitJob(s)` (mode None).
    function _checkRequest(JobRequest calldata request, bool zk) internal view {
        if (!modelRegistry.isRegistered(request.modelId)) revert ModelNotRegistered(request.modelId);
        if (request.maxFee == 0) revert ZeroFee();
        // forge-lint: disable-next-line(block-timestamp)
        if (request.deadline <= block.timestamp) revert DeadlineInPast(request.deadline, block.timestamp);
        uint256 latest = block.timestamp + maxJobDuration;
        if (request.deadline > latest) revert DeadlineTooFar(request.deadline, latest);
        VerificationMode mode = request.mode;
        if (zk ? (mode != VerificationMode.ZkSpot && mode != VerificationMode.ZkFull) : mode != VerificationMode.None) {
            revert UnsupportedVerificationMode(mode);
        }
        if (request.callbackGasLimit > maxCallbackGas) {
            revert CallbackGasTooHigh(request.callbackGasLimit, maxCallbackGas);
        }
        if (request.input.length != 0) {
            bytes32 actual = keccak256(request.input);
            if (actual != request.inputHash) revert InputHashMismatch(request.inputHash, actual);
        } else if (bytes(request.inputURI).length == 0) {
            revert MissingInput();
        }
    }

    /// @notice Checks `request`, writes job `jobId` as Open and emits JobSubmitted. Counters
    ///         and the escrow transfer are the caller's.
    /// @param jobId The new job's id.
    /// @param request The request.
    /// @param currentFeeBps The fee snapshot for the job.
    /// @param zk Whether it is a zk job (see `_checkRequest`).
    /// @return fromVault Whether the escrow comes from the vault (else from msg.value).
    function _createJob(uint256 jobId, JobRequest calldata request, uint16 currentFeeBps, bool zk)
        internal
        returns (bool fromVault)
    {
        _checkRequest(request, zk);
        fromVault = request.vaultAgent != address(0);
        address payer = fromVault ? request.vaultAgent : msg.sender;

        Job storage job = _jobs[jobId];
        job.payer = payer;
        job.status = JobStatus.Open;
        job.fromVault = fromVault;
        job.deadline = request.deadline;
        job.callbackGasLimit = request.callbackGasLimit;
        if (zk) job.mode = request.mode; // otherwise None (checked): the slot's zero says so
        if (currentFeeBps != 0) job.feeBps = currentFeeBps;
        job.callback = request.callback;
        job.maxFee = request.maxFee;
        job.modelId = request.modelId;
        job.inputHash = request.inputHash;

        _emitSubmitted(jobId, payer, fromVault, request);
    }

    /// @notice Emits JobSubmitted (its own frame keeps the stack shallow).
    /// @param jobId The job.
    /// @param payer Who paid the escrow (the vault agent for a vault-funded job).
    /// @param fromVault Whether the escrow came from the vault.
    /// @param request The request.
    function _emitSubmitted(uint256 jobId, address payer, bool fromVault, JobRequest calldata request) internal {
        emit JobSubmitted(
            jobId,
            payer,
            request.modelId,
            request.inputHash,
            request.input,
            request.inputURI,
            request.maxFee,
            request.deadline,
            request.mode,
            request.callback,
            request.callbackGasLimit,
            fromVault
        );
    }

    /// @notice Pulls `request.maxFee` from the vault account of `request.vaultAgent`, with
    ///         msg.sender as the spending key.
    /// @param request The (vault-funded) request.
    function _pullFromVault(JobRequest calldata request) internal {
        paymentVault.pull(request.vaultAgent, msg.sender, request.modelId, request.maxFee);
    }

    /// @notice Claims job `jobId` for msg.sender at its declared price: checks, then writes
    ///         the job as Claimed and emits JobClaimed. Locking the collateral is the caller's.
    /// @param jobId The job.
    /// @return collateral The collateral to lock for the job.
    function _claim(uint256 jobId) internal returns (uint256 collateral) {
        Job storage job = _jobs[jobId];
        _requireStatus(jobId, job.status, JobStatus.Open);
        uint256 deadline = job.deadline;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp > deadline) revert DeadlinePassed(jobId, deadline);
        bytes32 modelId = job.modelId;
        (bool served, uint256 price) = nodeRegistry.priceOf(msg.sender, modelId);
        if (!served) revert INodeRegistry.ModelNotServed(msg.sender, modelId);
        uint256 maxFee = job.maxFee;
        if (price > maxFee) revert PriceAboveMaxFee(jobId, price, maxFee);
        collateral = _collateralFor(maxFee);

        job.status = JobStatus.Claimed;
        job.node = msg.sender;
        // forge-lint: disable-next-line(unsafe-typecast)
        job.price = uint96(price); // price <= maxFee, a uint96
        job.collateral = SafeCast.toUint96(collateral);
        emit JobClaimed(jobId, msg.sender, price, collateral);
    }

    /// @notice Commits msg.sender's result for job `jobId`: checks, then writes the job as
    ///         Committed and emits ResultCommitted. The callback is the caller's.
    /// @param jobId The job.
    /// @param resultHash keccak256 of the canonical output encoding.
    /// @param output The output inline (checked against resultHash), or empty with outputURI.
    /// @param outputURI Content-addressed URI of the output when it is not inline.
    /// @param zk Whether the commit carries boundary hashes (`commitZkResult`); it must
    ///        exactly when the job is a zk job.
    function _commit(uint256 jobId, bytes32 resultHash, bytes calldata output, string calldata outputURI, bool zk)
        internal
    {
        Job storage job = _jobs[jobId];
        _requireStatus(jobId, job.status, JobStatus.Claimed);
        VerificationMode mode = job.mode;
        if ((mode != VerificationMode.None) != zk) revert VerificationModeMismatch(jobId, mode);
        if (job.node != msg.sender) revert NotClaimer(jobId, msg.sender);
        uint256 deadline = job.deadline;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp > deadline) revert DeadlinePassed(jobId, deadline);
        if (output.length != 0) {
            bytes32 actual = keccak256(output);
            if (actual != resultHash) revert OutputHashMismatch(resultHash, actual);
        } else if (bytes(outputURI).length == 0) {
            revert MissingOutput();
        }

        uint256 windowEnd = block.timestamp + challengeWindow;
        job.status = JobStatus.Committed;
        job.windowEnd = SafeCast.toUint40(windowEnd);
        job.resultHash = resultHash;
        emit ResultCommitted(jobId, msg.sender, resultHash, output, outputURI, windowEnd);
    }

    /// @notice Calls the job's consumer with exactly its callback gas limit, after all state is
    ///         written. A reverting or gas-burning consumer only causes CallbackFailed; the call
    ///         copies no return data, so a return-data bomb costs the caller nothing.
    /// @dev Reverts InsufficientGasForCallback when the transaction cannot forward the full
    ///      limit (EIP-150 forwards at most 63/64 of what is left), so a node cannot starve a
    ///      consumer by sending too little gas.
    /// @param jobId The job.
    /// @param resultHash The committed result hash.
    /// @param output The inline output, or empty.
    function _callback(uint256 jobId, bytes32 resultHash, bytes calldata output) internal {
        Job storage job = _jobs[jobId];
        uint256 gasLimit = job.callbackGasLimit;
        address callback = job.callback;
        if (gasLimit == 0 || callback == address(0)) return;

        bytes memory data = abi.encodeCall(IJobConsumer.onJobResult, (jobId, resultHash, output));
        uint256 available = gasleft() * 63 / 64;
        uint256 required = gasLimit + CALLBACK_GAS_OVERHEAD;
        if (available < required) revert InsufficientGasForCallback(available, required);
        bool success;
        assembly ("memory-safe") {
            success := call(gasLimit, callback, 0, add(data, 0x20), mload(data), 0, 0)
        }
        if (!success) emit CallbackFailed(jobId, callback);
    }

    /// @notice Settles a Committed job whose window is over: price - fee to the node, fee to
    ///         the treasury, maxFee - price back to the payer, collateral unlocked.
    /// @dev Effects first; the only calls go to the fixed registry and vault.
    /// @param jobId The job.
    /// @param job The job's storage.
    function _finalize(uint256 jobId, Job storage job) internal {
        job.status = JobStatus.Settled;
        uint96 maxFee = job.maxFee;
        uint96 price = job.price;
        uint256 fee = uint256(price) * job.feeBps / BPS;
        uint256 nodePayout = price - fee;
        uint256 refund = maxFee - price;
        address node = job.node;
        address payer = job.payer;
        bool fromVault = job.fromVault;
        uint256 collateral = job.collateral;
        _totalEscrow -= maxFee;
        _credit(node, nodePayout);
        _credit(treasury, fee);
        if (!fromVault) _credit(payer, refund);
        emit JobFinalized(jobId, node, nodePayout, fee, refund);

        if (collateral != 0) nodeRegistry.unlockCollateral(node, collateral);
        if (fromVault && refund != 0) paymentVault.refund{value: refund}(payer);
    }

    /// @notice Expires an Open or Claimed job past its deadline: the whole escrow back to the
    ///         payer and, if claimed, the claimer's collateral slashed, split between the payer
    ///         (slashPayerBps) and msg.sender (the rest).
    /// @param jobId The job.
    /// @param job The job's storage.
    /// @param status The job's status (Open or Claimed).
    function _expire(uint256 jobId, Job storage job, JobStatus status) internal {
        job.status = JobStatus.Expired;
        (uint256 refund, uint256 slashed, uint256 compensation) =
            _refundEscrow(job, status == JobStatus.Claimed, msg.sender);
        emit JobExpired(jobId, refund, slashed, compensation, msg.sender);
        _refundVault(job, refund + compensation);
    }

    /// @notice Releases a failed job's escrow (its status already written): the whole escrow
    ///         to the payer and, with `slashNode`, the node's collateral slashed, split between
    ///         the payer (slashPayerBps, as compensation) and `beneficiary` (the rest). A
    ///         vault-funded payer's part is left for `_refundVault`.
    /// @dev The slashed amount is known only from the registry's answer, so the compensation
    ///      is credited after that (trusted, fixed) call.
    /// @param job The job's storage.
    /// @param slashNode Whether to slash the node's collateral.
    /// @param beneficiary Receiver of the non-payer share of the slash.
    /// @return refund The escrow refunded.
    /// @return slashed The collateral slashed.
    /// @return compensation The payer's share of `slashed`.
    function _refundEscrow(Job storage job, bool slashNode, address beneficiary)
        internal
        returns (uint256 refund, uint256 slashed, uint256 compensation)
    {
        uint96 maxFee = job.maxFee;
        refund = maxFee;
        _totalEscrow -= maxFee;
        if (slashNode) {
            slashed = nodeRegistry.slash(job.node, job.collateral);
            compensation = slashed * slashPayerBps / BPS;
            _credit(beneficiary, slashed - compensation);
        }
        if (!job.fromVault) _credit(job.payer, refund + compensation);
    }

    /// @notice Sends `amount` back to a vault-funded payer's account (after the job's event).
    /// @param job The job's storage.
    /// @param amount Wei (refund plus compensation).
    function _refundVault(Job storage job, uint256 amount) internal {
        if (job.fromVault) paymentVault.refund{value: amount}(job.payer);
    }

    /// @notice Adds `amount` to `account`'s withdrawable balance (skips zero).
    /// @param account The receiver.
    /// @param amount Wei.
    function _credit(address account, uint256 amount) internal {
        if (amount != 0) withdrawable[account] += amount;
    }

    // ---------------------------------------------------------------- external: requester

    /// @inheritdoc IJobMarket
    /// @dev Payer = msg.sender with msg.value == maxFee, or the vault agent when
    ///      `request.vaultAgent != 0` (msg.value must then be 0).
    function submitJob(JobRequest calldata request) external payable nonReentrant returns (uint256 jobId) {
        jobId = _submitOne(request, false);
    }

    /// @inheritdoc IJobMarket
    /// @dev As `submitJob`, for mode ZkSpot or ZkFull; the module then records `params` and
    ///      checks that every segment of the model has a verifier.
    function submitZkJob(JobRequest calldata request, IZkVerification.ZkParams calldata params)
        external
        payable
        nonReentrant
        returns (uint256 jobId)
    {
        IZkVerification module = verification;
        if (address(module) == address(0)) revert VerificationNotSet();
        jobId = _submitOne(request, true);
        module.onSubmit(jobId, request.modelId, request.mode, params);
    }

    /// @notice Submits one job (see `submitJob`), taking its escrow.
    /// @param request The request.
    /// @param zk Whether it is a zk job.
    /// @return jobId The new job's id.
    function _submitOne(JobRequest calldata request, bool zk) internal returns (uint256 jobId) {
        uint256 expectedValue = request.vaultAgent == address(0) ? request.maxFee : 0;
        if (msg.value != expectedValue) revert ValueMismatch(expectedValue, msg.value);

        uint128 newCount = _jobCount + 1;
        jobId = newCount;
        bool fromVault = _createJob(jobId, request, feeBps, zk);
        _jobCount = newCount;
        _totalEscrow += request.maxFee;

        if (fromVault) {
            uint256 balanceBefore = address(this).balance;
            _pullFromVault(request);
            uint256 received = address(this).balance - balanceBefore;
            if (received != request.maxFee) revert ValueMismatch(request.maxFee, received);
        }
    }

    /// @inheritdoc IJobMarket
    /// @dev Job ids are consecutive from `firstJobId`. An empty batch does nothing and returns
    ///      the id the next job will get.
    function submitJobs(JobRequest[] calldata requests) external payable nonReentrant returns (uint256 firstJobId) {
        uint256 count = _jobCount;
        firstJobId = count + 1;
        uint16 currentFeeBps = feeBps;
        uint256 fromValue;
        uint256 fromVaults;
        for (uint256 i; i < requests.length; ++i) {
            JobRequest calldata request = requests[i];
            if (_createJob(count + 1 + i, request, currentFeeBps, false)) fromVaults += request.maxFee;
            else fromValue += request.maxFee;
        }
        if (msg.value != fromValue) revert ValueMismatch(fromValue, msg.value);
        _jobCount = SafeCast.toUint128(count + requests.length);
        _totalEscrow += SafeCast.toUint128(fromValue + fromVaults);

        if (fromVaults != 0) {
            uint256 balanceBefore = address(this).balance;
            for (uint256 i; i < requests.length; ++i) {
                if (requests[i].vaultAgent != address(0)) _pullFromVault(requests[i]);
            }
            uint256 received = address(this).balance - balanceBefore;
            if (received != fromVaults) revert ValueMismatch(fromVaults, received);
        }
    }

    /// @inheritdoc IJobMarket
    /// @dev Payer only, while Open (also after the deadline). The whole escrow goes back.
    function cancel(uint256 jobId) external nonReentrant {
        Job storage job = _jobs[jobId];
        _requireStatus(jobId, job.status, JobStatus.Open);
        address payer = job.payer;
        if (msg.sender != payer) revert NotPayer(jobId, msg.sender);

        job.status = JobStatus.Cancelled;
        uint96 refund = job.maxFee;
        bool fromVault = job.fromVault;
        _totalEscrow -= refund;
        if (!fromVault) _credit(payer, refund);
        emit JobCancelled(jobId, refund);

        if (fromVault) paymentVault.refund{value: refund}(payer);
    }

    // ---------------------------------------------------------------- external: node

    /// @inheritdoc IJobMarket
    /// @dev Open job, until its deadline (inclusive); msg.sender must serve the model at a
    ///      price ≤ maxFee and have `collateralFor(maxFee)` free stake, which is locked.
    function claimJob(uint256 jobId) external {
        uint256 collateral = _claim(jobId);
        nodeRegistry.lockCollateral(msg.sender, collateral);
    }

    /// @inheritdoc IJobMarket
    /// @dev All or nothing; the collateral of the whole batch is locked in one call.
    function claimJobs(uint256[] calldata jobIds) external {
        uint256 collateral;
        for (uint256 i; i < jobIds.length; ++i) {
            collateral += _claim(jobIds[i]);
        }
        if (collateral != 0) nodeRegistry.lockCollateral(msg.sender, collateral);
    }

    /// @inheritdoc IJobMarket
    /// @dev Claimer only, until the deadline (inclusive). Starts the challenge window, then
    ///      calls the consumer (see `_callback`). Deliberately not nonReentrant: a consumer may
    ///      submit a follow-up job from its callback, and every state change is written before
    ///      the call, so a re-entered function sees the job as Committed.
    function commitResult(uint256 jobId, bytes32 resultHash, bytes calldata output, string calldata outputURI)
        external
    {
        _commit(jobId, resultHash, output, outputURI, false);
        _callback(jobId, resultHash, output);
    }

    /// @inheritdoc IJobMarket
    /// @dev As `commitResult` (not nonReentrant, for the same reason); the module checks and
    ///      records the boundary hashes before the consumer is called.
    function commitZkResult(
        uint256 jobId,
        bytes32 resultHash,
        bytes calldata output,
        string calldata outputURI,
        uint256[] calldata boundaryHashes
    ) external {
        _commit(jobId, resultHash, output, outputURI, true);
        verification.onCommit(jobId, boundaryHashes);
        _callback(jobId, resultHash, output);
    }

    /// @inheritdoc IJobMarket
    /// @dev All or nothing. Every job's state is written before the first callback runs.
    function commitResults(
        uint256[] calldata jobIds,
        bytes32[] calldata resultHashes,
        bytes[] calldata outputs,
        string[] calldata outputURIs
    ) external {
        uint256 n = jobIds.length;
        if (resultHashes.length != n) revert LengthMismatch(n, resultHashes.length);
        if (outputs.length != n) revert LengthMismatch(n, outputs.length);
        if (outputURIs.length != n) revert LengthMismatch(n, outputURIs.length);
        for (uint256 i; i < n; ++i) {
            _commit(jobIds[i], resultHashes[i], outputs[i], outputURIs[i], false);
        }
        for (uint256 i; i < n; ++i) {
            _callback(jobIds[i], resultHashes[i], outputs[i]);
        }
    }

    /// @inheritdoc IJobMarket
    /// @dev Mode None jobs only, until the deadline (inclusive). The reference must be Settled
    ///      (its window passed undisputed, or its verification held), so the answer is a result
    ///      the market already accepted for the same model and input; the output is checked
    ///      against the reference's result hash. Not nonReentrant, like `commitResult`: the job
    ///      is settled before the consumer is called.
    function answerFromCache(uint256 jobId, uint256 refJobId, bytes calldata output, string calldata outputURI)
        external
    {
        Job storage job = _jobs[jobId];
        bytes32 resultHash = _cacheReference(jobId, job, refJobId);
        if (output.length != 0) {
            bytes32 actual = keccak256(output);
            if (actual != resultHash) revert OutputHashMismatch(resultHash, actual);
        } else if (bytes(outputURI).length == 0) {
            revert MissingOutput();
        }
        (bool offered, uint256 price) = nodeRegistry.cachePriceOf(msg.sender, job.modelId);
        if (!offered) revert CacheNotOffered(msg.sender, job.modelId);
        if (price > job.maxFee) revert PriceAboveMaxFee(jobId, price, job.maxFee);

        job.node = msg.sender;
        // forge-lint: disable-next-line(unsafe-typecast)
        job.price = uint96(price); // price <= maxFee, a uint96
        job.resultHash = resultHash;
        emit ResultCommitted(jobId, msg.sender, resultHash, output, outputURI, block.timestamp);
        emit JobAnsweredFromCache(jobId, refJobId, msg.sender, price);
        _finalize(jobId, job);
        _callback(jobId, resultHash, output);
    }

    /// @notice Checks that Open mode-None job `jobId` (before its deadline) may be answered
    ///         from Settled job `refJobId` of the same model and input.
    /// @param jobId The job to answer.
    /// @param job Its storage.
    /// @param refJobId The reference job.
    /// @return The reference's result hash.
    function _cacheReference(uint256 jobId, Job storage job, uint256 refJobId) internal view returns (bytes32) {
        _requireStatus(jobId, job.status, JobStatus.Open);
        if (job.mode != VerificationMode.None) revert UnsupportedVerificationMode(job.mode);
        uint256 deadline = job.deadline;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp > deadline) revert DeadlinePassed(jobId, deadline);
        Job storage ref = _jobs[refJobId];
        _requireStatus(refJobId, ref.status, JobStatus.Settled);
        if (ref.modelId != job.modelId || ref.inputHash != job.inputHash) {
            revert CacheReferenceMismatch(jobId, refJobId);
        }
        return ref.resultHash;
    }

    // ---------------------------------------------------------------- external: anyone

    /// @inheritdoc IJobMarket
    /// @dev Committed job with `block.timestamp >= windowEnd`, and for a zk job a satisfied
    ///      verification (`verification.canFinalize`); anyone.
    function finalize(uint256 jobId) external nonReentrant {
        Job storage job = _jobs[jobId];
        _requireStatus(jobId, job.status, JobStatus.Committed);
        uint256 windowEnd = job.windowEnd;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp < windowEnd) revert WindowNotOver(jobId, windowEnd);
        if (job.mode != VerificationMode.None && !verification.canFinalize(jobId)) revert NotVerified(jobId);
        _finalize(jobId, job);
    }

    /// @inheritdoc IJobMarket
    function finalizeMany(uint256[] calldata jobIds) external nonReentrant returns (uint256 settled) {
        for (uint256 i; i < jobIds.length; ++i) {
            Job storage job = _jobs[jobIds[i]];
            // forge-lint: disable-next-line(block-timestamp)
            if (job.status != JobStatus.Committed || block.timestamp < job.windowEnd) continue;
            if (job.mode != VerificationMode.None && !verification.canFinalize(jobIds[i])) continue;
            _finalize(jobIds[i], job);
            ++settled;
        }
    }

    /// @inheritdoc IJobMarket
    /// @dev Open or Claimed job with `block.timestamp > deadline`; anyone (the caller earns
    ///      the non-payer share of a slashed collateral).
    function expire(uint256 jobId) external nonReentrant {
        Job storage job = _jobs[jobId];
        JobStatus status = job.status;
        if (status != JobStatus.Claimed) _requireStatus(jobId, status, JobStatus.Open);
        uint256 deadline = job.deadline;
        // forge-lint: disable-next-line(block-timestamp)
        if (block.timestamp <= deadline) revert DeadlineNotPassed(jobId, deadline);
        _expire(jobId, job, status);
    }

    /// @inheritdoc IJobMarket
    function expireMany(uint256[] calldata jobIds) external nonReentrant returns (uint256 expired) {
        for (uint256 i; i < jobIds.length; ++i) {
            Job storage job = _jobs[jobIds[i]];
            JobStatus status = job.status;
            if (status != JobStatus.Open && status != JobStatus.Claimed) continue;
            // forge-lint: disable-next-line(block-timestamp)
            if (block.timestamp <= job.deadline) continue;
            _expire(jobIds[i], job, status);
            ++expired;
        }
    }

    // ---------------------------------------------------------------- external: verification module

    /// @inheritdoc IJobMarket
    /// @dev Module only. The escrow goes back to the payer whole and the node's collateral is
    ///      slashed, as at `expire` of a claimed job, with `beneficiary` in the keeper's place.
    function slashJob(uint256 jobId, address beneficiary)
        external
        nonReentrant
        onlyVerification
        returns (uint256 slashed)
    {
        Job storage job = _jobs[jobId];
        JobStatus status = job.status;
        if (status != JobStatus.Disputed) _requireStatus(jobId, status, JobStatus.Committed);
        job.status = JobStatus.Slashed;
        uint256 refund;
        uint256 compensation;
        (refund, slashed, compensation) = _refundEscrow(job, true, beneficiary);
        emit JobSlashed(jobId, refund, slashed, compensation, beneficiary);
        _refundVault(job, refund + compensation);
    }

    /// @inheritdoc IJobMarket
    /// @dev Module only. A Disputed job cannot be finalized; it is slashed or returns to Committed.
    function setDisputed(uint256 jobId, bool disputed) external onlyVerification {
        Job storage job = _jobs[jobId];
        _requireStatus(jobId, job.status, disputed ? JobStatus.Committed : JobStatus.Disputed);
        if (disputed) {
            job.status = JobStatus.Disputed;
            emit JobDisputed(jobId);
        } else {
            job.status = JobStatus.Committed;
            emit JobDisputeCleared(jobId);
        }
    }

    /// @inheritdoc IJobMarket
    /// @dev Sends msg.sender's whole balance; the balance is zeroed before the transfer.
    function withdraw() external nonReentrant {
        uint256 amount = withdrawable[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        withdrawable[msg.sender] = 0;
        emit Withdrawal(msg.sender, amount);

        (bool success,) = msg.sender.call{value: amount}("");
        if (!success) revert TransferFailed(msg.sender, amount);
    }

    // ---------------------------------------------------------------- external: owner

    /// @inheritdoc IJobMarket
    /// @dev Owner only; ≤ MAX_FEE_BPS. Applies to jobs submitted afterwards.
    function setFeeBps(uint16 newFeeBps) external onlyOwner {
        if (newFeeBps > MAX_FEE_BPS) revert FeeTooHigh(newFeeBps, MAX_FEE_BPS);
        feeBps = newFeeBps;
        emit FeeSet(newFeeBps);
    }

    /// @inheritdoc IJobMarket
    /// @dev Owner only; non-zero. Fees already credited stay with the old treasury.
    function setTreasury(address newTreasury) external onlyOwner {
        if (newTreasury == address(0)) revert ZeroAddress();
        treasury = newTreasury;
        emit TreasurySet(newTreasury);
    }

    /// @inheritdoc IJobMarket
    /// @dev Owner only, once: the module cannot be swapped under jobs in flight.
    function setVerification(IZkVerification newVerification) external onlyOwner {
        if (address(verification) != address(0)) revert VerificationAlreadySet(address(verification));
        if (address(newVerification) == address(0)) revert ZeroAddress();
        address itsMarket = address(newVerification.market());
        if (itsMarket != address(this)) revert VerificationNotBound(address(newVerification), itsMarket);
        verification = newVerification;
        emit VerificationSet(address(newVerification));
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IJobMarket
    function getJob(uint256 jobId) external view returns (Job memory) {
        return _jobs[jobId];
    }

    /// @inheritdoc IJobMarket
    function jobCount() external view returns (uint256) {
        return _jobCount;
    }

    /// @inheritdoc IJobMarket
    function totalEscrow() external view returns (uint256) {
        return _totalEscrow;
    }

    /// @inheritdoc IJobMarket
    function collateralFor(uint256 maxFee) external view returns (uint256) {
        return _collateralFor(maxFee);
    }

    /// @inheritdoc IJobMarket
    function longestWindow() external view returns (uint256) {
        return maxJobDuration + challengeWindow;
    }
}
