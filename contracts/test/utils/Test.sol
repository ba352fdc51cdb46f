// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title Vm
/// @notice The subset of forge's cheatcodes that verimarket's tests use. Signatures match
///         forge's own `Vm` (forge-std) exactly, since a cheatcode is found by its selector.
interface Vm {
    /// @notice A log captured by `recordLogs`.
    struct Log {
        /// @notice The log's topics (topic 0 is the event selector for non-anonymous events).
        bytes32[] topics;
        /// @notice The ABI-encoded non-indexed arguments.
        bytes data;
        /// @notice The contract that emitted the log.
        address emitter;
    }

    // ---------------------------------------------------------------- environment
    function warp(uint256 newTimestamp) external;
    function roll(uint256 newHeight) external;
    function deal(address account, uint256 newBalance) external;
    function txGasPrice(uint256 newGasPrice) external;
    function etch(address target, bytes calldata newRuntimeBytecode) external;
    function store(address target, bytes32 slot, bytes32 value) external;
    function load(address target, bytes32 slot) external view returns (bytes32 data);
    function getBlockTimestamp() external view returns (uint256 timestamp);
    function getBlockNumber() external view returns (uint256 height);
    function setBlockhash(uint256 blockNumber, bytes32 blockHash) external;

    // ---------------------------------------------------------------- callers
    function prank(address msgSender) external;
    function prank(address msgSender, address txOrigin) external;
    function startPrank(address msgSender) external;
    function startPrank(address msgSender, address txOrigin) external;
    function stopPrank() external;

    // ---------------------------------------------------------------- expectations
    function expectRevert() external;
    function expectRevert(bytes calldata revertData) external;
    function expectRevert(bytes4 revertData) external;
    function expectRevert(bytes calldata revertData, address reverter) external;
    function expectRevert(bytes4 revertData, address reverter) external;
    /// @notice Matches any revert whose data starts with `revertData` (the selector only).
    function expectPartialRevert(bytes4 revertData) external;
    function expectEmit() external;
    function expectEmit(address emitter) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData, address emitter) external;
    function expectCall(address callee, bytes calldata data) external;
    function expectCall(address callee, uint256 msgValue, bytes calldata data) external;
    function mockCall(address callee, bytes calldata data, bytes calldata returnData) external;
    function mockCallRevert(address callee, bytes calldata data, bytes calldata revertData) external;
    function clearMockedCalls() external;
    function recordLogs() external;
    function getRecordedLogs() external returns (Log[] memory logs);

    // ---------------------------------------------------------------- fuzzing
    function assume(bool condition) external pure;

    // ---------------------------------------------------------------- keys
    function addr(uint256 privateKey) external pure returns (address keyAddr);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function label(address account, string calldata newLabel) external;

    // ---------------------------------------------------------------- gas
    function snapshotGasLastCall(string calldata name) external returns (uint256 gasUsed);
    function snapshotGasLastCall(string calldata group, string calldata name) external returns (uint256 gasUsed);
    function startSnapshotGas(string calldata name) external;
    function startSnapshotGas(string calldata group, string calldata name) external;
    function stopSnapshotGas() external returns (uint256 gasUsed);
    function stopSnapshotGas(string calldata name) external returns (uint256 gasUsed);
    function snapshotValue(string calldata name, uint256 value) external;
    function pauseGasMetering() external;
    function resumeGasMetering() external;

    // ---------------------------------------------------------------- strings
    function toString(uint256 value) external pure returns (string memory stringifiedValue);
    function toString(int256 value) external pure returns (string memory stringifiedValue);
    function toString(address value) external pure returns (string memory stringifiedValue);
    function toString(bytes32 value) external pure returns (string memory stringifiedValue);
    function toString(bool value) external pure returns (string memory stringifiedValue);
    function toString(bytes calldata value) external pure returns (string memory stringifiedValue);
}

/// @title stdError
/// @notice Revert data of the compiler's panics, for `vm.expectRevert(stdError.arithmeticError)`.
library stdError {
    bytes public constant assertionError = abi.encodeWithSignature("Panic(uint256)", 0x01);
    bytes public constant arithmeticError = abi.encodeWithSignature("Panic(uint256)", 0x11);
    bytes public constant divisionError = abi.encodeWithSignature("Panic(uint256)", 0x12);
    bytes public constant enumConversionError = abi.encodeWithSignature("Panic(uint256)", 0x21);
    bytes public constant indexOOBError = abi.encodeWithSignature("Panic(uint256)", 0x32);
}

/// @title StdInvariant
/// @notice The hooks forge's invariant runner reads (by selector) to choose which contracts,
///         selectors and senders to fuzz. Call the `target*` / `exclude*` adders in `setUp`.
abstract contract StdInvariant {
    /// @notice A contract and the selectors of it that the invariant runner may call.
    struct FuzzSelector {
        /// @notice The target contract.
        address addr;
        /// @notice Its functions to call.
        bytes4[] selectors;
    }

    /// @dev Contracts the runner calls (empty: every contract deployed in setUp).
    address[] private _targetedContracts;
    /// @dev Contracts the runner never calls.
    address[] private _excludedContracts;
    /// @dev Selector filters per contract.
    FuzzSelector[] private _targetedSelectors;
    /// @dev Selectors the runner never calls.
    FuzzSelector[] private _excludedSelectors;
    /// @dev msg.sender values the runner uses (empty: random senders).
    address[] private _targetedSenders;
    /// @dev msg.sender values the runner never uses.
    address[] private _excludedSenders;

    /// @notice Adds `newTargetedContract` to the contracts the runner calls.
    function targetContract(address newTargetedContract) internal {
        _targetedContracts.push(newTargetedContract);
    }

    /// @notice Keeps the runner from calling `newExcludedContract`.
    function excludeContract(address newExcludedContract) internal {
        _excludedContracts.push(newExcludedContract);
    }

    /// @notice Restricts the runner to `newTargetedSelector.selectors` of its contract.
    function targetSelector(FuzzSelector memory newTargetedSelector) internal {
        _targetedSelectors.push(newTargetedSelector);
    }

    /// @notice Keeps the runner from calling `newExcludedSelector.selectors` of its contract.
    function excludeSelector(FuzzSelector memory newExcludedSelector) internal {
        _excludedSelectors.push(newExcludedSelector);
    }

    /// @notice Adds `newTargetedSender` to the msg.sender values the runner uses.
    function targetSender(address newTargetedSender) internal {
        _targetedSenders.push(newTargetedSender);
    }

    /// @notice Keeps the runner from using `newExcludedSender` as msg.sender.
    function excludeSender(address newExcludedSender) internal {
        _excludedSenders.push(newExcludedSender);
    }

    /// @notice Read by forge: the contracts to call.
    function targetContracts() public view returns (address[] memory) {
        return _targetedContracts;
    }

    /// @notice Read by forge: the contracts never to call.
    function excludeContracts() public view returns (address[] memory) {
        return _excludedContracts;
    }

    /// @notice Read by forge: the selector filters.
    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return _targetedSelectors;
    }

    /// @notice Read by forge: the selectors never to call.
    function excludeSelectors() public view returns (FuzzSelector[] memory) {
        return _excludedSelectors;
    }

    /// @notice Read by forge: the senders to use.
    function targetSenders() public view returns (address[] memory) {
        return _targetedSenders;
    }

    /// @notice Read by forge: the senders never to use.
    function excludeSenders() public view returns (address[] memory) {
        return _excludedSenders;
    }
}

/// @title Test
/// @notice A small stand-in for forge-std's `Test`: the cheatcode handle, assertions that
///         revert with a readable message (which fails the test), fuzz helpers and the
///         invariant hooks.
abstract contract Test is StdInvariant {
    /// @notice The cheatcode address: keccak256("hevm cheat code") truncated.
    Vm internal constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);

    /// @dev forge-std's `bound` constant.
    uint256 private constant UINT256_MAX = type(uint256).max;

    /// @notice Marks the contract as a test suite (read by older tooling).
    bool public IS_TEST = true;

    // ---------------------------------------------------------------- failure

    /// @notice Fails the test with `message`.
    function fail(string memory message) internal pure virtual {
        revert(message);
    }

    /// @dev Fails with "<label>: <left> != <right>", prefixed by `message` when one is given.
    function _failCompare(
        string memory label,
        string memory op,
        string memory left,
        string memory right,
        string memory message
    ) private pure {
        string memory reason = string.concat(label, ": ", left, " ", op, " ", right);
        if (bytes(message).length != 0) reason = string.concat(message, ": ", reason);
        fail(reason);
    }

    // ---------------------------------------------------------------- booleans

    function assertTrue(bool condition) internal pure {
        assertTrue(condition, "");
    }

    function assertTrue(bool condition, string memory message) internal pure {
        if (!condition) fail(bytes(message).length == 0 ? "assertion failed" : message);
    }

    function assertFalse(bool condition) internal pure {
        assertFalse(condition, "");
    }

    function assertFalse(bool condition, string memory message) internal pure {
        if (condition) fail(bytes(message).length == 0 ? "assertion failed" : message);
    }

    // ---------------------------------------------------------------- equality

    function assertEq(uint256 left, uint256 right) internal pure {
        assertEq(left, right, "");
    }

    function assertEq(uint256 left, uint256 right, string memory message) internal pure {
        if (left != right) _failCompare("assertEq(uint256)", "!=", vm.toString(left), vm.toString(right), message);
    }

    function assertEq(int256 left, int256 right) internal pure {
        assertEq(left, right, "");
    }

    function assertEq(int256 left, int256 right, string memory message) internal pure {
        if (left != right) _failCompare("assertEq(int256)", "!=", vm.toString(left), vm.toString(right), message);
    }

    function assertEq(address left, address right) internal pure {
        assertEq(left, right, "");
    }

    function assertEq(address left, address right, string memory message) internal pure {
        if (left != right) _failCompare("assertEq(address)", "!=", vm.toString(left), vm.toString(right), message);
    }

    function assertEq(bytes32 left, bytes32 right) internal pure {
        assertEq(left, right, "");
    }

    function assertEq(bytes32 left, bytes32 right, string memory message) internal pure {
        if (left != right) _failCompare("assertEq(bytes32)", "!=", vm.toString(left), vm.toString(right), message);
    }

    function assertEq(bool left, bool right) internal pure {
        assertEq(left, right, "");
    }

    function assertEq(bool left, bool right, string memory message) internal pure {
        if (left != right) _failCompare("assertEq(bool)", "!=", vm.toString(left), vm.toString(right), message);
    }

    function assertEq(bytes memory left, bytes memory right) internal pure {
        assertEq(left, right, "");
    }

    function assertEq(bytes memory left, bytes memory right, string memory message) internal pure {
        if (keccak256(left) != keccak256(right)) {
            _failCompare("assertEq(bytes)", "!=", vm.toString(left), vm.toString(right), message);
        }
    }

    function assertEq(string memory left, string memory right) internal pure {
        assertEq(left, right, "");
    }

    function assertEq(string memory left, string memory right, string memory message) internal pure {
        if (keccak256(bytes(left)) != keccak256(bytes(right))) {
            _failCompare(
                "assertEq(string)", "!=", string.concat('"', left, '"'), string.concat('"', right, '"'), message
            );
        }
    }

    function assertNotEq(uint256 left, uint256 right) internal pure {
        assertNotEq(left, right, "");
    }

    function assertNotEq(uint256 left, uint256 right, string memory message) internal pure {
        if (left == right) _failCompare("assertNotEq(uint256)", "==", vm.toString(left), vm.toString(right), message);
    }

    function assertNotEq(address left, address right) internal pure {
        assertNotEq(left, right, "");
    }

    function assertNotEq(address left, address right, string memory message) internal pure {
        if (left == right) _failCompare("assertNotEq(address)", "==", vm.toString(left), vm.toString(right), message);
    }

    function assertNotEq(bytes32 left, bytes32 right) internal pure {
        assertNotEq(left, right, "");
    }

    function assertNotEq(bytes32 left, bytes32 right, string memory message) internal pure {
        if (left == right) _failCompare("assertNotEq(bytes32)", "==", vm.toString(left), vm.toString(right), message);
    }

    // ---------------------------------------------------------------- ordering

    function assertGt(uint256 left, uint256 right) internal pure {
        assertGt(left, right, "");
    }

    function assertGt(uint256 left, uint256 right, string memory message) internal pure {
        if (left <= right) _failCompare("assertGt(uint256)", "<=", vm.toString(left), vm.toString(right), message);
    }

    function assertGe(uint256 left, uint256 right) internal pure {
        assertGe(left, right, "");
    }

    function assertGe(uint256 left, uint256 right, string memory message) internal pure {
        if (left < right) _failCompare("assertGe(uint256)", "<", vm.toString(left), vm.toString(right), message);
    }

    function assertLt(uint256 left, uint256 right) internal pure {
        assertLt(left, right, "");
    }

    function assertLt(uint256 left, uint256 right, string memory message) internal pure {
        if (left >= right) _failCompare("assertLt(uint256)", ">=", vm.toString(left), vm.toString(right), message);
    }

    function assertLe(uint256 left, uint256 right) internal pure {
        assertLe(left, right, "");
    }

    function assertLe(uint256 left, uint256 right, string memory message) internal pure {
        if (left > right) _failCompare("assertLe(uint256)", ">", vm.toString(left), vm.toString(right), message);
    }

    function assertApproxEqAbs(uint256 left, uint256 right, uint256 maxDelta) internal pure {
        assertApproxEqAbs(left, right, maxDelta, "");
    }

    function assertApproxEqAbs(uint256 left, uint256 right, uint256 maxDelta, string memory message) internal pure {
        uint256 delta = left > right ? left - right : right - left;
        if (delta > maxDelta) {
            _failCompare(
                "assertApproxEqAbs(uint256)",
                "!~",
                vm.toString(left),
                string.concat(
                    vm.toString(right), " (max delta ", vm.toString(maxDelta), ", delta ", vm.toString(delta), ")"
                ),
                message
            );
        }
    }

    // ---------------------------------------------------------------- helpers

    /// @notice Maps `x` into [min, max] with forge-std's semantics: values already in range are
    ///         kept; 0..3 and MAX-3..MAX map to the range's ends; anything else wraps.
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256 result) {
        if (min > max) fail("bound(uint256,uint256,uint256): Max is less than min.");
        if (x >= min && x <= max) return x;

        uint256 size = max - min + 1;
        if (x <= 3 && size > x) return min + x;
        if (x >= UINT256_MAX - 3 && size > UINT256_MAX - x) return max - (UINT256_MAX - x);

        if (x > max) {
            uint256 rem = (x - max) % size;
            if (rem == 0) return max;
            result = min + rem - 1;
        } else {
            uint256 rem = (min - x) % size;
            if (rem == 0) return min;
            result = max - rem + 1;
        }
    }

    /// @notice A deterministic address derived from `name`, labelled with it in traces.
    function makeAddr(string memory name) internal returns (address account) {
        account = vm.addr(uint256(keccak256(abi.encodePacked(name))));
        vm.label(account, name);
    }

    /// @notice Gives `who` `give` wei and makes it the sender of the next call.
    function hoax(address who, uint256 give) internal {
        vm.deal(who, give);
        vm.prank(who);
    }

    /// @notice Moves the block time forward by `time` seconds.
    function skip(uint256 time) internal {
        vm.warp(vm.getBlockTimestamp() + time);
    }
}
