"""Job inputs (client encoding, node validation) and model ids, without building models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from market.canonical import decode_tensor, encode_quantized, encode_tensor, keccak
from worker.models import (
    InputSpec,
    InvalidInput,
    ModelManifest,
    SegmentManifest,
    UnknownModel,
    WorkerError,
    build_models,
    compute_artifacts_hash,
    compute_model_id,
    digits,
    digits_test_split,
    encode_digits_input,
    encode_text_input,
    load_model,
    minilm,
)

# --- digits ------------------------------------------------------------------------------


def test_test_split_is_fixed() -> None:
    images, labels = digits_test_split()
    assert images.shape == (450, 8, 8)
    assert images.dtype == np.uint8
    assert images.min() == 0
    assert images.max() == 16
    assert sorted(set(labels.tolist())) == list(range(10))
    again, labels_again = digits_test_split()
    assert np.array_equal(images, again)
    assert np.array_equal(labels, labels_again)


def test_digits_input_round_trip() -> None:
    image = digits_test_split()[0][0]
    data = encode_digits_input(image)
    decoded = decode_tensor(data)
    assert decoded.scale_bits == 4
    assert np.array_equal(decoded.values, image)
    tensor = digits.decode_input(data, "digits-mlp")
    assert tensor.dtype == torch.float64
    assert torch.equal(tensor, torch.from_numpy(image.astype(np.float64) / 16))


def test_digits_input_accepts_whole_floats() -> None:
    image = digits_test_split()[0][0]
    assert encode_digits_input(image.astype(np.float32)) == encode_digits_input(image)


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (np.zeros((64,)), "shape"),
        (np.full((8, 8), 0.5), "whole numbers"),
        (np.full((8, 8), 17), "0..16"),
        (np.full((8, 8), -1), "0..16"),
        (np.full((8, 8), np.nan), "whole numbers"),
    ],
)
def test_client_refuses_bad_images(image: np.ndarray, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        encode_digits_input(image)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not a canonical tensor: truncated"),
        (b"\x07" + bytes(20), "unknown encoding version"),
        (encode_quantized(np.zeros((8, 8), dtype=np.int64), 0), r"scale 2\^0, expected 2\^4"),
        (encode_quantized(np.zeros((64,), dtype=np.int64), 4), r"shape \[64\]"),
        (encode_quantized(np.zeros((1, 8, 8), dtype=np.int64), 4), r"shape \[1, 8, 8\]"),
        (encode_quantized(np.full((8, 8), 17, dtype=np.int64), 4), r"\[17, 17\], expected 0..16"),
        (encode_quantized(np.full((8, 8), -3, dtype=np.int64), 4), r"\[-3, -3\]"),
        (encode_quantized(np.zeros((8, 8), dtype=np.int64), 4) + b"\x00", "extra byte"),
        (encode_quantized(np.zeros((100, 100), dtype=np.int64), 4), "more than the limit"),
    ],
)
def test_node_refuses_bad_digits_inputs(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason) as info:
        digits.decode_input(data, "digits-cnn")
    assert info.value.model == "digits-cnn"
    assert info.value.reason in str(info.value)


def test_invalid_input_belongs_to_the_worker_root() -> None:
    error = InvalidInput("because", "m")
    assert isinstance(error, WorkerError)
    assert isinstance(error, ValueError)
    assert str(error) == "m: invalid input: because"


# --- text ---------------------------------------------------------------------------------


def test_text_input_is_wordpiece_ids_with_cls_and_sep() -> None:
    decoded = decode_tensor(encode_text_input("Hello, world!"))
    assert decoded.scale_bits == 0
    assert decoded.values.tolist() == [101, 7592, 1010, 2088, 999, 102]
    tensor = minilm.decode_input(encode_text_input("Hello, world!"), "minilm")
    assert tensor.dtype == torch.int64
    assert tensor.tolist() == [101, 7592, 1010, 2088, 999, 102]


def test_long_text_is_truncated_to_128_tokens() -> None:
    ids = decode_tensor(encode_text_input("word " * 500)).values
    assert len(ids) == 128
    assert ids[0] == 101
    assert ids[-1] == 102


def test_empty_text_is_still_a_valid_input() -> None:
    assert minilm.decode_input(encode_text_input(""), "minilm").tolist() == [101, 102]


def ids(values: list[int], scale: int = 0) -> bytes:
    return encode_quantized(np.array(values, dtype=np.int64), scale)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (ids([]), "empty token sequence"),
        (ids([101] * 129), "129 tokens, at most 128"),
        (ids([101, 30522, 102]), r"token ids in \[101, 30522\]"),
        (ids([101, -1, 102]), r"token ids in \[-1, 102\]"),
        (ids([101, 102], scale=1), "token ids must be at scale 2\\^0"),
        (encode_quantized(np.ones((2, 3), dtype=np.int64), 0), r"shape \[2, 3\]"),
        (encode_tensor(np.float64(5.0), 0), r"shape \[\]"),
        (ids([101] * 1000), "more than the limit"),
        (ids([101, 102])[:-3], "truncated"),
    ],
)
def test_node_refuses_bad_token_inputs(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        minilm.decode_input(data, "minilm")


def test_text_helper_refuses_non_strings() -> None:
    with pytest.raises(InvalidInput, match="must be a str"):
        encode_text_input(b"bytes")  # type: ignore[arg-type]


# --- ids ------------------------------------------------------------------------------------


def word(value: int | bytes) -> bytes:
    return value.rjust(32, b"\0") if isinstance(value, bytes) else value.to_bytes(32, "big")


def test_model_id_is_the_solidity_abi_encoding() -> None:
    artifacts = "0x" + "ab" * 32
    segments = [
        SegmentManifest("a", "a.onnx", "0x" + "11" * 32),
        SegmentManifest("b", "b.onnx", "0x" + "22" * 32, "0x" + "33" * 32, "0x" + "44" * 20),
    ]
    # abi.encode(bytes32, uint8, (bytes32,bytes32,address)[]) by hand: head, offset, tail
    encoded = (
        bytes.fromhex("ab" * 32)
        + word(16)
        + word(0x60)
        + word(2)
        + bytes.fromhex("11" * 32)
        + word(0)
        + word(0)
        + bytes.fromhex("22" * 32)
        + bytes.fromhex("33" * 32)
        + word(bytes.fromhex("44" * 20))
    )
    assert compute_model_id(artifacts, 16, segments) == "0x" + keccak(encoded).hex()


def test_artifacts_hash_is_keccak_of_canonical_json() -> None:
    files = {"b.onnx": "0x02", "a.onnx": "0x01"}
    expected = keccak(b'{"files":{"a.onnx":"0x01","b.onnx":"0x02"}}')
    assert compute_artifacts_hash(files) == "0x" + expected.hex()


def test_manifest_json_round_trip(tmp_path: Path) -> None:
    segment = SegmentManifest("fc1", "segments/fc1.onnx", "0x" + "11" * 32)
    manifest = ModelManifest(
        name="m",
        kind="image-classifier",
        recipe_version=1,
        input=InputSpec((8, 8), 4, 0, 16, "pixels"),
        output_shape=(10,),
        output_scale=16,
        segments=(segment,),
        files={"segments/fc1.onnx": segment.segment_hash},
        artifacts_hash=compute_artifacts_hash({"segments/fc1.onnx": segment.segment_hash}),
        model_id="0x" + "00" * 32,
        weights_files=("w.safetensors",),
        onnx_file=None,
        metrics={"test_accuracy": 0.97},
    )
    manifest.write(tmp_path)
    assert ModelManifest.read(tmp_path) == manifest
    assert json.loads((tmp_path / "manifest.json").read_text())["format"] == 1
    assert manifest.chain_segments() == [(bytes.fromhex("11" * 32), bytes(32), "0x" + "00" * 20)]


def test_unknown_models_are_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(UnknownModel, match="'nope'; known models: digits-mlp, digits-cnn, minilm"):
        build_models(tmp_path, ["digits-mlp", "nope"], progress=False)
    assert not (tmp_path / "digits-mlp").exists()
    with pytest.raises(UnknownModel):
        load_model(tmp_path, "nope")
