"""Text in and out: the chat template, the tokenizer, and incremental detokenization.

The tokenizer (``tokenizer.json``) and the chat template (``generation.json``) come from
the model's artefacts, converted once from the GGUF file at build time. The template is
rendered the way transformers' ``apply_chat_template`` renders it (a sandboxed Jinja
environment with ``trim_blocks`` and ``lstrip_blocks``), and the text is tokenized without
adding special tokens; the build checks the ids against transformers. No clock or other
outside state is offered to the template, so a prompt's ids depend on the request alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from worker.llm.request import GenerationRequest


class TextCodec:
    """Request -> prompt token ids, and token ids -> text, for one model."""

    def __init__(
        self, tokenizer: Tokenizer, chat_template: str, template_vars: dict[str, str]
    ) -> None:
        self.tokenizer = tokenizer
        self._template_vars = dict(template_vars)
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )
        env.globals["raise_exception"] = _raise_exception
        env.filters["tojson"] = _tojson
        self._template = env.from_string(chat_template)

    @classmethod
    def from_files(
        cls, tokenizer_file: Path, chat_template: str, template_vars: dict[str, str]
    ) -> TextCodec:
        return cls(Tokenizer.from_file(str(tokenizer_file)), chat_template, template_vars)

    def render_chat(self, messages: Sequence[dict[str, str]]) -> str:
        """The prompt text of a chat, ending with the assistant's turn opener."""
        return self._template.render(
            messages=list(messages), add_generation_prompt=True, **self._template_vars
        )

    def prompt_text(self, request: GenerationRequest) -> str:
        if request.messages is not None:
            return self.render_chat(
                [{"role": m.role, "content": m.content} for m in request.messages]
            )
        assert request.prompt is not None  # one of the two is set (GenerationRequest checks)
        return request.prompt

    def prompt_ids(self, request: GenerationRequest) -> tuple[int, ...]:
        """The token ids the model reads for ``request`` (no length check here)."""
        return self.encode(self.prompt_text(request))

    def encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text pieces, one call per token.

    A byte-level BPE token can end in the middle of a UTF-8 character; its piece is held
    back (an empty string is returned) until the character is complete. Pieces are the
    difference between decoding a short window of recent tokens with and without the new
    ones (vLLM's method), so each call costs O(1) however long the output. Joined, the pieces
    equal ``codec.decode(ids)`` after ``flush()``.
    """

    def __init__(self, codec: TextCodec) -> None:
        self._codec = codec
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (possibly empty)."""
        self._ids.append(int(token_id))
        prefix = self._codec.decode(self._ids[self._prefix_offset : self._read_offset])
        text = self._codec.decode(self._ids[self._prefix_offset :])
        if len(text) > len(prefix) and not text.endswith("\ufffd"):
            self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
            return text[len(prefix) :]
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end)."""
        prefix = self._codec.decode(self._ids[self._prefix_offset : self._read_offset])
        text = self._codec.decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return text[len(prefix) :] if len(text) > len(prefix) else ""


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)
