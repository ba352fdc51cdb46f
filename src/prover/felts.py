"""Field elements as ezkl writes them, and the fixed-point integers they stand for.

ezkl works in the scalar field of BN254. It writes a field element as 64 hex digits,
little-endian; a contract sees the same element as a big-endian uint256. A fixed-point value
``v`` at scale ``2^s`` is the integer ``round(v * 2^s)``; negative integers wrap to ``P - |x|``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from eth_utils.crypto import keccak

#: The BN254 scalar field modulus (ezkl's ``Fr``; instances must be below it).
FIELD_MODULUS = 21888242871839275222246405745257275088548364400416034343698204186575808495617


def felt_to_uint(felt: str) -> int:
    """An ezkl felt string (little-endian hex, optional 0x) as the uint256 a contract sees."""
    text = felt[2:] if felt.startswith("0x") else felt
    value = int.from_bytes(bytes.fromhex(text), "little")
    if value >= FIELD_MODULUS:
        raise ValueError(f"{felt} is not a field element")
    return value


def uint_to_felt(value: int) -> str:
    """A field element (0 <= value < P) in ezkl's little-endian hex form."""
    if not 0 <= value < FIELD_MODULUS:
        raise ValueError(f"{value} is not a field element")
    return value.to_bytes(32, "little").hex()


def int_to_felt(value: int) -> str:
    """A signed fixed-point integer as an ezkl felt string (negatives wrap around P)."""
    return uint_to_felt(value % FIELD_MODULUS)


def felt_to_int(felt: str) -> int:
    """An ezkl felt string as the signed integer it encodes (elements above P/2 are negative)."""
    value = felt_to_uint(felt)
    return value - FIELD_MODULUS if value > FIELD_MODULUS // 2 else value


@dataclass(frozen=True)
class QuantizedTensor:
    """A tensor in fixed point: ``values[i] / 2^scale_bits`` is element i (row-major)."""

    values: tuple[int, ...]
    shape: tuple[int, ...]
    scale_bits: int

    def __post_init__(self) -> None:
        if int(np.prod(self.shape)) != len(self.values):
            raise ValueError(f"{len(self.values)} values do not fill shape {self.shape}")

    @classmethod
    def from_floats(
        cls, values: npt.ArrayLike, scale_bits: int, shape: Sequence[int] | None = None
    ) -> QuantizedTensor:
        """Quantize real values at ``2^scale_bits``, rounding half to even."""
        array = np.asarray(values, dtype=np.float64)
        ints = np.rint(array * float(2**scale_bits)).astype(np.int64)
        dims = tuple(int(d) for d in (shape if shape is not None else array.shape))
        return cls(tuple(int(v) for v in ints.reshape(-1)), dims, scale_bits)

    @classmethod
    def from_felts(
        cls, felts: Iterable[str], shape: Sequence[int], scale_bits: int
    ) -> QuantizedTensor:
        return cls(tuple(felt_to_int(f) for f in felts), tuple(shape), scale_bits)

    def felts(self) -> list[str]:
        return [int_to_felt(v) for v in self.values]

    def floats(self) -> npt.NDArray[np.float64]:
        """The real values, exactly (each is an integer over a power of two)."""
        array = np.array(self.values, dtype=np.float64) / float(2**self.scale_bits)
        return array.reshape(self.shape)

    def rescaled(self, scale_bits: int) -> QuantizedTensor:
        """The same values at another scale: exact going up, round-half-to-even going down."""
        shift = scale_bits - self.scale_bits
        if shift >= 0:
            return QuantizedTensor(tuple(v << shift for v in self.values), self.shape, scale_bits)
        return QuantizedTensor(
            tuple(_div_round_half_even(v, 1 << -shift) for v in self.values),
            self.shape,
            scale_bits,
        )


def _div_round_half_even(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


# --------------------------------------------------------------------------- KZG commitments

#: BN254's base field modulus: coordinates of G1 points (commitments) are below it.
BASE_FIELD_MODULUS = 21888242871839275222246405745257275088696311157297823662689037894645226208583


def g1_from_compressed(data: bytes) -> tuple[int, int]:
    """A BN254 G1 point from ezkl's compressed form (halo2curves: x little-endian, bit 7 of
    the last byte set when y is odd, bit 6 for the point at infinity), as ``(x, y)``; the
    point at infinity is ``(0, 0)``, as the EVM writes it."""
    if len(data) != 32:
        raise ValueError(f"a compressed G1 point has 32 bytes, not {len(data)}")
    odd, infinity = data[31] >> 7 & 1, data[31] >> 6 & 1
    x = int.from_bytes(data[:31] + bytes([data[31] & 0x3F]), "little")
    if infinity:
        if x or odd:
            raise ValueError("a malformed point at infinity")
        return 0, 0
    if x >= BASE_FIELD_MODULUS:
        raise ValueError("x is not below the base field modulus")
    q = BASE_FIELD_MODULUS
    y2 = (pow(x, 3, q) + 3) % q
    y = pow(y2, (q + 1) // 4, q)  # q = 3 mod 4
    if y * y % q != y2:
        raise ValueError("x is not the x of a point on BN254's G1")
    if y & 1 != odd:
        y = q - y
    return x, y


def g1_from_ezkl(point: Any) -> tuple[int, int]:
    """``(x, y)`` of a point as ezkl's Python API returns one (``kzg_commit``'s
    ``PyG1Affine``: each coordinate little-endian hex)."""
    x, y = (int.from_bytes(bytes.fromhex(str(getattr(point, c))), "little") for c in "xy")
    return x, y


def g1_to_evm(point: tuple[int, int]) -> bytes:
    """A G1 point as the EVM and ezkl's Solidity verifier read it: x then y, 32 bytes each,
    big-endian."""
    return point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


def commitment_hash(evm_point: bytes) -> int:
    """The boundary hash of a KZG-committed boundary: keccak256 of the point's 64 EVM bytes,
    reduced into the scalar field (what a contract computes from the proof's first bytes)."""
    if len(evm_point) != 64:
        raise ValueError(f"an EVM G1 point has 64 bytes, not {len(evm_point)}")
    return int.from_bytes(keccak(evm_point), "big") % FIELD_MODULUS


def instances_hash(values: Sequence[int]) -> int:
    """The boundary hash of public values: keccak256 of them packed as uint256, reduced
    into the scalar field (``abi.encodePacked(uint256[])`` on chain)."""
    packed = b"".join((v % FIELD_MODULUS).to_bytes(32, "big") for v in values)
    return int.from_bytes(keccak(packed), "big") % FIELD_MODULUS
