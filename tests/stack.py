"""A running node stack on the test chain: the digits model registered, a staked node, and
inference worker(s), node and settlement service as real processes (shared by e2e and
fault tests)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis
from eth_utils.crypto import keccak

from market.chain.events import Event, LogReader
from market.chain.market import Market
from market.chain.types import JobRequest, JobStatus, Segment
from market.paths import artifacts_dir
from market.procs import Child, spawn, start_stack, verimarket_argv
from worker.models import build_models, digits_test_split, encode_digits_input

from .conftest import Chain

REDIS_URL = "redis://127.0.0.1:6379/0"
PRICE, MAX_FEE = 10**15, 2 * 10**15


@dataclass
class Stack:
    chain: Chain
    work: Path
    model_id: bytes
    children: list[Child]
    env: dict[str, str]
    agent: Market = field(init=False)
    model_ids: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.agent = self.chain.market(6)

    def submit_digits(self, n: int, *, deadline_s: int = 300, offset: int = 0) -> list[int]:
        images, _ = digits_test_split()
        now = int(self.chain.client(0).w3.eth.get_block("latest")["timestamp"])
        inputs = [encode_digits_input(images[(offset + i) % len(images)]) for i in range(n)]
        ids: list[int] = []
        for i in range(0, n, 32):
            ids += self.agent.submit_jobs(
                [
                    JobRequest(
                        model_id=self.model_id,
                        input_hash=keccak(x),
                        input=x,
                        max_fee=MAX_FEE,
                        deadline=now + deadline_s,
                    )
                    for x in inputs[i : i + 32]
                ]
            )
        return ids

    def wait_terminal(
        self, ids: list[int], timeout: float = 180.0, check_alive: bool = True
    ) -> dict[int, JobStatus]:
        """Wait until every job in ``ids`` is terminal. Once every one still open is
        committed, chain time jumps past the challenge window (the settlement service then
        finalizes them on its own) instead of the test sitting through it in wall time."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = {j: self.agent.job(j).status for j in ids}
            if all(s.terminal for s in statuses.values()) or time.monotonic() > deadline:
                return statuses
            if all(s.terminal or s is JobStatus.COMMITTED for s in statuses.values()):
                self.chain.warp(self.chain.deployment.params.challenge_window + 1)
            if check_alive:
                for c in self.children:
                    assert c.alive(), f"{c.name} died:\n{c.tail()}"
            time.sleep(0.5)

    def events(self) -> list[Event]:
        reader = LogReader(self.agent.client, {"JobMarket": self.chain.deployment.job_market})
        return reader.fetch(self.chain.deployment.start_block, self.agent.client.block_number())

    def respawn_worker(self, index: int) -> Child:
        child = spawn(
            f"worker-{index}",
            verimarket_argv("worker"),
            {"VERIMARKET_HOME": str(self.work), **self.env},
            self.work / "logs",
        )
        self.children[index] = child
        return child

    def stop(self) -> None:
        for c in reversed(self.children):
            c.stop()


def redis_prefix() -> Iterator[str]:
    prefix = f"vm-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=f"{prefix}*"))
    if keys:
        r.delete(*keys)


def start_node_stack(
    chain: Chain,
    work: Path,
    env: Mapping[str, str],
    *,
    workers: int = 1,
    models: tuple[str, ...] = ("digits-mlp",),
) -> Stack:
    """Register ``models`` and a node (key 1) serving them on ``chain``, then start the
    processes. The stack's ``model_id`` is the first model's."""
    manifests = build_models(artifacts_dir(), list(models), progress=False)
    node = chain.market(1)
    node.register_node(20 * 10**18)
    ids = []
    for manifest in manifests:
        model_id = chain.market(0).register_model(
            manifest.artifacts_hash_bytes,
            manifest.output_scale,
            f"model://{manifest.name}",
            [Segment(*s) for s in manifest.chain_segments()],
        )
        node.set_model_price(model_id, PRICE)
        ids.append(model_id)
    dep_file = work / "deployment.json"
    chain.deployment.save(dep_file)
    full_env = {
        "VERIMARKET_ARTIFACTS": str(artifacts_dir()),
        "VERIMARKET_WARM_MODELS": ",".join(models),
        **env,
    }
    key = chain.client(1).account.key.to_0x_hex()  # type: ignore[union-attr]
    settler = chain.client(2).account.key.to_0x_hex()  # type: ignore[union-attr]
    children = start_stack(
        work,
        dep_file,
        node_key=key,
        settler_key=settler,
        models=list(models),
        env=full_env,
        workers=workers,
    )
    stack = Stack(chain, work, ids[0], children, full_env)
    stack.model_ids = dict(zip(models, ids, strict=True))
    return stack
