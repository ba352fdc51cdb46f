"""The body of the inference task, as a plain function (Celery calls it; tests call it too).

Idempotent: a job already run (ready, committed, failed) is left alone, and a redelivered
job that is still "running" (its worker died) is simply run again: inference is
deterministic, and the compare-and-set to "ready" lets only one run record its result.
Every start counts as an attempt, so a job that kills its worker is set aside after
``MAX_ATTEMPTS`` deliveries and never blocks the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import update

from market.blobs import BlobStore
from market.canonical import keccak
from worker.models import InvalidInput
from worker.runtime import Runtime
from worker.store import NodeJob, NodeJobState, NodeStore

log = logging.getLogger(__name__)
S = NodeJobState
MAX_ATTEMPTS = 3
INFER_TIMEOUT_S = 120.0


class Outcome(StrEnum):
    READY = "ready"
    ALREADY_DONE = "already-done"
    UNKNOWN = "unknown-job"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class JobContext:
    store: NodeStore
    runtime: Runtime
    blobs: BlobStore
    blob_base_url: str
    inline_output_max: int = 1024


def start_attempt(store: NodeStore, job_id: int) -> NodeJob | None:
    """Move the job to RUNNING and count the attempt; None when it must not run."""
    with store.sessions.begin() as s:
        res = s.execute(
            update(NodeJob)
            .where(
                NodeJob.job_id == job_id,
                NodeJob.state.in_([S.CLAIMED, S.RUNNING]),
                NodeJob.attempts < MAX_ATTEMPTS,
            )
            .values(state=S.RUNNING, attempts=NodeJob.attempts + 1, started_at=time.time())
        )
        moved = res.rowcount == 1  # type: ignore[attr-defined]
    if moved:
        return store.get(job_id)
    job = store.get(job_id)
    if job is not None and job.state in (S.CLAIMED, S.RUNNING):
        # out of attempts: the earlier deliveries died without recording a result
        store.transition(
            [job_id],
            job.state,
            S.FAILED,
            error=f"set aside after {job.attempts} attempts without a result",
        )
    return None


def run_job(
    ctx: JobContext, job_id: int, compute: Callable[[NodeJob], bytes] | None = None
) -> Outcome:
    """Run one claimed job's inference and record its canonical result.

    ``compute(job)`` gives the canonical output bytes (default: the classifier runtime's
    batcher; generative jobs pass their engine's, see worker.generative)."""
    job = start_attempt(ctx.store, job_id)
    if job is None:
        current = ctx.store.get(job_id)
        return Outcome.UNKNOWN if current is None else Outcome.ALREADY_DONE
    try:
        if compute is not None:
            output = compute(job)
        else:
            array = ctx.runtime.infer(job.model_name, job.input).result(timeout=INFER_TIMEOUT_S)
            output = ctx.runtime.model(job.model_name).canonical_output(array)
    except InvalidInput as exc:
        ctx.store.transition([job_id], S.RUNNING, S.FAILED, error=str(exc))
        return Outcome.FAILED
    except Exception as exc:  # noqa: BLE001 - any failure counts as an attempt
        log.warning("job %s attempt %s failed: %s", job_id, job.attempts, exc)
        if job.attempts >= MAX_ATTEMPTS:
            ctx.store.transition(
                [job_id],
                S.RUNNING,
                S.FAILED,
                error=f"failed {job.attempts} times; last error: {exc}",
            )
            return Outcome.FAILED
        ctx.store.transition([job_id], S.RUNNING, S.CLAIMED, error=str(exc))
        return Outcome.RETRY
    result_hash = "0x" + keccak(output).hex()
    inline, uri = output, ""
    if len(output) > ctx.inline_output_max:
        name = ctx.blobs.put(output)
        inline, uri = b"", ctx.blob_base_url + name
    moved = ctx.store.transition(
        [job_id],
        S.RUNNING,
        S.READY,
        result_hash=result_hash,
        output=inline,
        output_uri=uri,
        ready_at=time.time(),
        error=None,
    )
    return Outcome.READY if moved else Outcome.ALREADY_DONE
