// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title HostileActor
/// @notice A contract that plays any role in the protocol (payer, node, keeper, treasury,
///         vault funder or agent) through `exec`, and misbehaves when it is paid: it accepts,
///         refuses (reverts), burns every unit of gas it is given, or re-enters a list of
///         calls. Re-entrant calls are made once per payment (no recursion); their outcome is
///         recorded, or, when `strict`, a failed re-entry reverts the payment itself. The same
///         happens when it is called with data (as a job's consumer, through `fallback`).
contract HostileActor {
    /// @notice What `receive` does with a payment.
    enum Mode {
        Accept,
        Revert,
        BurnGas,
        Reenter
    }

    /// @notice A call to make from `receive`.
    struct Call {
        /// @notice The contract to call.
        address target;
        /// @notice The calldata.
        bytes data;
    }

    /// @notice The outcome of a re-entrant call.
    struct Outcome {
        /// @notice Whether the call succeeded.
        bool ok;
        /// @notice Its return or revert data.
        bytes data;
    }

    /// @notice `receive` in Revert mode.
    error Refused();

    /// @notice A strict re-entry failed; `reason` is the inner revert data.
    error ReentryFailed(uint256 index, bytes reason);

    /// @notice What `receive` does.
    Mode public mode;

    /// @notice Whether a failed re-entry makes `receive` revert.
    bool public strict;

    /// @notice Wei accepted by `receive` over the contract's life (re-entrant payments included).
    uint256 public received;

    /// @notice Number of payments (or calls, through `fallback`) accepted.
    uint256 public payments;

    /// @notice Wei accepted from each sender.
    mapping(address sender => uint256 amount) public receivedFrom;

    /// @dev Calls to make on the next payment.
    Call[] internal _reentries;

    /// @dev Outcomes of the re-entrant calls of the last payment that re-entered.
    Outcome[] internal _outcomes;

    /// @dev Set while the re-entrant calls run, so a nested payment does not re-enter again.
    bool internal _entered;

    /// @notice Sets what `receive` does.
    function setMode(Mode mode_) external {
        mode = mode_;
    }

    /// @notice Sets whether a failed re-entry reverts the payment.
    function setStrict(bool strict_) external {
        strict = strict_;
    }

    /// @notice Adds a call to make from `receive` in Reenter mode.
    function addReentry(address target, bytes calldata data) external {
        _reentries.push(Call({target: target, data: data}));
    }

    /// @notice Forgets the re-entrant calls and their outcomes.
    function clearReentries() external {
        delete _reentries;
        delete _outcomes;
    }

    /// @notice Calls `target` with `value` and `data` as this contract; bubbles a revert.
    function exec(address target, uint256 value, bytes calldata data) external payable returns (bytes memory result) {
        bool ok;
        (ok, result) = target.call{value: value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 0x20), mload(result))
            }
        }
    }

    /// @notice Number of outcomes recorded by the last re-entering payment.
    function outcomeCount() external view returns (uint256) {
        return _outcomes.length;
    }

    /// @notice The outcome of re-entrant call `index`.
    function outcome(uint256 index) external view returns (bool ok, bytes memory data) {
        Outcome storage o = _outcomes[index];
        return (o.ok, o.data);
    }

    /// @notice Misbehaves per `mode` when paid.
    receive() external payable {
        _misbehave();
    }

    /// @notice Misbehaves per `mode` when called with data (e.g. as a job's consumer).
    fallback() external payable {
        _misbehave();
    }

    /// @dev Refuses, burns the gas, or accepts and (in Reenter mode, once) makes the calls.
    function _misbehave() internal {
        Mode m = mode;
        if (m == Mode.Revert) revert Refused();
        if (m == Mode.BurnGas) {
            while (true) {}
        }
        received += msg.value;
        receivedFrom[msg.sender] += msg.value;
        ++payments;
        if (m != Mode.Reenter || _entered) return;

        _entered = true;
        delete _outcomes;
        uint256 n = _reentries.length;
        for (uint256 i; i < n; ++i) {
            Call storage c = _reentries[i];
            (bool ok, bytes memory data) = c.target.call(c.data);
            if (!ok && strict) revert ReentryFailed(i, data);
            _outcomes.push(Outcome({ok: ok, data: data}));
        }
        _entered = false;
    }
}
