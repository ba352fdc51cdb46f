"""The Celery application of the worker: the broker, the queues and the inference task.

Broker: Redis in production (VERIMARKET_BROKER_URL=redis://...), kombu's filesystem
transport by default, so the embedded demo needs no server. The worker runs with the
threads pool so that concurrent tasks meet in one process's dynamic batcher.
"""

from __future__ import annotations

import logging
import os
from functools import cache
from typing import Any

import torch
from celery import Celery
from celery.signals import worker_ready

from market.blobs import BlobStore
from market.config import get_settings
from worker import fstransport, redistransport
from worker.generative import GenerativeRuntime, is_generative
from worker.jobs import MAX_ATTEMPTS, JobContext, Outcome, run_job
from worker.runtime import Runtime
from worker.store import NodeStore

log = logging.getLogger(__name__)

INFER_QUEUE = "infer"
PROVE_QUEUE = "prove"
INFER_TASK = "verimarket.infer"
GENERATE_QUEUE = "generate"
GENERATE_TASK = "verimarket.generate"


def make_celery() -> Celery:
    fstransport.register()
    redistransport.register()
    s = get_settings()
    app = Celery("verimarket", include=["worker.zk_tasks"])  # the zk path's tasks
    broker = s.broker()
    conf: dict[str, Any] = {
        "broker_url": broker,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 4,
        "task_default_queue": INFER_QUEUE,
        "task_routes": {
            INFER_TASK: {"queue": INFER_QUEUE},
            GENERATE_TASK: {"queue": GENERATE_QUEUE},
        },
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
    }
    if broker.startswith(("filesystem", fstransport.ALIAS)):
        folder = s.data / "broker"
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        conf["broker_transport_options"] = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": 0.01,
        }
    else:
        conf["broker_transport_options"] = {
            "visibility_timeout": s.broker_visibility_s,
            "polling_interval": 0.01,
        }
        if s.broker_prefix:
            conf["broker_transport_options"]["global_keyprefix"] = s.broker_prefix
    app.conf.update(conf)
    return app


app = make_celery()


@cache
def context() -> JobContext:
    """The per-process context (models, batcher, store), built on first use."""
    s = get_settings()
    runtime = Runtime(
        s.artifacts,
        max_batch=s.batch_max,
        max_wait_ms=s.batch_wait_ms,
        device=s.device,
        torch_threads=None if torch.cuda.is_available() else s.torch_threads,
    )
    return JobContext(
        NodeStore(s.node_db()), runtime, BlobStore(s.blobs()), s.blob_base_url, s.inline_output_max
    )


@app.task(name=INFER_TASK, bind=True, max_retries=MAX_ATTEMPTS, acks_late=True)  # type: ignore[untyped-decorator]
def infer(self: Any, job_id: int) -> str:
    """Run job ``job_id``'s inference (idempotent; see worker.jobs.run_job)."""
    outcome = run_job(context(), job_id)
    if outcome is Outcome.RETRY:
        raise self.retry(countdown=0.5 * 2**self.request.retries)
    return outcome.value


@cache
def generative() -> GenerativeRuntime:
    """The per-process generative runtime: one continuous-batching engine per model."""
    return GenerativeRuntime(get_settings(), context())


@app.task(name=GENERATE_TASK, bind=True, max_retries=MAX_ATTEMPTS, acks_late=True)  # type: ignore[untyped-decorator]
def generate(self: Any, job_id: int) -> str:
    """Run generative job ``job_id`` in this process's engine (see worker.generative)."""
    outcome = generative().run(job_id)
    if outcome is Outcome.RETRY:
        raise self.retry(countdown=0.5 * 2**self.request.retries)
    return outcome.value


@worker_ready.connect  # type: ignore[untyped-decorator]
def _warm_up(**_: Any) -> None:
    """Load the models before taking work, then say so (the demo waits for this file)."""
    s = get_settings()
    if not torch.cuda.is_available():
        # CPU: one intra-op thread per process; scale with processes, not threads (measured:
        # batch 64 on 2 threads ran 7x slower than on 1 on a busy 2-core machine)
        torch.set_num_threads(s.torch_threads)
    ctx = context()
    for name in s.warm():
        if is_generative(name):
            generative().loop(name)
            continue
        model = ctx.runtime.model(name)
        log.info("warmed %s on %s", name, model.device)
    s.data.mkdir(parents=True, exist_ok=True)
    (s.data / f"worker-ready-{os.getpid()}").touch()


def enqueue_infer(job_id: int) -> None:
    infer.apply_async((job_id,), queue=INFER_QUEUE)


def enqueue_generate(job_id: int) -> None:
    generate.apply_async((job_id,), queue=GENERATE_QUEUE)
