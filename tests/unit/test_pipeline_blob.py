"""The activation blob passed between the nodes of a pipelined job (worker.pipeline)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from prover import QuantizedTensor
from worker.pipeline import ACTIVATION_MAGIC, MAX_ELEMENTS, Activation, ActivationError


def _activation() -> Activation:
    values = np.array([[0.1, -2.5, 1e-300, 3.0]], dtype=np.float64)
    shadow = QuantizedTensor((102, -2560, 0, 3072), (1, 4), 10)
    return Activation(values, shadow)


def test_round_trip_is_exact() -> None:
    act = _activation()
    blob = act.encode()
    back = Activation.decode(blob, (1, 4))
    assert back.values.shape == (1, 4)
    assert back.values.tobytes() == act.values.tobytes()  # every float64 bit kept
    assert back.shadow == act.shadow
    assert back.encode() == blob


def test_layout_is_the_documented_one() -> None:
    blob = _activation().encode()
    assert blob[:4] == ACTIVATION_MAGIC
    assert blob[4] == 2 and struct.unpack(">2I", blob[5:13]) == (1, 4)
    assert struct.unpack(">d", blob[13:21]) == (0.1,)
    scale, count = struct.unpack(">BI", blob[13 + 32 : 13 + 37])
    assert (scale, count) == (10, 4)
    assert struct.unpack(">q", blob[13 + 37 + 8 : 13 + 37 + 16]) == (-2560,)
    assert len(blob) == 13 + 32 + 5 + 32


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b"XYZ\x01" + b[4:], "magic"),
        (lambda b: b[:4] + b"\x00" + b[5:], "ndim"),
        (lambda b: b[:4] + b"\x09" + b[5:], "ndim"),
        (lambda b: b[:10], "truncated"),
        (lambda b: b[:-1], "count"),
        (lambda b: b + b"\x00", "left over"),
        (lambda b: b[:13] + struct.pack(">d", float("nan")) + b[21:], "NaN"),
        (lambda b: b[:4] + b"\x01" + struct.pack(">I", MAX_ELEMENTS + 1) + b[9:], "limit"),
    ],
)
def test_malformed_blobs_are_refused(mutate: object, reason: str) -> None:
    blob = _activation().encode()
    with pytest.raises(ActivationError, match=reason):
        Activation.decode(mutate(blob))  # type: ignore[operator]


def test_shadow_shape_must_fit_and_values_be_finite() -> None:
    blob = _activation().encode()
    with pytest.raises(ActivationError, match="do not fill"):
        Activation.decode(blob, (1, 5))
    bad = Activation(np.array([np.inf]), QuantizedTensor((1,), (1,), 10))
    with pytest.raises(ActivationError, match="infinite"):
        bad.encode()
