"""The node process: poller, committer and the transaction manager of one node key.

Long-running loops share one small shape (setup / run_forever / stop), wired here. The
Celery workers that run inference are separate processes (``verimarket worker``); this
process queues work to them and commits what they finish.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from market.blobs import BlobStore
from market.chain.client import ChainClient
from market.chain.market import Market
from market.chain.reorg import ReorgSettings, service_monitor
from market.chain.txmanager import GasPolicy, TxManager
from market.chain.types import ZERO_ADDRESS, Deployment
from market.config import Settings
from market.errors import ChainError, ConfigError
from worker.cache import CacheServer, ResultCache
from worker.committer import Committer
from worker.generative import GenerativeInputCheck, is_generative
from worker.models import LoadedModel
from worker.pipeline_loop import BlobSource, pipeline_loop
from worker.poller import Poller, PollerConfig, ServedModel
from worker.redundant import redundant_loop
from worker.runtime import Runtime
from worker.store import NodeJobState, NodeStore
from worker.zk import ZkDriver, ZkWork, serve_zk

log = logging.getLogger(__name__)


T = TypeVar("T")


def retrying(fn: Callable[[], T], attempts: int = 20, first_delay: float = 0.2) -> T:
    """Call ``fn`` until it succeeds, backing off on chain and network errors (a node must
    start even while its RPC endpoint is flaky); the last error propagates."""
    delay = first_delay
    for i in range(attempts):
        try:
            return fn()
        except (ChainError, OSError) as exc:
            if i == attempts - 1:
                raise
            log.warning("retrying after %s", exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


@dataclass
class NodeService:
    settings: Settings
    deployment: Deployment
    private_key: str
    models: Sequence[str]
    enqueue: Callable[[int], None]
    #: where generative jobs go (the ``generate`` queue); None: with the others
    enqueue_generate: Callable[[int], None] | None = None
    poll_interval: float = 0.05
    commit_interval: float = 0.02
    gas: GasPolicy = field(default_factory=GasPolicy)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _generative: set[str] = field(default_factory=set)
    #: the zk path (worker.zk): zk inference on the infer queue, proofs on the prove queue;
    #: None: zk jobs are refused
    enqueue_zk: Callable[[int], None] | None = None
    enqueue_prove: Callable[[int, int], None] | None = None
    zk: ZkDriver | None = None

    def setup(self) -> None:
        client = ChainClient(
            self.deployment.rpc_url, self.private_key, timeout=self.settings.rpc_timeout_s
        )
        self.market = Market(client, self.deployment)
        self.store = NodeStore(self.settings.node_db())
        self.txm = TxManager(client, self.store.sessions, self.gas)
        runtime = Runtime(self.settings.artifacts, device="cpu")
        served = []
        self._generative = {name for name in self.models if is_generative(name)}
        for name in self.models:
            model: LoadedModel | GenerativeInputCheck
            if name in self._generative:
                model = GenerativeInputCheck(self.settings.artifacts, name)
                check: Callable[[bytes], object] = model
            else:
                model = runtime.model(name)
                check = model.decode_input
            model_id = model.manifest.model_id_bytes
            price = retrying(partial(self.market.price_of, client.address, model_id))
            if price is None:
                raise ConfigError(
                    f"node {client.address} does not serve {name} on chain; run "
                    f"`verimarket node register --model {name} --price WEI` first"
                )
            served.append(ServedModel(model_id, name, price, check))
        zk_work = self._setup_zk(runtime, served)
        index = None
        if self.settings.poller_source == "index":
            from market.db import make_engine, make_sessions
            from market.db.models import database_url

            index = make_sessions(make_engine(database_url(self.settings)))
        self.poller = Poller(
            self.market,
            self.txm,
            self.store,
            served,
            self.route,
            PollerConfig(),
            index=index,
            zk=zk_work,
        )
        # jobs whose model and input match a settled job are answered from the cache at
        # the node's cache price (inert until it sets one: docs/cache.md)
        cache = CacheServer(self.market, ResultCache(self.store.engine), self.txm)
        self.poller.serve_hook = cache.serve_seen
        # k-of-n redundant jobs of the classifier models it serves (docs/redundancy.md)
        classifiers = [
            m for m in served if m.name in self.models and m.name not in self._generative
        ]
        self.redundant = redundant_loop(
            self.market,
            self.txm,
            self.store,
            {m.model_id: runtime.model(m.name) for m in classifiers},
            self.settings.data / "redundant",
        )
        # pipelined jobs: the segments this node is configured to take (docs/pipeline.md)
        self.pipeline = pipeline_loop(
            self.market,
            self.txm,
            self.store,
            self.settings.pipeline_segments,
            self.settings.artifacts,
            BlobSource(BlobStore(self.settings.blobs()), self.settings.blob_base_url),
        )
        self.committer = Committer(
            self.market,
            self.txm,
            self.store,
            max_batch=self.settings.batch_max,
            skip=self.zk.zk_ids if self.zk else None,
        )
        self.monitor = service_monitor(client, "node", self.settings.data)
        self.txm.observer = self.poller.observer = self.monitor.observe
        retrying(self.recover)

    def check_reorg(self) -> int:
        """A reorg re-opens this key's transactions dropped with their blocks (re-sent with
        the same nonce and bytes) and sends the poller back to the common ancestor."""
        reorg = self.monitor.check()
        if reorg is not None:
            self.txm.reorged(reorg.ancestor)
            self.poller.rewind(reorg.ancestor)
        self.txm.step()  # re-sent transactions nobody waits on still get their receipt
        return 0  # never counts as work: it runs on its interval

    def _setup_zk(self, runtime: Runtime, served: list[ServedModel]) -> ZkWork | None:
        """Serve the zk variants of our models that this node has priced (worker.zk)."""
        if self.enqueue_zk is None or self.enqueue_prove is None:
            return None
        if self.deployment.zk_verification == ZERO_ADDRESS:
            return None
        work = ZkWork(
            self.store,
            self.settings.artifacts,
            decode=lambda name, data: runtime.model(name).decode_input(data).numpy(),
            output_scale=lambda name: runtime.model(name).manifest.output_scale,
        )
        address = self.market.client.address
        plain = [runtime.model(m).manifest for m in self.models if m not in self._generative]
        variants = serve_zk(self.market, work, plain, partial(self.market.price_of, address))
        if not variants:
            return None
        for name, model_id, price in variants:
            served.append(ServedModel(model_id, name, price, runtime.model(name).decode_input))
            log.info("serving zk jobs of %s as 0x%s", name, model_id.hex())
        self.zk = ZkDriver(
            self.market,
            self.txm,
            self.store,
            self.enqueue_prove,
            blobs=BlobStore(self.settings.blobs()),
            blob_base_url=self.settings.blob_base_url,
        )
        return work

    def route(self, job_id: int) -> None:
        """Queue a claimed job for its kind of worker (generative jobs: their own queue)."""
        if self.zk is not None and self.enqueue_zk is not None and self.zk.zk_ids([job_id]):
            self.enqueue_zk(job_id)
            return
        if self.enqueue_generate is not None and self._generative:
            job = self.store.get(job_id)
            if job is not None and job.model_name in self._generative:
                self.enqueue_generate(job_id)
                return
        self.enqueue(job_id)

    def recover(self) -> None:
        """Finish what a previous run left: pending transactions, half-moved jobs, lost tasks."""
        while self.txm.pending_count():
            self.txm.step()
        self.poller.recover()
        self.committer.recover()
        if self.zk is not None:
            self.zk.recover()
        for state in (NodeJobState.CLAIMED, NodeJobState.RUNNING):
            for job_id in self.store.ids_in(state, limit=100_000):
                self.route(job_id)

    def sweep(self) -> int:
        """Re-queue claimed jobs no worker has finished within the lease (a lost task, a
        killed worker, a restarted broker). Inference is idempotent, so a duplicate is safe."""
        cutoff = time.time() - self.settings.task_lease_s
        again = [
            j.job_id
            for state in (NodeJobState.CLAIMED, NodeJobState.RUNNING)
            for j in self.store.jobs_in(state, limit=10_000)
            if max(j.claimed_at or 0, j.started_at or 0, j.updated_at or 0) < cutoff
        ]
        for job_id in again:
            self.route(job_id)
        if again:
            self.store.stamp(again, updated_at=time.time())
            log.info("re-queued %d jobs past their lease", len(again))
        return 0  # never counts as work: the sweeper runs on its interval

    def _loop(self, body: Callable[[], object], interval: float, name: str) -> None:
        while not self._stop.is_set():
            try:
                did = body()
            except Exception:
                log.exception("%s round failed", name)
                did = 0
            if not did:
                self._stop.wait(interval)

    def start(self) -> None:
        for body, interval, name in (
            (self.sweep, self.settings.task_lease_s / 4, "sweeper"),
            (self.check_reorg, ReorgSettings().reorg_check_s, "reorgs"),
            (self.poller.poll, self.poll_interval, "poller"),
            (self.committer.commit_ready, self.commit_interval, "committer"),
            *([(self.redundant.step, 1.0, "redundant")] if self.redundant else []),
            *([(self.pipeline.step, 0.5, "pipeline")] if self.pipeline else []),
            *(
                [(self.zk.step, self.poll_interval, "zk"), (self.zk.requeue, 30.0, "zk-sweep")]
                if self.zk is not None
                else []
            ),
        ):
            t = threading.Thread(
                target=self._loop, args=(body, interval, name), name=name, daemon=True
            )
            t.start()
            self._threads.append(t)

    def run_forever(self) -> None:
        self.start()
        self._stop.wait()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
