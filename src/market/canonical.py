"""The canonical tensor encoding: the bytes a job's input and result are hashed as.

Two honest nodes must produce byte-identical results, so a tensor is reduced to integers
(fixed point at scale 2^k, round half to even) and laid out in one fixed way::

    0x01                      version
    uint8   k                 scale: a stored integer v means v / 2^k
    uint8   ndim              0..8
    uint32  dims[ndim]        big-endian, row-major order
    int64   values[prod(dims)] big-endian, row-major order

The result hash of a job is ``keccak256`` of these bytes. See docs/canonical.md for why the
encoding looks like this and where two nodes can still disagree.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from eth_utils.crypto import keccak as _eth_keccak

from market.errors import VerimarketError

#: First byte of every encoding; bump it (and keep decoding the old one) to change the layout.
VERSION = 1
#: Most dimensions a canonical tensor may have.
MAX_NDIM = 8
#: Default cap on the number of elements ``decode_tensor`` accepts (8 MiB of values).
DEFAULT_MAX_ELEMENTS = 1 << 20
#: Largest scale exponent the uint8 header field can carry.
MAX_SCALE_BITS = 255

_HEADER = struct.Struct(">BBB")
_INT64_MIN = -(2**63)
_INT64_LIMIT = 2**63  # exclusive upper bound
_MAX_DIM = 2**32 - 1

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class CanonicalEncodingError(VerimarketError, ValueError):
    """A tensor cannot be encoded, or bytes are not a valid canonical encoding.

    ``reason`` says what is wrong in words a caller can pass on (an API 4xx, a CLI message).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class CanonicalTensor:
    """A decoded canonical tensor: int64 ``values`` meaning ``values / 2**scale_bits``."""

    values: IntArray
    scale_bits: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.values.shape)

    def to_float(self) -> FloatArray:
        """The real values as float64 (exact while |values| < 2^53)."""
        return self.values.astype(np.float64) / float(2**self.scale_bits)

    def encode(self) -> bytes:
        """The canonical bytes of this tensor (``decode_tensor`` inverted)."""
        return encode_quantized(self.values, self.scale_bits)


def keccak(data: bytes) -> bytes:
    """keccak256 of ``data`` (the hash the chain uses), 32 bytes."""
    return bytes(_eth_keccak(primitive=data))


def quantize(array: npt.ArrayLike, scale_bits: int) -> IntArray:
    """Fixed-point values of ``array`` at scale 2^scale_bits, rounded half to even.

    Floats are converted to float64, multiplied by 2^k (exact: a power of two) and rounded
    with ``numpy.rint``. Integer and boolean arrays are scaled exactly, without passing through
    float. Raises CanonicalEncodingError for NaN, infinities, and results outside int64.
    """
    _check_scale(scale_bits)
    scale_bits = int(scale_bits)
    arr = np.asarray(array)
    if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
        return _quantize_integers(arr, scale_bits)
    if not np.issubdtype(arr.dtype, np.floating):
        raise CanonicalEncodingError(f"cannot quantize an array of dtype {arr.dtype}")
    values = arr.astype(np.float64)
    if not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise CanonicalEncodingError(f"tensor has {bad} NaN or infinite value(s)")
    with np.errstate(over="ignore"):
        scaled = np.rint(values * math.ldexp(1.0, scale_bits))
    # 2^63 is exact in float64; anything rounding to it or beyond does not fit int64.
    if scaled.size and (
        not np.all(np.isfinite(scaled))
        or scaled.max() >= float(_INT64_LIMIT)
        or scaled.min() < float(_INT64_MIN)
    ):
        raise CanonicalEncodingError(
            f"a value times 2^{scale_bits} is outside the int64 range "
            f"(largest magnitude {float(np.abs(values).max())!r})"
        )
    return scaled.astype(np.int64)


def encode_tensor(array: npt.ArrayLike, scale_bits: int) -> bytes:
    """Quantize ``array`` (float or int) at scale 2^scale_bits and encode it canonically."""
    return encode_quantized(quantize(array, scale_bits), scale_bits)


def encode_quantized(values: npt.ArrayLike, scale_bits: int) -> bytes:
    """Encode integers that are already fixed point at scale 2^scale_bits.

    ``values`` must have an integer dtype with every value inside int64; shape limits are
    those of the format (at most 8 dimensions, each below 2^32).
    """
    _check_scale(scale_bits)
    scale_bits = int(scale_bits)
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.integer):
        raise CanonicalEncodingError(f"encode_quantized needs integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) >= _INT64_LIMIT:
        raise CanonicalEncodingError("a value is outside the int64 range")
    _check_shape(arr.shape)
    header = _HEADER.pack(VERSION, scale_bits, arr.ndim)
    dims = struct.pack(f">{arr.ndim}I", *arr.shape)
    body = np.ascontiguousarray(arr, dtype=">i8").tobytes(order="C")
    return header + dims + body


def decode_tensor(data: bytes, *, max_elements: int = DEFAULT_MAX_ELEMENTS) -> CanonicalTensor:
    """Parse and validate canonical bytes.

    Raises CanonicalEncodingError (with a reason) for: a version other than 1, fewer bytes
    than the header or the values need, bytes left over, more than 8 dimensions, or more
    than ``max_elements`` elements. Zero-sized dimensions are valid (an empty tensor), and
    ndim 0 is a scalar with one value.
    """
    view = memoryview(data)
    if len(view) < _HEADER.size:
        raise CanonicalEncodingError(
            f"truncated: {len(view)} byte(s), the header alone needs {_HEADER.size}"
        )
    version, scale_bits, ndim = _HEADER.unpack_from(view, 0)
    if version != VERSION:
        raise CanonicalEncodingError(f"unknown encoding version {version} (expected {VERSION})")
    if ndim > MAX_NDIM:
        raise CanonicalEncodingError(f"{ndim} dimensions, at most {MAX_NDIM} are allowed")
    dims_end = _HEADER.size + 4 * ndim
    if len(view) < dims_end:
        raise CanonicalEncodingError(
            f"truncated: {len(view)} byte(s), the header with {ndim} dimension(s) needs {dims_end}"
        )
    shape = struct.unpack_from(f">{ndim}I", view, _HEADER.size)
    count = math.prod(shape)
    if count > max_elements:
        raise CanonicalEncodingError(
            f"shape {list(shape)} has {count} elements, more than the limit of {max_elements}"
        )
    expected = dims_end + 8 * count
    if len(view) < expected:
        raise CanonicalEncodingError(
            f"truncated: {len(view)} byte(s), shape {list(shape)} needs {expected}"
        )
    if len(view) > expected:
        raise CanonicalEncodingError(
            f"{len(view) - expected} extra byte(s) after the values of shape {list(shape)}"
        )
    values = np.frombuffer(view, dtype=">i8", count=count, offset=dims_end)
    return CanonicalTensor(values.astype(np.int64).reshape(shape), int(scale_bits))


def _check_scale(scale_bits: Any) -> None:
    if isinstance(scale_bits, bool) or not isinstance(scale_bits, int | np.integer):
        raise CanonicalEncodingError(f"scale_bits must be an integer, got {scale_bits!r}")
    if not 0 <= int(scale_bits) <= MAX_SCALE_BITS:
        raise CanonicalEncodingError(f"scale_bits {scale_bits} is outside 0..{MAX_SCALE_BITS}")


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) > MAX_NDIM:
        raise CanonicalEncodingError(f"{len(shape)} dimensions, at most {MAX_NDIM} are allowed")
    for dim in shape:
        if dim > _MAX_DIM:
            raise CanonicalEncodingError(f"dimension {dim} does not fit in uint32")


def _quantize_integers(arr: npt.NDArray[Any], scale_bits: int) -> IntArray:
    """Scale integers by 2^k exactly, refusing results outside int64."""
    if arr.size == 0:
        return arr.astype(np.int64)
    low, high = int(arr.min()), int(arr.max())
    if (high << scale_bits) >= _INT64_LIMIT or (low << scale_bits) < _INT64_MIN:
        raise CanonicalEncodingError(
            f"integer values in [{low}, {high}] times 2^{scale_bits} are outside the int64 range"
        )
    if scale_bits < 63:
        return arr.astype(np.int64) * np.int64(1 << scale_bits)
    # Only 0 and (for k == 63) -1 pass the range check; go through Python ints to stay exact.
    shifted = [int(v) << scale_bits for v in arr.reshape(-1).tolist()]
    return np.array(shifted, dtype=np.int64).reshape(arr.shape)
