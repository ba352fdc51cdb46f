"""Generation job inputs (canonical JSON) and results (canonical token ids)."""

from __future__ import annotations

import json

import pytest

from market.canonical import CanonicalEncodingError, decode_tensor, encode_quantized, keccak
from worker.llm.request import (
    MAX_INPUT_BYTES,
    MAX_NEW_TOKENS,
    ChatMessage,
    GenerationRequest,
    decode_token_ids,
    encode_generation_input,
    encode_token_ids,
    token_ids_hash,
)
from worker.models.errors import InvalidInput


def canonical(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def test_encode_writes_every_field_in_canonical_form() -> None:
    data = GenerationRequest.ask("What is the capital of France?").encode()
    assert data == (
        b'{"max_new_tokens":64,"messages":[{"content":"What is the capital of France?",'
        b'"role":"user"}],"seed":0,"temperature":0.0}'
    )
    assert encode_generation_input("What is the capital of France?") == data


@pytest.mark.parametrize(
    "request_",
    [
        GenerationRequest.ask("héllo 🙂", max_new_tokens=8, temperature=0.7, seed=2**64 - 1),
        GenerationRequest.completion("Once upon a time", max_new_tokens=MAX_NEW_TOKENS),
        GenerationRequest.chat(
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Bye"},
            ]
        ),
    ],
)
def test_round_trip(request_: GenerationRequest) -> None:
    data = request_.encode()
    assert data.isascii()
    assert GenerationRequest.decode(data) == request_
    assert GenerationRequest.decode(data).encode() == data


def test_defaults_may_be_omitted() -> None:
    request = GenerationRequest.decode(canonical({"prompt": "Hi"}))
    assert request == GenerationRequest.completion("Hi", max_new_tokens=64, temperature=0, seed=0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff", "not a UTF-8 JSON document"),
        (b"{", "not a UTF-8 JSON document"),
        (b'{"prompt":NaN}', "not a UTF-8 JSON document"),
        (b"[1]", "expected a JSON object"),
        (b'{"prompt": "Hi"}', "not in canonical JSON form"),
        (b'{"seed":1,"prompt":"Hi"}', "not in canonical JSON form"),
        (b'{"prompt":"a","prompt":"b"}', "not in canonical JSON form"),
        ('{"prompt":"é"}'.encode(), "not in canonical JSON form"),
        (canonical({"prompt": "Hi", "top_p": 1}), "unknown field"),
        (canonical({"seed": 1}), "exactly one of 'messages' and 'prompt'"),
        (canonical({"prompt": "a", "messages": []}), "exactly one of"),
        (canonical({"prompt": ""}), "non-empty string"),
        (canonical({"prompt": 5}), "non-empty string"),
        (canonical({"messages": []}), "'messages' is empty"),
        (canonical({"messages": "hi"}), "must be a list"),
        (canonical({"messages": [{"role": "user"}]}), "with 'role' and 'content'"),
        (canonical({"messages": [{"role": "user", "content": 1}]}), "must be strings"),
        (canonical({"messages": [{"role": "tool", "content": "x"}]}), "is not one of"),
        (canonical({"prompt": "Hi", "max_new_tokens": 0}), "outside 1..256"),
        (canonical({"prompt": "Hi", "max_new_tokens": 257}), "outside 1..256"),
        (canonical({"prompt": "Hi", "max_new_tokens": 8.0}), "must be an integer"),
        (canonical({"prompt": "Hi", "max_new_tokens": True}), "must be an integer"),
        (canonical({"prompt": "Hi", "temperature": -0.1}), "outside 0..2.0"),
        (canonical({"prompt": "Hi", "temperature": 2.5}), "outside 0..2.0"),
        (canonical({"prompt": "Hi", "temperature": "0"}), "must be a number"),
        (canonical({"prompt": "Hi", "seed": -1}), "seed must be an integer"),
        (canonical({"prompt": "Hi", "seed": 2**64}), "seed must be an integer"),
        (canonical({"prompt": "Hi", "seed": 1.5}), "seed must be an integer"),
    ],
)
def test_bad_inputs_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason.replace("(", r"\(").replace(".", r"\.")) as exc:
        GenerationRequest.decode(data, "smollm2")
    assert exc.value.model == "smollm2"


def test_oversized_input_is_refused_before_parsing() -> None:
    data = canonical({"prompt": "x" * MAX_INPUT_BYTES})
    with pytest.raises(InvalidInput, match="at most 32768"):
        GenerationRequest.decode(data)


def test_too_many_messages() -> None:
    with pytest.raises(InvalidInput, match="at most 64"):
        GenerationRequest.chat([ChatMessage("user", "x")] * 65)


def test_input_must_be_bytes() -> None:
    with pytest.raises(InvalidInput, match="must be bytes"):
        GenerationRequest.decode("{}")  # type: ignore[arg-type]


def test_result_is_a_canonical_int64_vector_at_scale_zero() -> None:
    ids = [504, 3575, 282, 4649, 314, 7042, 30, 2]
    data = encode_token_ids(ids)
    tensor = decode_tensor(data)
    assert tensor.scale_bits == 0
    assert tensor.shape == (8,)
    assert tensor.values.tolist() == ids
    assert data == encode_quantized(tensor.values, 0)
    assert decode_token_ids(data) == ids
    assert token_ids_hash(ids) == keccak(data)


def test_decode_token_ids_refuses_other_tensors() -> None:
    with pytest.raises(CanonicalEncodingError, match="scale 2"):
        decode_token_ids(encode_quantized([[1, 2]], 0))
    with pytest.raises(CanonicalEncodingError, match="more than the limit"):
        decode_token_ids(encode_token_ids(range(300)))
