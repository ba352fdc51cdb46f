"""Generative jobs in the worker and the node: one continuous-batching engine per process.

- **Node** (``GenerativeInputCheck``): before claiming, the poller checks a job's input as for
  every model — canonical request JSON *and* the prompt's token count against the model's
  limits — with the tokenizer and limits only (no weights), so a node never claims a job its
  worker would refuse.
- **Worker** (``run_generative_job``): Celery tasks of the ``generate`` queue run on the
  threads pool; each blocks on its request's future while ONE ``EngineLoop`` per process
  (per model) batches every request in flight, so new jobs join the running batch between
  decode steps. The canonical result is the generated token ids (``encode_token_ids``),
  stored and committed through the same path as the classifiers' outputs (inline up to the
  node's limit, else as a blob).
- **Streaming**: each token goes to the job's Redis stream (``market.tokenstream``) as it is
  generated; the API relays it as server-sent events.

A job runs for seconds, longer than the node's task lease: while a job is in the engine its
lease is renewed (``updated_at``) every quarter lease, so the node's sweeper does not
re-queue it; a redelivery that reaches the process already running the job waits for that
run instead of starting a second one. See docs/llm.md, "Integration".
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from market.config import Settings
from market.tokenstream import TokenPublisher, done_event, error_event, token_event
from worker.jobs import JobContext, Outcome, run_job
from worker.llm import (
    EngineConfig,
    EngineLoop,
    GenerationRequest,
    LLMEngine,
    LoadedLLM,
    load_llm,
)
from worker.llm.artefacts import CONFIG_FILE, GENERATION_FILE, TOKENIZER_FILE
from worker.llm.model import LlamaConfig
from worker.llm.runtime import GenerationSpec, check_prompt
from worker.llm.tokenizer import TextCodec
from worker.models.errors import ArtifactError, InvalidInput, UnknownModel
from worker.models.manifest import ModelManifest
from worker.models.recipes import recipe
from worker.store import NodeJob

log = logging.getLogger(__name__)

GENERATIVE_KIND = "text-generation"
#: Longest a task waits for its generation: 256 tokens at the slowest measured per-token
#: latency at 32 concurrent (~0.7 s) plus queueing, with margin.
GENERATE_TIMEOUT_S = 600.0


def is_generative(name: str) -> bool:
    """Whether model ``name`` is served by the LLM engine (not the classifier batcher)."""
    try:
        return recipe(name).kind == GENERATIVE_KIND
    except UnknownModel:
        return False


def built_manifest(artifacts: Path, name: str) -> ModelManifest:
    """The verified manifest of built model ``name``, of any kind, for the CLI's model
    commands: a generative model's files are hash-checked, its weights not loaded."""
    if is_generative(name):
        from worker.models.build import verify_model_dir

        return verify_model_dir(Path(artifacts) / name, recipe(name))
    from worker.models import load_model

    return load_model(artifacts, name).manifest


def local_llm_for(artifacts: Path, model_id: bytes) -> LoadedLLM | None:
    """The generative model built under ``artifacts`` whose id is ``model_id``, loaded and
    verified (auditing); None when none is built here."""
    from worker.models.recipes import RECIPES

    for name, rec in RECIPES.items():
        if rec.kind != GENERATIVE_KIND:
            continue
        try:
            manifest = ModelManifest.read(Path(artifacts) / name)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if manifest.model_id_bytes == model_id:
            return load_llm(artifacts, name)
    return None


def audit_generative_result(llm: LoadedLLM, data: bytes, output: bytes) -> tuple[bool | None, str]:
    """(ok, detail) of the re-execution check of a generative job (worker.llm.audit)."""
    from market.canonical import CanonicalEncodingError, decode_tensor
    from worker.llm.audit import Judgement, audit_generation

    try:
        tensor = decode_tensor(output)
    except CanonicalEncodingError as exc:
        return False, f"the output is not a canonical token-id vector: {exc}"
    if tensor.scale_bits != 0 or tensor.values.ndim != 1:
        return False, "the output is not a token-id vector (int64 at scale 2^0)"
    try:
        audit = audit_generation(llm, data, [int(t) for t in tensor.values])
    except InvalidInput as exc:
        return False, f"the input is not a request the model accepts: {exc}"
    ok = {Judgement.MATCH: True, Judgement.NEAR_TIE: True, Judgement.WRONG: False}
    return ok.get(audit.judgement), audit.detail


class GenerativeInputCheck:
    """The node-side input check of a generative model: request JSON + prompt limits.

    Reads the manifest (for the model id), tokenizer, chat template and limits from the built
    folder; the weights are neither read nor hashed (the worker verifies everything it loads).
    """

    def __init__(self, artifacts: Path, name: str) -> None:
        model_dir = Path(artifacts) / name
        try:
            self.manifest = ModelManifest.read(model_dir)
            self.spec = GenerationSpec.from_json(
                json.loads((model_dir / GENERATION_FILE).read_text())
            )
            config = LlamaConfig.from_json(json.loads((model_dir / CONFIG_FILE).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(
                model_dir,
                f"not a built generative model ({exc}); run `verimarket models build "
                f"--model {name}`",
            ) from exc
        self.name = name
        self.max_positions = config.max_positions
        self.codec = TextCodec.from_files(
            model_dir / TOKENIZER_FILE, self.spec.chat_template, self.spec.template_vars
        )

    def __call__(self, data: bytes) -> GenerationRequest:
        """The request in ``data``; InvalidInput (a ValueError) with the reason otherwise."""
        request = GenerationRequest.decode(data, self.name)
        check_prompt(
            self.codec.prompt_ids(request), request, self.spec, self.max_positions, self.name
        )
        return request


@dataclass
class GenerativeRuntime:
    """Per worker process: one EngineLoop per generative model, the token publisher, the
    jobs in flight (for lease renewal and redelivery de-duplication)."""

    settings: Settings
    job_context: JobContext
    engine_config: EngineConfig = field(default_factory=EngineConfig)
    _loops: dict[str, EngineLoop] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _in_flight: dict[int, Future[None]] = field(default_factory=dict)
    _publisher: TokenPublisher | None = None
    _publisher_made: bool = False
    _heartbeat: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def loop(self, name: str) -> EngineLoop:
        """The model's engine loop, loaded (verified) on first use."""
        with self._lock:
            loop = self._loops.get(name)
            if loop is None:
                llm = load_llm(self.settings.artifacts, name, device=self.settings.device)
                threads = None if llm.device.type == "cuda" else self.settings.torch_threads
                loop = EngineLoop(LLMEngine(llm, self.engine_config), torch_threads=threads)
                self._loops[name] = loop
                log.info("%s engine ready on %s (%s)", name, llm.device, llm.batch_invariance)
            return loop

    @property
    def publisher(self) -> TokenPublisher | None:
        with self._lock:
            if not self._publisher_made:
                self._publisher_made = True
                url = self.settings.streams()
                if url:
                    self._publisher = TokenPublisher(
                        url, self.settings.broker_prefix, self.settings.stream_ttl_s
                    )
            return self._publisher

    # ------------------------------------------------------------------ leases
    def _renew_leases(self) -> None:
        every = max(self.settings.task_lease_s / 4, 0.05)
        while not self._stop.wait(every):
            with self._lock:
                ids = list(self._in_flight)
            try:
                self.job_context.store.stamp(ids, updated_at=time.time())
            except Exception:  # the next round tries again
                log.exception("could not renew the leases of %s", ids)

    def _enter(self, job_id: int) -> Future[None] | None:
        """Register ``job_id`` as running here; the other run's future if it already is."""
        with self._lock:
            other = self._in_flight.get(job_id)
            if other is not None:
                return other
            self._in_flight[job_id] = Future()
            if self._heartbeat is None:
                self._heartbeat = threading.Thread(
                    target=self._renew_leases, name="lease-renewal", daemon=True
                )
                self._heartbeat.start()
            return None

    def _leave(self, job_id: int) -> None:
        with self._lock:
            mine = self._in_flight.pop(job_id, None)
        if mine is not None and not mine.done():
            mine.set_result(None)

    # ------------------------------------------------------------------ one job
    def run(self, job_id: int) -> Outcome:
        """Run generative job ``job_id`` (idempotent, as ``worker.jobs.run_job``)."""
        other = self._enter(job_id)
        if other is not None:
            # a redelivery of a job this process is generating: its run records the result
            other.result(timeout=GENERATE_TIMEOUT_S)
            return Outcome.ALREADY_DONE
        try:
            return run_job(self.job_context, job_id, self._compute)
        finally:
            self._leave(job_id)

    def _compute(self, job: NodeJob) -> bytes:
        loop = self.loop(job.model_name)
        llm = loop.engine.llm
        request = llm.decode_input(job.input)  # InvalidInput -> the job fails with the reason
        publisher = self.publisher
        job_id = job.job_id
        index = 0

        def on_token(_rid: str, token_id: int, text: str) -> None:
            nonlocal index
            if publisher is not None:
                publisher.publish(job_id, token_event(job_id, index, token_id, text))
            index += 1

        future = loop.submit(str(job_id), request, on_token)
        try:
            result = future.result(GENERATE_TIMEOUT_S)
        except Exception as exc:
            if not future.done():  # timed out: free its batch slot and KV for the retry
                loop.abort(str(job_id))
            if publisher is not None:
                publisher.publish(job_id, error_event(job_id, str(exc)))
            raise
        if publisher is not None:
            publisher.publish(
                job_id,
                done_event(
                    job_id,
                    result.token_ids,
                    result.text,
                    "0x" + result.result_hash().hex(),
                    str(result.finish_reason.value),
                ),
            )
        return result.canonical_output()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            loops, self._loops = list(self._loops.values()), {}
        for loop in loops:
            loop.close()
        if self._publisher is not None:
            self._publisher.close()
