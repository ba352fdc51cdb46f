"""The canonical tensor encoding: exact bytes, rounding, and strict decoding."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from market.canonical import (
    CanonicalEncodingError,
    CanonicalTensor,
    decode_tensor,
    encode_quantized,
    encode_tensor,
    keccak,
    quantize,
)
from market.errors import VerimarketError


def test_encode_tensor_exact_bytes() -> None:
    data = encode_tensor(np.array([[0.5, -1.0, 2.25]]), 2)
    assert data == (bytes([1, 2, 2]) + struct.pack(">II", 1, 3) + struct.pack(">qqq", 2, -4, 9))


def test_scalar_and_empty_tensors_are_valid() -> None:
    scalar = encode_tensor(np.float64(1.5), 1)
    assert scalar == bytes([1, 1, 0]) + struct.pack(">q", 3)
    assert decode_tensor(scalar).shape == ()
    empty = encode_tensor(np.zeros((2, 0)), 16)
    assert empty == bytes([1, 16, 2]) + struct.pack(">II", 2, 0)
    assert decode_tensor(empty).values.shape == (2, 0)


def test_keccak_matches_known_vector() -> None:
    assert keccak(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.5, 0), (1.5, 2), (2.5, 2), (-0.5, 0), (-1.5, -2), (-2.5, -2), (0.49999999999999994, 0)],
)
def test_quantize_rounds_half_to_even(value: float, expected: int) -> None:
    assert quantize(np.array([value]), 0).tolist() == [expected]


def test_quantize_scales_by_power_of_two() -> None:
    assert quantize(np.array([1.0, -0.25, 3 / 65536]), 16).tolist() == [65536, -16384, 3]


def test_quantize_integers_is_exact_beyond_float_precision() -> None:
    big = 2**60 + 1  # not representable in float64
    assert quantize(np.array([big, -big]), 1).tolist() == [2 * big, -2 * big]
    assert quantize(np.array([-1]), 63).tolist() == [-(2**63)]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_quantize_refuses_nan_and_infinity(bad: float) -> None:
    with pytest.raises(CanonicalEncodingError, match="NaN or infinite"):
        quantize(np.array([1.0, bad]), 16)


@pytest.mark.parametrize(
    ("array", "scale"),
    [
        (np.array([2.0**47]), 16),  # exactly 2^63 after scaling
        (np.array([-(2.0**48)]), 16),
        (np.array([2**62]), 1),
        (np.array([1e300]), 0),
    ],
)
def test_quantize_refuses_values_outside_int64(array: np.ndarray, scale: int) -> None:
    with pytest.raises(CanonicalEncodingError, match="int64 range"):
        quantize(array, scale)


def test_quantize_accepts_the_int64_extremes() -> None:
    assert quantize(np.array([-(2.0**47)]), 16).tolist() == [-(2**63)]
    assert quantize(np.array([2**63 - 1]), 0).tolist() == [2**63 - 1]


@pytest.mark.parametrize("scale", [-1, 256, 1.5, True])
def test_bad_scale_is_refused(scale: object) -> None:
    with pytest.raises(CanonicalEncodingError, match="scale_bits"):
        encode_tensor(np.zeros(2), scale)  # type: ignore[arg-type]


def test_encode_quantized_needs_integers() -> None:
    with pytest.raises(CanonicalEncodingError, match="needs integers"):
        encode_quantized(np.array([1.0]), 0)
    with pytest.raises(CanonicalEncodingError, match="int64 range"):
        encode_quantized(np.array([2**63], dtype=np.uint64), 0)


def test_too_many_dimensions_is_refused_on_encode() -> None:
    with pytest.raises(CanonicalEncodingError, match="at most 8"):
        encode_tensor(np.zeros((1,) * 9), 0)


def test_error_is_a_value_error_and_a_verimarket_error() -> None:
    with pytest.raises(ValueError) as info:
        decode_tensor(b"")
    assert isinstance(info.value, VerimarketError)
    assert isinstance(info.value, CanonicalEncodingError)
    assert "truncated" in info.value.reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x01\x00", "truncated"),
        (b"\x02\x00\x00" + struct.pack(">q", 1), "unknown encoding version 2"),
        (b"\x01\x00\x09" + b"\x00\x00\x00\x01" * 9, "9 dimensions"),
        (b"\x01\x00\x02\x00\x00\x00\x02", "truncated"),
        (b"\x01\x00\x01" + struct.pack(">I", 2) + struct.pack(">q", 1), "truncated"),
        (b"\x01\x00\x01" + struct.pack(">I", 1) + struct.pack(">q", 1) + b"\x00", "1 extra byte"),
        (b"\x01\x00\x00", "truncated"),
    ],
)
def test_decode_refuses_malformed_bytes(data: bytes, reason: str) -> None:
    with pytest.raises(CanonicalEncodingError, match=reason):
        decode_tensor(data)


def test_decode_refuses_more_elements_than_the_limit_before_reading_them() -> None:
    header = b"\x01\x00\x02" + struct.pack(">II", 2**31, 2**31)  # claims 2^62 elements
    with pytest.raises(CanonicalEncodingError, match="more than the limit"):
        decode_tensor(header)
    small = encode_tensor(np.zeros(10), 0)
    with pytest.raises(CanonicalEncodingError, match="more than the limit of 9"):
        decode_tensor(small, max_elements=9)
    assert decode_tensor(small, max_elements=10).shape == (10,)


def test_decoded_values_are_native_int64_and_to_float_undoes_the_scale() -> None:
    tensor = decode_tensor(encode_tensor(np.array([[1.25, -3.0], [0.0, 7.5]]), 4))
    assert tensor.values.dtype == np.int64
    assert tensor.values.dtype.isnative
    assert tensor.scale_bits == 4
    assert tensor.to_float().tolist() == [[1.25, -3.0], [0.0, 7.5]]


@given(
    hnp.arrays(
        dtype=np.int64,
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
        elements=st.integers(-(2**63), 2**63 - 1),
    ),
    st.integers(0, 255),
)
def test_quantized_round_trip(values: np.ndarray, scale: int) -> None:
    data = encode_quantized(values, scale)
    decoded = decode_tensor(data)
    assert decoded.scale_bits == scale
    assert np.array_equal(decoded.values, values)
    assert decoded.values.shape == values.shape
    assert decoded.encode() == data


@given(
    hnp.arrays(
        dtype=np.float64,
        shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
        elements=st.floats(-1e6, 1e6, allow_nan=False),
    ),
    st.integers(0, 24),
)
def test_float_round_trip_is_within_half_a_quantum(array: np.ndarray, scale: int) -> None:
    decoded = decode_tensor(encode_tensor(array, scale))
    assert np.all(np.abs(decoded.to_float() - array) <= 0.5 / 2**scale)
    # encoding what was decoded gives the same bytes: quantization is idempotent
    assert encode_tensor(decoded.to_float(), scale) == decoded.encode()


def test_canonical_tensor_is_a_value() -> None:
    tensor = CanonicalTensor(np.array([1, 2], dtype=np.int64), 3)
    assert tensor.shape == (2,)
    assert decode_tensor(tensor.encode()).values.tolist() == [1, 2]
