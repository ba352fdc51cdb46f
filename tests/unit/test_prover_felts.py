"""Field elements and fixed point as ezkl writes them; proofs as bytes and calldata."""

from __future__ import annotations

import ezkl
import pytest
from eth_abi.abi import decode
from eth_utils.crypto import keccak
from hypothesis import given
from hypothesis import strategies as st

from prover import FIELD_MODULUS, VERIFY_SELECTOR, Proof, QuantizedTensor
from prover.felts import (
    BASE_FIELD_MODULUS,
    commitment_hash,
    felt_to_int,
    felt_to_uint,
    g1_from_compressed,
    g1_to_evm,
    instances_hash,
    int_to_felt,
    uint_to_felt,
)

fields = st.integers(min_value=0, max_value=FIELD_MODULUS - 1)
small = st.integers(min_value=-(2**62), max_value=2**62)


@given(fields)
def test_felt_to_uint_is_ezkls_big_endian(value: int) -> None:
    felt = uint_to_felt(value)
    assert felt_to_uint(felt) == value == int(ezkl.felt_to_big_endian(felt), 16)


@given(small)
def test_signed_integers_wrap_like_ezkl(value: int) -> None:
    felt = int_to_felt(value)
    assert felt_to_int(felt) == value == ezkl.felt_to_int(felt)


@given(st.integers(min_value=-(2**20), max_value=2**20))
def test_quantizing_matches_ezkl_on_exact_values(numerator: int) -> None:
    value = numerator / 64  # exactly representable at scale 2^10
    tensor = QuantizedTensor.from_floats([value], 10)
    assert tensor.felts() == [ezkl.float_to_felt(value, 10, ezkl.PyInputType.F64)]


def test_out_of_field_values_are_refused() -> None:
    with pytest.raises(ValueError):
        uint_to_felt(FIELD_MODULUS)
    with pytest.raises(ValueError):
        felt_to_uint((FIELD_MODULUS).to_bytes(32, "little").hex())


def test_rescale_is_exact_up_and_half_even_down() -> None:
    t = QuantizedTensor((3, -5, 6, 10, -10), (5,), 2)
    assert t.rescaled(6).values == (48, -80, 96, 160, -160)
    assert t.rescaled(6).rescaled(2) == t
    # 3/4 -> 0.75 -> 1 ; -5/4 = -1.25 -> -1 ; 6/4 = 1.5 -> 2 ; 10/4 = 2.5 -> 2 ; -2.5 -> -2
    assert t.rescaled(0).values == (1, -1, 2, 2, -2)
    assert t.floats().tolist() == [0.75, -1.25, 1.5, 2.5, -2.5]


def test_quantized_tensor_checks_its_shape() -> None:
    with pytest.raises(ValueError):
        QuantizedTensor((1, 2, 3), (2, 2), 0)
    rounded = QuantizedTensor.from_floats([0.5, 1.5, -0.5], 0)  # half to even
    assert rounded.values == (0, 2, 0)


def test_proof_round_trips_and_encodes_the_standard_calldata() -> None:
    proof = Proof(proof=bytes(range(256)) * 3, instances=(7, FIELD_MODULUS - 1))
    again = Proof.from_bytes(proof.to_bytes())
    assert again == proof
    as_hex = dict(proof.to_ezkl_json(), proof="0x" + proof.proof.hex())
    assert Proof.from_ezkl_json(as_hex) == proof
    data = proof.calldata()
    assert data[:4] == VERIFY_SELECTOR == bytes.fromhex("1e8e1e13")
    raw, instances = decode(["bytes", "uint256[]"], data[4:])
    assert raw == proof.proof and list(instances) == [7, FIELD_MODULUS - 1]
    assert (proof.input_hash, proof.output_hash) == (7, FIELD_MODULUS - 1)


# --------------------------------------------------------------------------- G1 points

Q = BASE_FIELD_MODULUS


def _compressed(x: int, odd: int = 0, infinity: int = 0) -> bytes:
    raw = bytearray(x.to_bytes(32, "little"))
    raw[31] |= odd << 7 | infinity << 6
    return bytes(raw)


def test_g1_generator_and_its_negation_decompress() -> None:
    assert g1_from_compressed(_compressed(1)) == (1, 2)  # G1's generator: y = 2 is even
    assert g1_from_compressed(_compressed(1, odd=1)) == (1, Q - 2)
    assert g1_to_evm((1, 2)) == (1).to_bytes(32, "big") + (2).to_bytes(32, "big")
    assert g1_from_compressed(_compressed(0, infinity=1)) == (0, 0)


def test_g1_decompression_refuses_what_is_not_a_point() -> None:
    off_curve = next(x for x in range(2, 100) if pow((x**3 + 3) % Q, (Q - 1) // 2, Q) != 1)
    with pytest.raises(ValueError, match="not the x of a point"):
        g1_from_compressed(_compressed(off_curve))
    with pytest.raises(ValueError, match="below the base field"):
        g1_from_compressed(_compressed(Q))
    with pytest.raises(ValueError, match="32 bytes"):
        g1_from_compressed(b"\x01" * 31)
    with pytest.raises(ValueError, match="infinity"):
        g1_from_compressed(_compressed(5, infinity=1))


def test_boundary_hashes_are_field_elements_of_keccak() -> None:
    point = g1_to_evm((1, 2))
    assert commitment_hash(point) == int.from_bytes(keccak(point), "big") % FIELD_MODULUS
    assert commitment_hash(point) != commitment_hash(g1_to_evm((1, Q - 2)))
    with pytest.raises(ValueError, match="64 bytes"):
        commitment_hash(point[:63])
    assert (
        instances_hash([1, -1])
        == int.from_bytes(
            keccak((1).to_bytes(32, "big") + (FIELD_MODULUS - 1).to_bytes(32, "big")), "big"
        )
        % FIELD_MODULUS
    )
