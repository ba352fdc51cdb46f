"""Celery tasks of the zk path: zk inference (on the ``infer`` queue) and proofs (on the
``prove`` queue, consumed by separate worker processes, so that proving never holds up
inference: ``verimarket worker --queues prove --concurrency 1``)."""

from __future__ import annotations

from functools import cache
from typing import Any

from market.config import get_settings
from worker.celery_app import PROVE_QUEUE, app, context
from worker.jobs import MAX_ATTEMPTS, Outcome, run_job
from worker.zk import ZkWork

ZK_INFER_TASK = "verimarket.zk-infer"
PROVE_TASK = "verimarket.prove"
INFER_QUEUE = "infer"


@cache
def zk_work() -> ZkWork:
    ctx = context()
    return ZkWork(
        ctx.store,
        get_settings().artifacts,
        decode=lambda name, data: ctx.runtime.model(name).decode_input(data).numpy(),
        output_scale=lambda name: ctx.runtime.model(name).manifest.output_scale,
    )


@app.task(name=ZK_INFER_TASK, bind=True, max_retries=MAX_ATTEMPTS, acks_late=True)  # type: ignore[untyped-decorator]
def zk_infer(self: Any, job_id: int) -> str:
    """Run zk job ``job_id`` through the model's circuits (see worker.zk.ZkWork.infer)."""
    outcome = run_job(context(), job_id, compute=zk_work().infer)
    if outcome is Outcome.RETRY:
        raise self.retry(countdown=0.5 * 2**self.request.retries)
    return outcome.value


@app.task(name=PROVE_TASK, bind=True, max_retries=3, acks_late=True)  # type: ignore[untyped-decorator]
def prove(self: Any, job_id: int, segment: int) -> str:
    """Prove segment ``segment`` of committed zk job ``job_id`` (see ZkWork.prove)."""
    try:
        return zk_work().prove(job_id, segment)
    except Exception as exc:
        raise self.retry(exc=exc, countdown=1.0 * 2**self.request.retries) from exc


def enqueue_zk_infer(job_id: int) -> None:
    zk_infer.apply_async((job_id,), queue=INFER_QUEUE)


def enqueue_prove(job_id: int, segment: int) -> None:
    prove.apply_async((job_id, segment), queue=PROVE_QUEUE)
