"""`verimarket demo`: the whole product, end to end, with nothing else running.

It starts anvil, deploys, registers the model and a staked node, funds an agent contract's
purpose-bound budget, starts the worker, the node and the settlement service as separate
processes, submits N digits jobs (from the agent contract and from Python clients), waits
until every job is settled and prints what happened: jobs settled, on-chain accuracy against
direct torch accuracy, time to result, throughput, gas per job, and the money reconciled.
Everything it started is stopped on exit, also on Ctrl-C or failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from market.canonical import decode_tensor, keccak
from market.chain.anvil import DEV_KEYS, Anvil, start_anvil
from market.chain.client import ChainClient
from market.chain.deploy import deploy
from market.chain.events import LogReader
from market.chain.market import Market
from market.chain.types import JobRequest, MarketParams, Policy, Segment
from market.errors import ConfigError, VerimarketError
from market.paths import artifacts_dir
from market.procs import Child, start_stack

ETH = 10**18
PRICE = 10**15
MAX_FEE = 2 * 10**15


@contextlib.contextmanager
def workspace(keep_dir: Path | None, prefix: str) -> Iterator[Path]:
    """The demo's working folder: ``keep_dir`` if given (kept), else a temporary one that is
    removed afterwards."""
    if keep_dir:
        keep_dir.mkdir(parents=True, exist_ok=True)
        yield keep_dir
        return
    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def deploy_with_node(
    rpc: str, keys: Sequence[str], manifest: Any, challenge_window: int, work: Path
) -> tuple[Any, Path, Market, bytes]:
    """Deploy a demo market (short windows), save the deployment file in ``work``, register
    ``manifest``'s model and a staked node (``keys[1]``) serving it at ``PRICE``.
    Returns (deployment, deployment file, the deployer's Market, model id)."""
    deployer = ChainClient(rpc, keys[0])
    params = MarketParams(
        challenge_window=challenge_window, max_job_duration=600, unbonding_period=3600
    )
    dep = deploy(deployer, params)
    dep_file = work / "deployment.json"
    dep.save(dep_file)
    market = Market(deployer, dep)
    model_id = market.register_model(
        manifest.artifacts_hash_bytes,
        manifest.output_scale,
        f"model://{manifest.name}",
        [Segment(*seg) for seg in manifest.chain_segments()],
    )
    node = market.with_client(ChainClient(rpc, keys[1]))
    node.register_node(10 * ETH)
    node.set_model_price(model_id, PRICE)
    return dep, dep_file, market, model_id


@dataclass
class DemoConfig:
    jobs: int = 200
    concurrency: int = 8
    model: str = "digits-mlp"
    rpc: str | None = None
    keys: list[str] = field(default_factory=list)
    broker: str | None = None
    challenge_window: int = 2
    batch_max: int = 32
    batch_wait_ms: float = 5.0
    workers: int = 1
    timeout_s: float = 600.0
    artifacts: Path = field(default_factory=artifacts_dir)
    keep_dir: Path | None = None


@dataclass
class DemoSummary:
    jobs_submitted: int
    jobs_settled: int
    accuracy_onchain: float
    accuracy_direct: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    jobs_per_s: float
    gas_per_job: float
    reconciled: bool
    escrowed_wei: int
    paid_to_node_wei: int
    fees_wei: int
    refunded_wei: int
    via_contract: int
    via_python: int
    wall_s: float


@dataclass
class _Watch:
    """What the result watcher has seen, by job id."""

    result_at: dict[int, float] = field(default_factory=dict)
    output: dict[int, bytes] = field(default_factory=dict)
    callback_output: dict[int, bytes] = field(default_factory=dict)
    settled: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Demo:
    def __init__(self, cfg: DemoConfig, console: Console | None = None) -> None:
        self.cfg = cfg
        self.console = console or Console(stderr=True)
        self.children: list[Child] = []
        self.anvil: Anvil | None = None
        self.watch = _Watch()
        self._stop = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> DemoSummary:
        if self.cfg.jobs < 1:
            raise ConfigError("--jobs must be at least 1")
        if not 1 <= self.cfg.concurrency <= 64:
            raise ConfigError("--concurrency must be between 1 and 64")
        with workspace(self.cfg.keep_dir, "verimarket-demo-") as work:
            try:
                return self._run(work)
            finally:
                self._stop.set()
                for child in reversed(self.children):
                    child.stop()
                if self.anvil is not None:
                    self.anvil.stop()

    def _keys(self) -> list[str]:
        need = 5 + self.cfg.concurrency
        if self.cfg.rpc is None:
            return list(DEV_KEYS) + [_derived_key(i) for i in range(need)]
        if len(self.cfg.keys) < need:
            raise ConfigError(
                f"with --rpc the demo needs {need} funded keys (VERIMARKET_DEMO_KEYS, "
                "comma-separated): deployer, node, settler, funder, agent owner, and one per "
                "concurrent agent"
            )
        return self.cfg.keys

    def _run(self, work: Path) -> DemoSummary:
        cfg = self.cfg
        from worker.models import build_models, digits_test_split, encode_digits_input, load_model

        self.console.print(
            f"[bold]verimarket demo[/]: {cfg.jobs} {cfg.model} jobs, "
            f"{cfg.concurrency} concurrent agents"
        )
        manifest = build_models(cfg.artifacts, [cfg.model], progress=False)[0]
        if cfg.rpc is None:
            self.anvil = start_anvil(log_path=work / "anvil.log")
            rpc = self.anvil.rpc_url
            keys = self._keys()
            self._fund(rpc, keys[10:])
        else:
            rpc = cfg.rpc
            keys = self._keys()
        dep, dep_file, market, model_id = deploy_with_node(
            rpc, keys, manifest, cfg.challenge_window, work
        )
        deployer = market.client

        # the agent: a consumer contract whose purpose-bound budget a funder pays for
        owner = ChainClient(rpc, keys[4])
        consumer_addr, _ = owner.deploy("DigitsConsumer", dep.job_market, model_id, 200_000)
        consumer = owner.contract("DigitsConsumer", consumer_addr)
        funder = market.with_client(ChainClient(rpc, keys[3]))
        budget = cfg.jobs * MAX_FEE
        funder.open_account(
            consumer_addr,
            Policy(MAX_FEE, budget, 3600, any_model=False),
            budget,
            allowed_models=[model_id],
        )

        env = {
            "VERIMARKET_ARTIFACTS": str(cfg.artifacts),
            "VERIMARKET_BATCH_MAX": str(cfg.batch_max),
            "VERIMARKET_BATCH_WAIT_MS": str(cfg.batch_wait_ms),
        }
        if cfg.broker:
            env["VERIMARKET_BROKER_URL"] = cfg.broker
        with self.console.status("starting worker, node and settlement service"):
            self.children = start_stack(
                work,
                dep_file,
                node_key=keys[1],
                settler_key=keys[2],
                models=[cfg.model],
                env=env,
                workers=cfg.workers,
            )

        images, labels = digits_test_split()
        n = cfg.jobs
        idx = [i % len(images) for i in range(n)]
        inputs = [encode_digits_input(images[i]) for i in idx]
        setup_block = deployer.block_number()

        watcher = threading.Thread(
            target=self._watch_results, args=(market, consumer_addr), daemon=True
        )
        watcher.start()
        submitted: dict[int, tuple[int, float]] = {}  # job id -> (input index, submit time)
        via_contract: set[int] = set()
        sub_lock = threading.Lock()
        errors: list[BaseException] = []

        def agent(slot: int) -> None:
            mine = list(range(slot, n, cfg.concurrency))
            client = ChainClient(rpc, keys[5 + slot])
            agent_market = market.with_client(client)
            for k in mine:
                if self._stop.is_set():
                    return
                deadline = int(time.time()) + 300
                t0 = time.perf_counter()
                try:
                    if slot == 0:
                        fn = consumer.functions.classifyFromVault(inputs[k], MAX_FEE, deadline)
                        receipt = owner.transact(fn)
                        job_id = market.job_ids_from(receipt, "JobSubmitted")[0]
                    else:
                        job_id = agent_market.submit_job(
                            JobRequest(
                                model_id=model_id,
                                input_hash=keccak(inputs[k]),
                                input=inputs[k],
                                max_fee=MAX_FEE,
                                deadline=deadline,
                            )
                        )
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                    return
                with sub_lock:
                    submitted[job_id] = (k, t0)
                    if slot == 0:
                        via_contract.add(job_id)
                while not self._stop.is_set():
                    with self.watch.lock:
                        if job_id in self.watch.result_at:
                            break
                    time.sleep(0.005)

        t_start = time.perf_counter()
        agents = [
            threading.Thread(target=agent, args=(s,), daemon=True)
            for s in range(min(cfg.concurrency, n))
        ]
        for t in agents:
            t.start()
        self._progress(n, submitted, agents, errors)
        wall = time.perf_counter() - t_start
        self._stop.set()
        if errors:
            raise errors[0]

        # ---------------------------------------------------------------- figures
        model = load_model(cfg.artifacts, cfg.model)
        direct = model.run_batch([model.decode_input(x) for x in inputs])
        direct_pred = [int(np.argmax(o)) for o in direct]
        truth = [int(labels[i]) for i in idx]
        pred_onchain: dict[int, int] = {}
        latencies: list[float] = []
        for job_id, (k, t0) in sorted(submitted.items()):
            out = (
                self.watch.callback_output.get(job_id)
                if job_id in via_contract
                else self.watch.output.get(job_id)
            )
            if out is None:
                raise VerimarketError(f"job {job_id}: no output received on chain")
            pred_onchain[k] = int(np.argmax(decode_tensor(out).to_float()))
            latencies.append((self.watch.result_at[job_id] - t0) * 1000)
        acc_onchain = float(np.mean([pred_onchain[k] == truth[k] for k in range(n)]))
        acc_direct = float(np.mean([direct_pred[k] == truth[k] for k in range(n)]))
        first_submit = min(t0 for _, t0 in submitted.values())
        last_result = max(self.watch.result_at.values())
        gas = _gas_since(deployer, setup_block + 1)
        money = self._reconcile(market, submitted, consumer_addr, budget)
        p = np.percentile(latencies, [50, 95, 99])
        return DemoSummary(
            jobs_submitted=len(submitted),
            jobs_settled=len(self.watch.settled),
            accuracy_onchain=acc_onchain,
            accuracy_direct=acc_direct,
            p50_ms=round(float(p[0]), 1),
            p95_ms=round(float(p[1]), 1),
            p99_ms=round(float(p[2]), 1),
            jobs_per_s=round(n / (last_result - first_submit), 2),
            gas_per_job=round(gas / n),
            via_contract=len(via_contract),
            via_python=len(submitted) - len(via_contract),
            wall_s=round(wall, 2),
            **money,
        )

    # ------------------------------------------------------------------ helpers
    def _fund(self, rpc: str, keys: list[str]) -> None:
        """Give the demo's extra agent keys ETH from anvil's first account."""
        bank = ChainClient(rpc, DEV_KEYS[9])
        for k in keys:
            addr = ChainClient(rpc, k).address
            bank.send(to=addr, value=10 * ETH, gas=21_000)

    def _watch_results(self, market: Market, consumer: str) -> None:
        reader = LogReader(
            market.client, {"JobMarket": market.deployment.job_market, "DigitsConsumer": consumer}
        )
        cursor = market.client.block_number()
        while not self._stop.is_set():
            try:
                head = market.client.block_number()
                if head > cursor:
                    events = reader.fetch(cursor + 1, head)
                    now = time.perf_counter()
                    with self.watch.lock:
                        for ev in events:
                            a = ev.args
                            if ev.name == "ResultCommitted":
                                self.watch.result_at.setdefault(int(a["jobId"]), now)
                                self.watch.output[int(a["jobId"])] = bytes(a["output"])
                            elif ev.name == "DigitClassified":
                                self.watch.callback_output[int(a["jobId"])] = bytes(a["output"])
                            elif ev.name == "JobFinalized":
                                self.watch.settled[int(a["jobId"])] = (
                                    int(a["nodePayout"]),
                                    int(a["fee"]),
                                    int(a["refund"]),
                                )
                    cursor = head
            except VerimarketError:
                pass
            time.sleep(0.01)

    def _progress(
        self,
        n: int,
        submitted: dict[int, Any],
        agents: list[threading.Thread],
        errors: list[BaseException],
    ) -> None:
        deadline = time.monotonic() + self.cfg.timeout_s
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as bar:
            t_sub = bar.add_task("submitted", total=n)
            t_res = bar.add_task("results on chain", total=n)
            t_set = bar.add_task("settled", total=n)
            while True:
                with self.watch.lock:
                    res = sum(1 for j in submitted if j in self.watch.result_at)
                    settled = sum(1 for j in submitted if j in self.watch.settled)
                bar.update(t_sub, completed=len(submitted))
                bar.update(t_res, completed=res)
                bar.update(t_set, completed=settled)
                if settled >= n or errors:
                    return
                for c in self.children:
                    if not c.alive():
                        raise VerimarketError(f"{c.name} died:\n{c.tail()}")
                if time.monotonic() > deadline:
                    raise VerimarketError(
                        f"timed out after {self.cfg.timeout_s} s with {settled}/{n} settled"
                    )
                time.sleep(0.1)

    def _reconcile(
        self, market: Market, submitted: dict[int, Any], consumer: str, budget: int
    ) -> dict[str, Any]:
        """Every wei escrowed is accounted for, and the contracts hold exactly what they owe."""
        escrowed = paid = fees = refunded = 0
        vault_escrow = vault_refund = 0
        payers: set[str] = set()
        for job_id in submitted:
            job = market.job(job_id)
            node_pay, fee, refund = self.watch.settled[job_id]
            escrowed += job.max_fee
            paid, fees, refunded = paid + node_pay, fees + fee, refunded + refund
            payers.add(job.payer)
            if job.from_vault:
                vault_escrow, vault_refund = vault_escrow + job.max_fee, vault_refund + refund
        d = market.deployment
        accounts = {d.treasury, *payers, *_node_addresses(market)}
        owed = sum(market.withdrawable(a) for a in accounts)
        held = market.client.balance(d.job_market)
        vault_ok = (
            market.vault_balance(consumer)
            == budget - vault_escrow + vault_refund
            == market.client.balance(d.payment_vault)
        )
        reconciled = (
            escrowed == paid + fees + refunded
            and market.total_escrow() == 0
            and held == owed
            and vault_ok
        )
        return {
            "reconciled": reconciled,
            "escrowed_wei": escrowed,
            "paid_to_node_wei": paid,
            "fees_wei": fees,
            "refunded_wei": refunded,
        }


def _node_addresses(market: Market) -> set[str]:
    reader = LogReader(market.client, {"NodeRegistry": market.deployment.node_registry})
    evs = reader.fetch(market.deployment.start_block, market.client.block_number())
    return {str(e.args["node"]) for e in evs if e.name == "NodeRegistered"}


def _derived_key(i: int) -> str:
    return "0x" + keccak(f"verimarket-demo-agent-{i}".encode()).hex()


def _gas_since(client: ChainClient, first_block: int) -> int:
    total = 0
    for b in range(first_block, client.block_number() + 1):
        block = client.w3.eth.get_block(b, full_transactions=False)
        for tx in block["transactions"]:
            total += int(client.w3.eth.get_transaction_receipt(tx)["gasUsed"])  # type: ignore[arg-type]
    return total


def print_summary(s: DemoSummary, console: Console) -> None:
    t = Table(title="verimarket demo", show_header=True)
    t.add_column("figure")
    t.add_column("value", justify="right")
    rows = [
        ("jobs settled", f"{s.jobs_settled} / {s.jobs_submitted}"),
        ("  via agent contract (callback) / Python client", f"{s.via_contract} / {s.via_python}"),
        ("accuracy of outputs received on chain", f"{s.accuracy_onchain:.4f}"),
        ("accuracy of the same model run directly in torch", f"{s.accuracy_direct:.4f}"),
        (
            "time from submit to result p50 / p95 / p99",
            f"{s.p50_ms:.0f} / {s.p95_ms:.0f} / {s.p99_ms:.0f} ms",
        ),
        ("jobs per second (first submit to last result)", f"{s.jobs_per_s:.1f}"),
        ("gas per job (submit, claim, commit, finalize)", f"{s.gas_per_job:,.0f}"),
        ("escrowed", f"{s.escrowed_wei} wei"),
        (
            "  = node earnings + protocol fees + refunds",
            f"{s.paid_to_node_wei} + {s.fees_wei} + {s.refunded_wei}",
        ),
        ("money reconciled", "yes" if s.reconciled else "NO"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)


def summary_json(s: DemoSummary) -> str:
    return json.dumps(asdict(s))


def demo_keys_from_env() -> list[str]:
    return [k for k in os.environ.get("VERIMARKET_DEMO_KEYS", "").split(",") if k]
