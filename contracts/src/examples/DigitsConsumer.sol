// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IJobConsumer} from "../interfaces/IJobConsumer.sol";
import {IJobMarket} from "../interfaces/IJobMarket.sol";

/// @title DigitsConsumer
/// @notice Example agent contract (the one in the agent guide): asks the market to classify a
///         handwritten digit with a registered digits model and keeps each result it receives
///         by callback. It pays either with ETH sent along (`classify`) or from its own
///         PaymentVault account (`classifyFromVault`): the contract is its own vault agent, so
///         a funder can give it a purpose-bound budget.
/// @dev Only the owner may spend (ETH or vault budget); only the market may deliver results.
///      Refunds of ETH-paid jobs accumulate in the market under this contract's address;
///      `withdrawRefunds` collects them for the owner. Refunds of vault-paid jobs go straight
///      back into the vault account.
contract DigitsConsumer is IJobConsumer, Ownable {
    /// @notice A result as delivered by the market.
    struct Result {
        /// @notice Whether the market has called back for the job.
        bool received;
        /// @notice keccak256 of the canonical output encoding.
        bytes32 resultHash;
        /// @notice The canonical output bytes (empty when the node posted them by URI only).
        bytes output;
    }

    // ---------------------------------------------------------------- immutables

    /// @notice The market this consumer submits to and accepts callbacks from.
    IJobMarket public immutable market;

    /// @notice ModelRegistry id of the digits classifier.
    bytes32 public immutable modelId;

    /// @notice Gas the market forwards to `onJobResult`; storing ~100 output bytes needs about
    ///         150k, so deploy with some margin (the market caps it at its maxCallbackGas).
    uint32 public immutable callbackGasLimit;

    // ---------------------------------------------------------------- state

    /// @notice Delivered results, by job id.
    mapping(uint256 jobId => Result result) internal _results;

    // ---------------------------------------------------------------- events

    /// @notice A classification job was submitted.
    /// @param jobId The market's job id.
    /// @param maxFee The escrow.
    /// @param fromVault Whether the escrow came from this contract's vault account.
    event DigitRequested(uint256 indexed jobId, uint256 maxFee, bool fromVault);

    /// @notice The market delivered a result.
    /// @param jobId The job.
    /// @param resultHash keccak256 of the canonical output encoding.
    /// @param output The canonical output bytes (or empty).
    event DigitClassified(uint256 indexed jobId, bytes32 resultHash, bytes output);

    // ---------------------------------------------------------------- errors

    /// @notice `caller` is not the market.
    error NotMarket(address caller);

    /// @notice The market sent a second result for `jobId` (cannot happen with JobMarket v1).
    error AlreadyReceived(uint256 jobId);

    /// @notice Sending `amount` wei to `to` failed.
    error TransferFailed(address to, uint256 amount);

    // ---------------------------------------------------------------- constructor

    /// @param market_ The JobMarket.
    /// @param modelId_ The digits model's id.
    /// @param callbackGasLimit_ Gas for `onJobResult`.
    constructor(IJobMarket market_, bytes32 modelId_, uint32 callbackGasLimit_) Ownable(msg.sender) {
        market = market_;
        modelId = modelId_;
        callbackGasLimit = callbackGasLimit_;
    }

    // ---------------------------------------------------------------- receive

    /// @notice Takes ETH only from the market (withdrawn refunds), to forward to the owner.
    receive() external payable {
        if (msg.sender != address(market)) revert NotMarket(msg.sender);
    }

    // ---------------------------------------------------------------- internal

    /// @notice The market request for `input`, answered to this contract.
    /// @param input Canonical input encoding (the 8x8 image), posted inline.
    /// @param maxFee Escrow in wei.
    /// @param deadline Latest commit time (unix seconds).
    /// @param vaultAgent Zero to pay with ETH, or this contract to pay from its vault account.
    function _request(bytes calldata input, uint96 maxFee, uint40 deadline, address vaultAgent)
        internal
        view
        returns (IJobMarket.JobRequest memory)
    {
        return IJobMarket.JobRequest({
            modelId: modelId,
            inputHash: keccak256(input),
            input: input,
            inputURI: "",
            maxFee: maxFee,
            deadline: deadline,
            mode: IJobMarket.VerificationMode.None,
            callback: address(this),
            callbackGasLimit: callbackGasLimit,
            vaultAgent: vaultAgent
        });
    }

    // ---------------------------------------------------------------- external

    /// @notice Submits a classification of `input` paid with the ETH sent (msg.value = maxFee).
    /// @param input Canonical input encoding, posted inline.
    /// @param deadline Latest commit time (unix seconds).
    /// @return jobId The market's job id.
    function classify(bytes calldata input, uint40 deadline) external payable onlyOwner returns (uint256 jobId) {
        uint96 maxFee = SafeCast.toUint96(msg.value);
        jobId = market.submitJob{value: msg.value}(_request(input, maxFee, deadline, address(0)));
        emit DigitRequested(jobId, maxFee, false);
    }

    /// @notice Submits a classification of `input` paid from this contract's vault account.
    /// @param input Canonical input encoding, posted inline.
    /// @param maxFee Escrow in wei (within the account's policy).
    /// @param deadline Latest commit time (unix seconds).
    /// @return jobId The market's job id.
    function classifyFromVault(bytes calldata input, uint96 maxFee, uint40 deadline)
        external
        onlyOwner
        returns (uint256 jobId)
    {
        jobId = market.submitJob(_request(input, maxFee, deadline, address(this)));
        emit DigitRequested(jobId, maxFee, true);
    }

    /// @inheritdoc IJobConsumer
    /// @dev Market only; stores the result once.
    function onJobResult(uint256 jobId, bytes32 resultHash, bytes calldata output) external {
        if (msg.sender != address(market)) revert NotMarket(msg.sender);
        Result storage result = _results[jobId];
        if (result.received) revert AlreadyReceived(jobId);

        result.received = true;
        result.resultHash = resultHash;
        result.output = output;
        emit DigitClassified(jobId, resultHash, output);
    }

    /// @notice Cancels an unclaimed job of this contract (the market refunds the escrow to
    ///         the market balance or the vault account it came from).
    /// @param jobId The job.
    function cancel(uint256 jobId) external onlyOwner {
        market.cancel(jobId);
    }

    /// @notice Collects this contract's refunds from the market and sends them to `to`.
    /// @param to Receiver of the ETH.
    function withdrawRefunds(address payable to) external onlyOwner {
        market.withdraw();
        uint256 amount = address(this).balance;
        (bool success,) = to.call{value: amount}("");
        if (!success) revert TransferFailed(to, amount);
    }

    // ---------------------------------------------------------------- views

    /// @notice The result delivered for `jobId` (received = false while none has arrived).
    /// @param jobId The job.
    /// @return The stored result.
    function resultOf(uint256 jobId) external view returns (Result memory) {
        return _results[jobId];
    }
}
