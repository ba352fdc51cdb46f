"""Real builds of the three models: determinism, accuracy, batch invariance, bad inputs.

The models are built once per code version into a cache folder under the system temporary
directory (keyed by a hash of the model code and library versions), so repeated runs reuse
them; the determinism test always makes a second, fresh build to compare against.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import sklearn
import torch

from market.canonical import decode_tensor, encode_quantized, keccak
from tests.conftest import Chain
from worker.models import (
    MODEL_NAMES,
    ArtifactError,
    InvalidInput,
    LoadedModel,
    ModelManifest,
    build_models,
    digits_test_split,
    encode_digits_input,
    encode_text_input,
    load_model,
)
from worker.models.manifest import file_hash

pytestmark = pytest.mark.integration

SRC = Path(__file__).parents[2] / "src"
SOURCES = [SRC / "market/canonical.py", *sorted((SRC / "worker/models").glob("*.py"))]
# Companion texts: words drawn at random, so sequence lengths differ from job to job.
TEXT = "the quick brown fox jumps over a lazy dog while staked nodes sell checked inference"
WORDS = TEXT.split(" ")


def _code_key() -> str:
    parts = b"".join(p.read_bytes() for p in SOURCES)
    versions = f"{torch.__version__}|{np.__version__}|{sklearn.__version__}".encode()
    return keccak(parts + versions).hex()[:16]


@pytest.fixture(scope="session")
def artifacts() -> Path:
    out = Path(tempfile.gettempdir()) / f"verimarket-test-models-{_code_key()}"
    for stale in out.parent.glob("verimarket-test-models-*"):
        if stale != out:  # built by older code; 180 MB each
            shutil.rmtree(stale, ignore_errors=True)
    build_models(out, progress=False)
    return out


@pytest.fixture(scope="session")
def manifests(artifacts: Path) -> dict[str, ModelManifest]:
    return {m.name: m for m in build_models(artifacts, progress=False)}


def digits_inputs(count: int) -> list[bytes]:
    images, _ = digits_test_split()
    return [encode_digits_input(image) for image in images[:count]]


def text_inputs(count: int) -> list[bytes]:
    rng = random.Random(7)
    texts = ["", " ".join(WORDS * 10)]  # the shortest (2 ids) and a truncated one (128)
    texts += [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 70))) for _ in range(count)]
    texts = texts[:count]
    return [encode_text_input(text) for text in texts]


INPUTS: dict[str, Callable[[int], list[bytes]]] = {
    "digits-mlp": digits_inputs,
    "digits-cnn": digits_inputs,
    "minilm": text_inputs,
}


def hashes_in_batches(model: LoadedModel, inputs: list[bytes], size: int, seed: int) -> list[bytes]:
    """Result hashes of ``inputs`` run in shuffled batches of ``size``, in input order."""
    order = list(range(len(inputs)))
    random.Random(seed).shuffle(order)
    found: dict[int, bytes] = {}
    for start in range(0, len(order), size):
        chunk = order[start : start + size]
        outputs = model.run_batch([model.decode_input(inputs[i]) for i in chunk])
        for index, output in zip(chunk, outputs, strict=True):
            found[index] = model.result_hash(output)
    return [found[i] for i in range(len(inputs))]


# --- building -------------------------------------------------------------------------------


def test_two_builds_give_byte_identical_artefacts(
    tmp_path: Path, manifests: dict[str, ModelManifest]
) -> None:
    fresh = {m.name: m for m in build_models(tmp_path, progress=False)}
    assert set(fresh) == set(MODEL_NAMES)
    for name, manifest in manifests.items():
        assert fresh[name].files == manifest.files
        assert fresh[name].model_id == manifest.model_id
        assert fresh[name].segments == manifest.segments


def test_a_second_build_reuses_intact_artefacts(
    artifacts: Path, manifests: dict[str, ModelManifest]
) -> None:
    before = {p: p.stat().st_mtime_ns for p in artifacts.rglob("*") if p.is_file()}
    again = build_models(artifacts, progress=False)
    assert [m.model_id for m in again] == [manifests[n].model_id for n in MODEL_NAMES]
    after = {p: p.stat().st_mtime_ns for p in artifacts.rglob("*") if p.is_file()}
    assert after == before


def test_a_corrupt_artefact_is_refused_then_rebuilt(
    tmp_path: Path, artifacts: Path, manifests: dict[str, ModelManifest]
) -> None:
    shutil.copytree(artifacts / "digits-mlp", tmp_path / "digits-mlp")
    segment = tmp_path / "digits-mlp/segments/fc2.onnx"
    data = bytearray(segment.read_bytes())
    data[-1] ^= 1
    segment.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"segments/fc2\.onnx does not match its hash"):
        load_model(tmp_path, "digits-mlp")
    (rebuilt,) = build_models(tmp_path, ["digits-mlp"], progress=False)
    assert rebuilt.model_id == manifests["digits-mlp"].model_id
    assert load_model(tmp_path, "digits-mlp").manifest == rebuilt


def test_manifest_hashes_are_those_of_the_files(
    artifacts: Path, manifests: dict[str, ModelManifest]
) -> None:
    for name, manifest in manifests.items():
        assert "spec.json" in manifest.files
        assert manifest.output_scale == 16
        for segment in manifest.segments:
            assert segment.segment_hash == file_hash(artifacts / name / segment.file)
            assert segment.vk_hash == "0x" + "00" * 32


def test_model_ids_are_those_the_registry_computes(
    chain: Chain, manifests: dict[str, ModelManifest]
) -> None:
    from market.chain.types import Segment

    market = chain.market(0)
    for manifest in manifests.values():
        segments = [Segment(*s) for s in manifest.chain_segments()]
        on_chain = market.compute_model_id(
            manifest.artifacts_hash_bytes, manifest.output_scale, segments
        )
        assert on_chain == manifest.model_id_bytes


# --- serving --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn"])
def test_digits_accuracy_on_the_test_split(
    name: str, artifacts: Path, manifests: dict[str, ModelManifest]
) -> None:
    model = load_model(artifacts, name)
    images, labels = digits_test_split()
    outputs = model.run_batch([model.decode_input(encode_digits_input(i)) for i in images])
    accuracy = float(
        np.mean([int(np.argmax(o)) == y for o, y in zip(outputs, labels, strict=True)])
    )
    assert accuracy >= 0.9
    assert accuracy == pytest.approx(manifests[name].metrics["test_accuracy"])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_result_hashes_do_not_depend_on_the_batch(name: str, artifacts: Path) -> None:
    model = load_model(artifacts, name)
    inputs = INPUTS[name](24 if name == "minilm" else 96)
    alone = [model.result_hash(model.run_batch([model.decode_input(x)])[0]) for x in inputs]
    assert hashes_in_batches(model, inputs, 7, seed=1) == alone
    assert hashes_in_batches(model, inputs, 32, seed=2) == alone


def test_text_companions_have_different_lengths(artifacts: Path) -> None:
    lengths = {len(decode_tensor(x).values) for x in text_inputs(30)}
    assert len(lengths) > 15
    assert min(lengths) == 2
    assert max(lengths) == 128


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_canonical_output_and_result_hash(name: str, artifacts: Path) -> None:
    model = load_model(artifacts, name)
    (output,) = model.run_batch([model.decode_input(INPUTS[name](1)[0])])
    assert output.dtype == np.float64
    encoded = model.canonical_output(output)
    decoded = decode_tensor(encoded)
    assert decoded.shape == model.manifest.output_shape
    assert decoded.scale_bits == 16
    assert np.abs(decoded.to_float() - output).max() <= 2**-17
    assert model.result_hash(output) == keccak(encoded)
    assert model.run_inputs(INPUTS[name](1)) == [encoded]


def test_minilm_embeddings_are_unit_vectors_close_to_sentence_transformers(
    manifests: dict[str, ModelManifest], artifacts: Path
) -> None:
    assert manifests["minilm"].metrics["sentence_transformers_max_abs_diff"] < 1e-5
    model = load_model(artifacts, "minilm")
    outputs = model.run_batch([model.decode_input(x) for x in text_inputs(5)])
    for output in outputs:
        assert np.linalg.norm(output) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn"])
def test_onnx_segments_compose_to_the_torch_model(name: str, artifacts: Path) -> None:
    model = load_model(artifacts, name)
    folder = artifacts / name
    inputs = digits_inputs(5)
    expected = model.run_batch([model.decode_input(x) for x in inputs])
    for data, want in zip(inputs, expected, strict=True):
        value = model.decode_input(data).numpy().astype(np.float32)[None]
        for segment in model.manifest.segments:
            session = ort.InferenceSession(str(folder / segment.file))
            (value,) = session.run(None, {"input": value})
        whole = ort.InferenceSession(str(folder / "model.onnx"))
        (logits,) = whole.run(
            None, {"input": model.decode_input(data).numpy()[None].astype(np.float32)}
        )
        np.testing.assert_allclose(value[0], want, atol=1e-4)
        np.testing.assert_allclose(logits[0], want, atol=1e-4)


def test_minilm_onnx_matches_torch(artifacts: Path) -> None:
    model = load_model(artifacts, "minilm")
    assert model.manifest.onnx_file == "model.onnx"
    session = ort.InferenceSession(str(artifacts / "minilm/model.onnx"))
    ids = model.decode_input(text_inputs(1)[0]).numpy()[None]
    (embedding,) = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    (want,) = model.run_batch([torch.from_numpy(ids[0])])
    np.testing.assert_allclose(embedding[0], want, atol=1e-5)


def test_load_model_is_cached_per_device(artifacts: Path) -> None:
    first = load_model(artifacts, "digits-mlp")
    assert load_model(artifacts, "digits-mlp") is first
    if not torch.cuda.is_available():
        assert load_model(artifacts, "digits-mlp", device="cpu") is first
    assert first.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("digits-mlp", b"\x01\x04", "truncated"),
        ("digits-mlp", encode_quantized(np.full((8, 8), 99, dtype=np.int64), 4), "0..16"),
        ("digits-cnn", encode_quantized(np.zeros((8, 8), dtype=np.int64), 16), "scale"),
        ("minilm", encode_quantized(np.zeros((0,), dtype=np.int64), 0), "empty"),
        ("minilm", encode_quantized(np.full((200,), 101, dtype=np.int64), 0), "at most 128"),
        ("minilm", encode_quantized(np.array([101, 40000, 102], dtype=np.int64), 0), "vocabulary"),
    ],
)
def test_bad_inputs_are_refused_with_a_reason(
    name: str, data: bytes, reason: str, artifacts: Path
) -> None:
    model = load_model(artifacts, name)
    with pytest.raises(InvalidInput, match=reason) as info:
        model.decode_input(data)
    assert info.value.model == name
    with pytest.raises(InvalidInput, match="must be bytes"):
        model.decode_input("text")  # type: ignore[arg-type]
