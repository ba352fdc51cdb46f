"""A generative job's input (a canonical JSON request) and its result (canonical token ids).

Input bytes are one JSON object in canonical form (``canonical_json``: sorted keys, no
spaces, ASCII with ``\\u`` escapes)::

    {"max_new_tokens":64,"messages":[{"content":"Hi","role":"user"}],"seed":0,"temperature":0}

with exactly one of ``messages`` (a chat, rendered with the model's chat template) or
``prompt`` (raw text, tokenized as is). ``max_new_tokens`` (1..256, default 64),
``temperature`` (0..2, default 0: greedy) and ``seed`` (0..2^64-1, default 0) may be
omitted; ``GenerationRequest.encode`` always writes them. Anything else is refused with
``InvalidInput(reason)``.

The result is the generated token ids (the stop token included when generation stopped on
it) as a canonical int64 vector at scale 2^0; the result hash is keccak256 of those bytes.
The text is derived from the ids with the model's tokenizer. See docs/llm.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from market.canonical import CanonicalEncodingError, decode_tensor, encode_quantized, keccak
from worker.models.errors import InvalidInput
from worker.models.manifest import canonical_json

#: Largest accepted input document.
MAX_INPUT_BYTES = 32 * 1024
#: Most prompt tokens (after the chat template) a job may have.
MAX_PROMPT_TOKENS = 512
#: Most tokens a job may ask to generate.
MAX_NEW_TOKENS = 256
DEFAULT_MAX_NEW_TOKENS = 64
MAX_TEMPERATURE = 2.0
MAX_MESSAGES = 64
MAX_SEED = 2**64 - 1
ROLES = ("system", "user", "assistant")
_KEYS = frozenset({"messages", "prompt", "max_new_tokens", "temperature", "seed"})


@dataclass(frozen=True)
class ChatMessage:
    """One turn of a conversation."""

    role: str
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    """A chat or completion request: what one generative job asks for.

    Exactly one of ``messages`` and ``prompt`` is set. ``temperature`` 0 means greedy
    decoding; above 0, sampling is driven by ``seed`` alone (docs/llm.md), so the same
    input bytes always give the same tokens.
    """

    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def chat(
        cls,
        messages: Iterable[ChatMessage | Mapping[str, str]],
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> GenerationRequest:
        """A chat request; messages may be ChatMessage or {"role": ..., "content": ...}."""
        turns = tuple(
            m if isinstance(m, ChatMessage) else ChatMessage(m["role"], m["content"])
            for m in messages
        )
        return cls(turns, None, max_new_tokens, temperature, seed)

    @classmethod
    def ask(cls, question: str, **options: Any) -> GenerationRequest:
        """A one-question chat (the model's default system prompt applies)."""
        return cls.chat([ChatMessage("user", question)], **options)

    @classmethod
    def completion(cls, prompt: str, **options: Any) -> GenerationRequest:
        """A raw-text completion request (no chat template)."""
        return cls(None, prompt, **options)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
        }
        if self.messages is not None:
            body["messages"] = [{"role": m.role, "content": m.content} for m in self.messages]
        else:
            body["prompt"] = self.prompt
        return body

    def encode(self) -> bytes:
        """The canonical input bytes of this request (every field written)."""
        return canonical_json(self.to_json())

    @classmethod
    def decode(cls, data: bytes, model: str | None = None) -> GenerationRequest:
        """Parse and validate input bytes; InvalidInput(reason) for anything else."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput(f"input must be bytes, got {type(data).__name__}", model)
        raw = bytes(data)
        if len(raw) > MAX_INPUT_BYTES:
            raise InvalidInput(f"{len(raw)} bytes, at most {MAX_INPUT_BYTES} are allowed", model)
        try:
            document = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidInput(f"not a UTF-8 JSON document: {exc}", model) from exc
        if not isinstance(document, dict):
            raise InvalidInput(f"expected a JSON object, got {type(document).__name__}", model)
        if canonical_json(document) != raw:
            raise InvalidInput(
                "not in canonical JSON form (sorted keys, no whitespace, ASCII with \\u "
                "escapes, no duplicate keys); GenerationRequest.encode() writes it",
                model,
            )
        try:
            return cls.from_json(document)
        except InvalidInput as exc:
            raise InvalidInput(exc.reason, model) from None

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> GenerationRequest:
        unknown = sorted(set(document) - _KEYS)
        if unknown:
            raise InvalidInput(f"unknown field(s) {', '.join(unknown)}; known: {sorted(_KEYS)}")
        if ("messages" in document) == ("prompt" in document):
            raise InvalidInput("give exactly one of 'messages' and 'prompt'")
        messages = None
        if "messages" in document:
            messages = tuple(_message(i, m) for i, m in enumerate(_list(document["messages"])))
        return cls(
            messages=messages,
            prompt=document.get("prompt"),
            max_new_tokens=document.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
            temperature=document.get("temperature", 0.0),
            seed=document.get("seed", 0),
        )


def _validate(request: GenerationRequest) -> None:
    if (request.messages is None) == (request.prompt is None):
        raise InvalidInput("give exactly one of 'messages' and 'prompt'")
    if request.messages is not None:
        if not request.messages:
            raise InvalidInput("'messages' is empty")
        if len(request.messages) > MAX_MESSAGES:
            raise InvalidInput(f"{len(request.messages)} messages, at most {MAX_MESSAGES}")
        for i, m in enumerate(request.messages):
            if m.role not in ROLES:
                raise InvalidInput(f"messages[{i}].role {m.role!r} is not one of {ROLES}")
            if not isinstance(m.content, str):
                raise InvalidInput(f"messages[{i}].content must be a string")
    elif not isinstance(request.prompt, str) or not request.prompt:
        raise InvalidInput("'prompt' must be a non-empty string")
    tokens = request.max_new_tokens
    if isinstance(tokens, bool) or not isinstance(tokens, int):
        raise InvalidInput(f"max_new_tokens must be an integer, got {tokens!r}")
    if not 1 <= tokens <= MAX_NEW_TOKENS:
        raise InvalidInput(f"max_new_tokens {tokens} is outside 1..{MAX_NEW_TOKENS}")
    temperature = request.temperature
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise InvalidInput(f"temperature must be a number, got {temperature!r}")
    if not math.isfinite(temperature) or not 0 <= temperature <= MAX_TEMPERATURE:
        raise InvalidInput(f"temperature {temperature} is outside 0..{MAX_TEMPERATURE}")
    seed = request.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidInput(f"seed must be an integer in 0..2^64-1, got {seed!r}")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput(f"'messages' must be a list, got {type(value).__name__}")
    return value


def _message(index: int, value: Any) -> ChatMessage:
    if not isinstance(value, dict) or set(value) != {"role", "content"}:
        raise InvalidInput(f"messages[{index}] must be an object with 'role' and 'content'")
    role, content = value["role"], value["content"]
    if not isinstance(role, str) or not isinstance(content, str):
        raise InvalidInput(f"messages[{index}]: 'role' and 'content' must be strings")
    return ChatMessage(role, content)


def encode_generation_input(
    messages: Sequence[ChatMessage | Mapping[str, str]] | str, **options: Any
) -> bytes:
    """Client helper: canonical input bytes for a chat (list of messages) or a question (str)."""
    if isinstance(messages, str):
        return GenerationRequest.ask(messages, **options).encode()
    return GenerationRequest.chat(messages, **options).encode()


def encode_token_ids(token_ids: Sequence[int]) -> bytes:
    """The canonical result bytes: the generated ids as an int64 vector at scale 2^0."""
    return encode_quantized(np.asarray(list(token_ids), dtype=np.int64).reshape(-1), 0)


def token_ids_hash(token_ids: Sequence[int]) -> bytes:
    """keccak256 of the canonical result bytes: the result hash committed on chain."""
    return keccak(encode_token_ids(token_ids))


def decode_token_ids(data: bytes, max_tokens: int = MAX_NEW_TOKENS) -> list[int]:
    """Token ids from canonical result bytes; CanonicalEncodingError if they are not a result."""
    tensor = decode_tensor(data, max_elements=max_tokens)
    if tensor.scale_bits != 0 or len(tensor.shape) != 1:
        raise CanonicalEncodingError(
            f"a generation result is a vector at scale 2^0, got shape {list(tensor.shape)} "
            f"at scale 2^{tensor.scale_bits}"
        )
    return [int(v) for v in tensor.values]
