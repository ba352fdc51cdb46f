"""`verimarket demo --verify zk-spot|zk-full`: verified inference end to end.

It starts anvil, deploys, builds the digits MLP's circuits (cached after the first time),
deploys their ezkl verifiers and registers the model's zk variant (artefacts stored as
blobs, vk hashes and verifiers in ModelRegistry), stakes a node that prices it, and starts
an inference worker, a **prove** worker (the separate ``prove`` queue), the node and the
settlement service as processes. It then submits a few zk jobs and waits: the node commits
each result with its boundary hashes, pins the challenge (zk-spot) and posts the proof(s);
the settlement service finalizes each job once it is proven. Finally every job is audited
from the chain alone (``verimarket audit``): the proofs verify, the circuits re-run give the
committed hashes and result. Everything it started is stopped on exit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils.crypto import keccak
from rich.console import Console
from rich.table import Table

from market.blobs import BlobStore
from market.chain.anvil import DEV_KEYS, Anvil, start_anvil
from market.chain.client import ChainClient
from market.chain.deploy import deploy
from market.chain.market import Market
from market.chain.types import (
    JobRequest,
    JobStatus,
    MarketParams,
    Segment,
    VerificationMode,
    ZkParams,
)
from market.demo import workspace
from market.errors import ConfigError
from market.paths import artifacts_dir
from market.procs import Child, spawn, start_stack, verimarket_argv

ETH = 10**18
PRICE = 10**15
MAX_FEE = 2 * 10**15
MODES = {"zk-spot": VerificationMode.ZK_SPOT, "zk-full": VerificationMode.ZK_FULL}
#: models whose circuits the prover builds (the digits MLP: three small segments)
ZK_MODELS = ("digits-mlp",)


@dataclass
class ZkDemoConfig:
    mode: str = "zk-spot"
    jobs: int = 4
    model: str = "digits-mlp"
    challenge_window: int = 2
    timeout_s: float = 600.0
    artifacts: Path = field(default_factory=artifacts_dir)
    keep_dir: Path | None = None


@dataclass
class ZkDemoSummary:
    mode: str
    jobs_submitted: int
    jobs_settled: int
    jobs_slashed: int
    segments_proven: dict[int, list[int]]
    audits_ok: int
    circuits_s: float
    first_settled_s: float
    wall_s: float
    gas: dict[str, int]

    @property
    def ok(self) -> bool:
        n = self.jobs_submitted
        return self.jobs_settled == n and self.audits_ok == n


class ZkDemo:
    def __init__(self, cfg: ZkDemoConfig, console: Console | None = None) -> None:
        if cfg.mode not in MODES:
            raise ConfigError(f"--verify must be one of {', '.join(MODES)}, not {cfg.mode!r}")
        if cfg.model not in ZK_MODELS:
            raise ConfigError(f"--verify needs a model with circuits: {', '.join(ZK_MODELS)}")
        if not 1 <= cfg.jobs <= 20:
            raise ConfigError("--jobs must be between 1 and 20 with --verify (each is proved)")
        self.cfg = cfg
        self.console = console or Console(stderr=True)
        self.children: list[Child] = []
        self.anvil: Anvil | None = None

    def run(self) -> ZkDemoSummary:
        with workspace(self.cfg.keep_dir, "verimarket-zkdemo-") as work:
            try:
                return self._run(work)
            finally:
                for child in reversed(self.children):
                    child.stop()
                if self.anvil is not None:
                    self.anvil.stop()

    def _run(self, work: Path) -> ZkDemoSummary:
        from market.audit import audit_job
        from market.zk_models import register_zk_model
        from prover import ProverConfig, build_model, run_segment
        from worker.models import build_models, digits_test_split, encode_digits_input

        cfg, say = self.cfg, self.console.print
        started = time.monotonic()
        say(f"[bold]verimarket demo --verify {cfg.mode}[/]: {cfg.jobs} {cfg.model} jobs")
        manifest = build_models(cfg.artifacts, [cfg.model], progress=False)[0]
        t = time.monotonic()
        with self.console.status("building the circuits (cached after the first run)"):
            circuits = build_model(cfg.artifacts / cfg.model, ProverConfig.from_env())
        circuits_s = time.monotonic() - t
        say(
            f"circuits: {len(circuits.segments)} segments, logrows "
            f"{[s.logrows for s in circuits.segments]} ({circuits_s:.1f} s)"
        )

        self.anvil = start_anvil(log_path=work / "anvil.log")
        rpc = self.anvil.rpc_url
        deployer = ChainClient(rpc, DEV_KEYS[0])
        dep = deploy(
            deployer,
            MarketParams(
                challenge_window=cfg.challenge_window, max_job_duration=600, unbonding_period=3600
            ),
        )
        dep_file = work / "deployment.json"
        dep.save(dep_file)
        market = Market(deployer, dep)
        blobs = BlobStore(work / "blobs")
        zk_model = register_zk_model(
            market, manifest, circuits, blobs=blobs, base_url="http://127.0.0.1:8000/blobs/"
        )
        say(
            f"zk variant 0x{zk_model.model_id.hex()[:16]}…: verifiers "
            f"{', '.join(v[:10] + '…' for v in zk_model.verifiers)}"
        )
        node = market.with_client(ChainClient(rpc, DEV_KEYS[1]))
        node.register_node(10 * ETH)
        node.set_model_price(zk_model.model_id, PRICE)
        # the node serves the plain model too (unverified jobs), as `node run` requires
        plain_id = market.register_model(
            manifest.artifacts_hash_bytes,
            manifest.output_scale,
            f"model://{manifest.name}",
            [Segment(*seg) for seg in manifest.chain_segments()],
        )
        node.set_model_price(plain_id, PRICE)

        env = {"VERIMARKET_ARTIFACTS": str(cfg.artifacts), "VERIMARKET_BLOB_DIR": str(blobs.root)}
        with self.console.status("starting workers (infer, prove), node and settlement service"):
            self.children = start_stack(
                work,
                dep_file,
                node_key=DEV_KEYS[1],
                settler_key=DEV_KEYS[2],
                models=[cfg.model],
                env=env,
            )
            self.children.append(
                spawn(
                    "prover",
                    verimarket_argv("worker", "--queues", "prove", "--concurrency", "1"),
                    {"VERIMARKET_HOME": str(work), **env},
                    work / "logs",
                )
            )

        agent = market.with_client(ChainClient(rpc, DEV_KEYS[6]))
        images, _ = digits_test_split()
        ids: list[int] = []
        gas: dict[str, int] = {}
        t0 = time.monotonic()
        for i in range(cfg.jobs):
            data = encode_digits_input(images[i])
            x = _decode(cfg, data)
            input_hash = run_segment(circuits.segments[0], x).input_hash  # boundary 0
            now = int(deployer.w3.eth.get_block("latest")["timestamp"])
            request = JobRequest(
                model_id=zk_model.model_id,
                input_hash=keccak(data),
                input=data,
                max_fee=MAX_FEE,
                deadline=now + 600,
                mode=MODES[cfg.mode],
            )
            fn = agent.jobs.functions.submitZkJob(
                request.as_tuple(), ZkParams(input_hash).as_tuple()
            )
            receipt: Any = agent.client.transact(fn, value=MAX_FEE)
            gas.setdefault("submitZkJob", int(receipt["gasUsed"]))
            ids += agent.job_ids_from(receipt, "JobSubmitted")
        say(f"submitted jobs {ids}")

        first_settled = 0.0
        statuses: dict[int, JobStatus] = {}
        with self.console.status("committing, challenging, proving, settling") as status:
            while time.monotonic() - t0 < cfg.timeout_s:
                statuses = {j: agent.job(j).status for j in ids}
                done = sum(s.terminal for s in statuses.values())
                if done and not first_settled:
                    first_settled = time.monotonic() - t0
                proven = sum(len(agent.zk_job(j).proven_segments) for j in ids)
                status.update(
                    f"{sum(s is JobStatus.COMMITTED for s in statuses.values())} committed, "
                    f"{proven} proofs on chain, {done}/{len(ids)} done"
                )
                if done == len(ids):
                    break
                for c in self.children:
                    if not c.alive():
                        raise RuntimeError(f"{c.name} died:\n{c.tail()}")
                time.sleep(0.5)
        segments = {j: agent.zk_job(j).proven_segments for j in ids}
        gas.update(_zk_gas(market, ids))

        audits = 0
        for j in ids:
            verdict = audit_job(agent, j, cfg.artifacts)
            audits += verdict.ok
            bad = [f"{c.name}: {c.detail}" for c in verdict.checks if c.ok is False]
            if bad:
                say(f"[red]audit of job {j}[/]: " + "; ".join(bad))
        return ZkDemoSummary(
            mode=cfg.mode,
            jobs_submitted=len(ids),
            jobs_settled=sum(s is JobStatus.SETTLED for s in statuses.values()),
            jobs_slashed=sum(s is JobStatus.SLASHED for s in statuses.values()),
            segments_proven=segments,
            audits_ok=audits,
            circuits_s=circuits_s,
            first_settled_s=first_settled,
            wall_s=time.monotonic() - started,
            gas=gas,
        )


def _decode(cfg: ZkDemoConfig, data: bytes) -> Any:
    from worker.models import load_model

    return load_model(cfg.artifacts, cfg.model).decode_input(data).numpy()


def _zk_gas(market: Market, ids: list[int]) -> dict[str, int]:
    """Gas of the node's and settler's zk transactions (first of each kind), from events."""
    from market.chain.events import LogReader

    d = market.deployment
    reader = LogReader(
        market.client, {"JobMarket": d.job_market, "ZkVerification": d.zk_verification}
    )
    names = {
        "BoundaryHashesCommitted": "commitZkResult",
        "SegmentChallenged": "challenge",
        "SegmentProven": "submitProof",
        "JobFinalized": "finalize (batch)",
        "JobSlashed": "slashUnproven",
    }
    out: dict[str, int] = {}
    for ev in reader.fetch(d.start_block, market.client.block_number()):
        label = names.get(ev.name)
        if label and label not in out and int(ev.args.get("jobId", -1)) in ids:
            receipt: Any = market.client.w3.eth.get_transaction_receipt(ev.tx_hash)  # type: ignore[arg-type]
            out[label] = int(receipt["gasUsed"])
    return out


def print_zk_summary(s: ZkDemoSummary, console: Console) -> None:
    table = Table(title=f"verimarket demo --verify {s.mode}", show_header=False)
    table.add_row(
        "jobs settled / slashed / submitted",
        f"{s.jobs_settled} / {s.jobs_slashed} / {s.jobs_submitted}",
    )
    table.add_row(
        "segments proven on chain", ", ".join(f"job {j}: {v}" for j, v in s.segments_proven.items())
    )
    table.add_row(
        "audits that check out (chain + blobs only)", f"{s.audits_ok} / {s.jobs_submitted}"
    )
    table.add_row("circuits ready in", f"{s.circuits_s:.1f} s")
    table.add_row("first job settled after submit", f"{s.first_settled_s:.1f} s")
    table.add_row("wall time", f"{s.wall_s:.1f} s")
    for name, value in s.gas.items():
        table.add_row(f"gas: {name}", f"{value:,}")
    console.print(table)
