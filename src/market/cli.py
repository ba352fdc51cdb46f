"""The `verimarket` command line: deploy, models, node, agent, demo.

Every error a user can cause ends as one line saying what went wrong and what to do, with
exit code 1 (never a traceback); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from market.errors import VerimarketError

app = typer.Typer(
    no_args_is_help=True, help="verimarket: verifiable AI inference for on-chain agents."
)
models_app = typer.Typer(no_args_is_help=True, help="Build, list and show models.")
node_app = typer.Typer(no_args_is_help=True, help="Operate a node: register, run, status.")
app.add_typer(models_app, name="models")
app.add_typer(node_app, name="node")

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

DeploymentOpt = Annotated[
    Path | None,
    typer.Option("--deployment", help="deployment file (default: VERIMARKET_DEPLOYMENT_FILE)"),
]
RpcOpt = Annotated[
    str | None, typer.Option("--rpc", help="JSON-RPC URL (default: VERIMARKET_RPC_URL)")
]
KeyOpt = Annotated[
    str | None,
    typer.Option("--key", help="private key (default: VERIMARKET_PRIVATE_KEY)", show_default=False),
]


def friendly(fn: F) -> F:
    """Turn verimarket errors into one clear line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from worker.models.errors import WorkerError

        try:
            return fn(*args, **kwargs)
        except (VerimarketError, WorkerError) as exc:
            if os.environ.get("VERIMARKET_DEBUG"):
                raise
            err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True, highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@friendly
def deploy(
    rpc: RpcOpt = None,
    key: KeyOpt = None,
    out: Annotated[Path | None, typer.Option(help="deployment file to write")] = None,
) -> None:
    """Deploy the protocol contracts and write the deployment file."""
    from market.chain.client import ChainClient
    from market.chain.deploy import deploy as do_deploy
    from market.config import get_settings
    from market.errors import ConfigError

    s = get_settings()
    key = key or s.private_key
    if not key:
        raise ConfigError("deploying needs a funded key: pass --key or set VERIMARKET_PRIVATE_KEY")
    client = ChainClient(rpc or s.rpc_url, key)
    dep = do_deploy(client)
    target = out or s.deployment_file
    dep.save(target)
    console.print(f"deployed to chain {dep.chain_id}: market {dep.job_market}; wrote {target}")


@models_app.command("build")
@friendly
def models_build(
    out: Annotated[Path | None, typer.Option(help="artefact folder")] = None,
    only: Annotated[list[str] | None, typer.Option("--model", help="build only these")] = None,
) -> None:
    """Build the models offline and deterministically (digits MLP and CNN, MiniLM)."""
    from market.config import get_settings
    from worker.models import build_models

    target = out or get_settings().artifacts
    manifests = build_models(target, only or None, progress=True)
    for m in manifests:
        console.print(f"{m.name}: model id 0x{m.model_id[2:]} ({len(m.segments)} segments)")


def _load_deployment(path: Path | None) -> Any:
    from market.chain.types import Deployment
    from market.config import get_settings
    from market.errors import ConfigError

    target = path or get_settings().deployment_file
    if not target.exists():
        raise ConfigError(
            f"no deployment file at {target}: run `verimarket deploy` or pass --deployment"
        )
    return Deployment.load(target)


def _key(key: str | None, what: str) -> str:
    from market.config import get_settings
    from market.errors import ConfigError

    k = key or get_settings().private_key
    if not k:
        raise ConfigError(f"{what} needs a key: pass --key or set VERIMARKET_PRIVATE_KEY")
    return k


@node_app.command("run")
@friendly
def node_run(
    model: Annotated[list[str], typer.Option("--model", help="model names to serve")],
    deployment: DeploymentOpt = None,
    key: KeyOpt = None,
) -> None:
    """Run the node: find jobs, claim them, queue inference, commit results."""
    import signal
    import threading

    from market.config import get_settings
    from worker.celery_app import enqueue_generate, enqueue_infer
    from worker.node import NodeService
    from worker.zk_tasks import enqueue_prove, enqueue_zk_infer

    s = get_settings()
    svc = NodeService(
        s,
        _load_deployment(deployment),
        _key(key, "running a node"),
        model,
        enqueue_infer,
        enqueue_generate=enqueue_generate,
        enqueue_zk=enqueue_zk_infer,
        enqueue_prove=enqueue_prove,
    )
    svc.setup()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    svc.start()
    s.data.mkdir(parents=True, exist_ok=True)
    (s.data / "node-ready").touch()
    console.print(f"node {svc.market.client.address} serving {', '.join(model)}")
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        svc.stop()


@node_app.command("register")
@friendly
def node_register(
    stake: Annotated[float, typer.Option(help="stake to deposit, in ETH")] = 1.0,
    model: Annotated[list[str] | None, typer.Option("--model", help="model names to serve")] = None,
    price: Annotated[int, typer.Option(help="price per job in wei")] = 10**15,
    deployment: DeploymentOpt = None,
    key: KeyOpt = None,
) -> None:
    """Register as a node with a stake and declare the models served and their price."""
    from market.chain.client import ChainClient
    from market.chain.market import Market
    from market.config import get_settings
    from market.errors import ConfigError
    from worker.generative import GenerativeInputCheck, is_generative
    from worker.models import load_model

    def manifest_of(name: str) -> Any:
        if is_generative(name):  # no weights needed to register a price
            return GenerativeInputCheck(get_settings().artifacts, name).manifest
        return load_model(get_settings().artifacts, name).manifest

    dep = _load_deployment(deployment)
    m = Market(ChainClient(dep.rpc_url, _key(key, "registering a node")), dep)
    # check everything first, so a refusal leaves nothing half-done on chain
    if price <= 0:
        raise ConfigError("--price must be a positive number of wei")
    manifests = [manifest_of(name) for name in model or []]
    for man in manifests:
        if not m.is_model_registered(man.model_id_bytes):
            raise ConfigError(
                f"{man.name} is not registered on this deployment: "
                f"`verimarket models register {man.name}` first"
            )
    info = m.node_info(m.client.address)
    wei = int(stake * 10**18)
    if not info.registered:
        m.register_node(wei)
    elif wei:
        m.add_stake(wei)
    for man in manifests:
        m.set_model_price(man.model_id_bytes, price)
        console.print(f"serving {man.name} (0x{man.model_id_bytes.hex()}) at {price} wei")
    info = m.node_info(m.client.address)
    console.print(f"node {m.client.address}: stake {info.stake} wei, locked {info.locked} wei")


@app.command()
@friendly
def worker(
    concurrency: Annotated[int, typer.Option(help="concurrent tasks (threads)")] = 32,
    queues: Annotated[
        str, typer.Option(help="queues to consume (infer: classifiers, generate: LLM jobs)")
    ] = "infer,generate",
    loglevel: Annotated[str, typer.Option()] = "warning",
) -> None:
    """Run a Celery inference worker (threads pool: tasks meet in one batcher)."""
    from worker.celery_app import app as celery_app

    celery_app.worker_main(
        [
            "worker",
            "-P",
            "threads",
            "-c",
            str(concurrency),
            "-Q",
            queues,
            "-l",
            loglevel,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


@app.command()
@friendly
def settle(
    deployment: DeploymentOpt = None,
    key: KeyOpt = None,
    interval: Annotated[float, typer.Option(help="seconds between rounds")] = 0.25,
) -> None:
    """Run the settlement service: finalize after the window, expire overdue jobs."""
    import signal
    import threading

    from market.chain.client import ChainClient
    from market.chain.market import Market
    from market.chain.reorg import service_monitor
    from market.chain.txmanager import TxManager
    from market.config import get_settings
    from market.db import Base, make_engine, make_sessions
    from market.db.txstore import ChainTx
    from market.settlement import Settler

    s = get_settings()
    dep = _load_deployment(deployment)
    client = ChainClient(dep.rpc_url, _key(key, "settling"), timeout=s.rpc_timeout_s)
    s.data.mkdir(parents=True, exist_ok=True)
    if s.database_url:  # the market database: its schema comes from the migrations
        from market.cli_index import upgrade

        upgrade(s.database_url)
        engine = make_engine(s.database_url)
    else:  # embedded default: the settler's own SQLite file
        engine = make_engine(f"sqlite:///{s.data / 'settler.sqlite'}")
        Base.metadata.create_all(engine, tables=[Base.metadata.tables[ChainTx.__tablename__]])
    monitor = service_monitor(client, "settler", s.data)
    txm = TxManager(client, make_sessions(engine))
    settler = Settler(Market(client, dep), txm, monitor=monitor)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    (s.data / "settler-ready").touch()
    with contextlib.suppress(KeyboardInterrupt):
        settler.run(stop, interval)


def _read_input(path: Path, model: str) -> bytes:
    """Job input bytes from a file: .npy / .json arrays and .txt text are encoded for the
    model; anything else is taken as already-canonical bytes."""
    import json as _json

    import numpy as np

    from market.errors import ConfigError
    from worker.generative import is_generative
    from worker.models import encode_digits_input, encode_text_input

    if not path.exists():
        raise ConfigError(f"input file {path} does not exist")
    if is_generative(model):  # .txt: one question; else the canonical request JSON itself
        from worker.llm import encode_generation_input

        if path.suffix == ".txt":
            return encode_generation_input(path.read_text().strip())
        return path.read_bytes()
    if path.suffix == ".txt":
        return encode_text_input(path.read_text().strip())
    if path.suffix in (".npy", ".json"):
        try:
            arr = (
                np.load(path) if path.suffix == ".npy" else np.array(_json.loads(path.read_text()))
            )
        except (ValueError, OSError) as exc:
            raise ConfigError(f"cannot read an array from {path}: {exc}") from exc
        if not model.startswith("digits"):
            raise ConfigError(f"array inputs are for the digits models, not {model}")
        return encode_digits_input(arr.reshape(8, 8))
    return path.read_bytes()


@app.command()
@friendly
def submit(
    model: Annotated[str, typer.Option(help="model name (its id is read from the artefacts)")],
    input_file: Annotated[
        Path,
        typer.Option(
            "--input",
            help=".npy/.json image, .txt text (a question for smollm2), or canonical bytes",
        ),
    ],
    max_fee: Annotated[int, typer.Option(help="escrow in wei")] = 2 * 10**15,
    deadline_s: Annotated[int, typer.Option(help="seconds until the deadline")] = 300,
    vault_agent: Annotated[
        str | None, typer.Option(help="pay from this agent's vault account")
    ] = None,
    wait: Annotated[bool, typer.Option(help="wait for the output")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the output")] = 120.0,
    deployment: DeploymentOpt = None,
    key: KeyOpt = None,
) -> None:
    """Submit a job, print its id, and wait for its output on chain."""
    import time

    import numpy as np

    from market.canonical import decode_tensor, keccak
    from market.chain.client import ChainClient
    from market.chain.events import LogReader
    from market.chain.market import Market
    from market.chain.types import ZERO_ADDRESS, JobRequest
    from market.config import get_settings
    from market.errors import ConfigError
    from worker.generative import GenerativeInputCheck, is_generative
    from worker.models import load_model

    dep = _load_deployment(deployment)
    m = Market(ChainClient(dep.rpc_url, _key(key, "submitting a job")), dep)
    data = _read_input(input_file, model)
    llm = GenerativeInputCheck(get_settings().artifacts, model) if is_generative(model) else None
    if llm is not None:
        manifest = llm.manifest
        llm(data)  # the node's own pre-claim check: refuse bad input before paying
    else:
        manifest = load_model(get_settings().artifacts, model).manifest
        load_model(get_settings().artifacts, model).decode_input(data)  # refuse bad input first
    if not m.is_model_registered(manifest.model_id_bytes):
        raise ConfigError(f"model {model} is not registered on this deployment")
    start = m.client.block_number()
    job_id = m.submit_job(
        JobRequest(
            model_id=manifest.model_id_bytes,
            input_hash=keccak(data),
            input=data,
            max_fee=max_fee,
            deadline=int(m.client.now()) + deadline_s,
            vault_agent=vault_agent or ZERO_ADDRESS,
        )
    )
    console.print(f"job {job_id} submitted")
    if not wait:
        return
    reader = LogReader(m.client, {"JobMarket": dep.job_market})
    end = time.monotonic() + timeout
    with console.status(f"waiting for job {job_id}'s result"):
        while time.monotonic() < end:
            for ev in reader.fetch(start, m.client.block_number()):
                if ev.name == "ResultCommitted" and int(ev.args["jobId"]) == job_id:
                    out = bytes(ev.args["output"])
                    console.print(f"result hash 0x{bytes(ev.args['resultHash']).hex()}")
                    if out and llm is not None:
                        ids = [int(v) for v in decode_tensor(out).values.reshape(-1)]
                        console.print(f"token ids {ids}")
                        console.print(f"answer: {llm.codec.decode(ids)}")
                    elif out:
                        values = decode_tensor(out).to_float()
                        console.print(f"output {np.array2string(values, precision=4)}")
                        if model.startswith("digits"):
                            console.print(f"predicted digit: {int(np.argmax(values))}")
                    else:
                        console.print(f"output at {ev.args['outputURI']}")
                    return
            time.sleep(0.2)
    raise ConfigError(
        f"no result for job {job_id} within {timeout} s; check that a node serves {model}"
    )


@app.command()
@friendly
def demo(
    jobs: Annotated[int, typer.Option("--jobs", "-n", help="number of jobs")] = 200,
    concurrency: Annotated[int, typer.Option(help="concurrent agents submitting")] = 8,
    model: Annotated[str, typer.Option(help="model to use")] = "digits-mlp",
    rpc: Annotated[
        str | None, typer.Option("--rpc", help="external chain (keys from VERIMARKET_DEMO_KEYS)")
    ] = None,
    broker: Annotated[
        str | None, typer.Option(help="Celery broker URL (default: filesystem)")
    ] = None,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
    batch_max: Annotated[int, typer.Option(help="largest inference batch")] = 32,
    batch_wait_ms: Annotated[float, typer.Option(help="longest wait to fill a batch (ms)")] = 5.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the summary as one JSON object")
    ] = False,
    pipeline: Annotated[
        bool, typer.Option("--pipeline", help="digits-mlp's 3 segments run by 3 nodes instead")
    ] = False,
    redundant: Annotated[
        bool, typer.Option("--redundant", help="a 2-of-3 redundant job (commit-reveal) instead")
    ] = False,
    cache: Annotated[
        bool, typer.Option("--cache", help="a repeated input answered from the result cache")
    ] = False,
    verify: Annotated[
        str | None,
        typer.Option(
            "--verify",
            help="zk-spot or zk-full: a few proven jobs end to end instead (digits-mlp)",
        ),
    ] = None,
) -> None:
    """Run the whole market end to end on a local chain and print what happened.

    With a generative model (``--model smollm2``): ask it a few questions on chain and print
    the answers received by callback (at most ``--jobs`` of them)."""
    if pipeline:  # issue #10 part 2: one model's segments on three nodes (in-process)
        from market.demo_pipeline import run_pipeline_demo

        piped = run_pipeline_demo(jobs=3 if jobs == 200 else jobs, as_json=as_json, console=console)
        if not piped["ok"]:
            raise typer.Exit(1)
        return
    if redundant or cache:  # issue #10's extras: their own fresh chain, in-process nodes
        from market.demo_extras import run_extras

        run_extras(redundant=redundant, cache=cache, as_json=as_json, console=console)
        return
    from worker.generative import is_generative

    if is_generative(model):
        from market.config import get_settings as _settings
        from market.demo_llm import (
            QUESTIONS,
            LLMDemoConfig,
            answers_json,
            print_answers,
            run_llm_demo,
        )
        from market.errors import ConfigError

        if rpc is not None:
            raise ConfigError(f"--rpc is not supported with --model {model}: it runs its own anvil")
        llm_cfg = LLMDemoConfig(
            model=model,
            questions=QUESTIONS[: max(jobs, 1)],
            broker=broker,
            artifacts=_settings().artifacts,
        )
        answers = run_llm_demo(llm_cfg, err_console)
        if as_json:
            print(answers_json(answers))
        else:
            print_answers(answers, console)
        return
    if verify is not None:
        _demo_zk(verify, model, jobs if jobs != 200 else 4, as_json)
        return
    from market.config import get_settings
    from market.demo import Demo, DemoConfig, demo_keys_from_env, print_summary, summary_json

    cfg = DemoConfig(
        jobs=jobs,
        concurrency=concurrency,
        model=model,
        rpc=rpc,
        keys=demo_keys_from_env(),
        broker=broker,
        workers=workers,
        batch_max=batch_max,
        batch_wait_ms=batch_wait_ms,
        artifacts=get_settings().artifacts,
    )
    summary = Demo(cfg, err_console).run()
    if as_json:
        print(summary_json(summary))
    else:
        print_summary(summary, console)
    if summary.jobs_settled != summary.jobs_submitted or not summary.reconciled:
        raise typer.Exit(1)


def _demo_zk(mode: str, model: str, jobs: int, as_json: bool) -> None:
    """`demo --verify`: a few zk jobs, proved and audited (market.demo_zk)."""
    import json as _json
    from dataclasses import asdict

    from market.config import get_settings
    from market.demo_zk import ZkDemo, ZkDemoConfig, print_zk_summary

    cfg = ZkDemoConfig(mode=mode, jobs=jobs, model=model, artifacts=get_settings().artifacts)
    summary = ZkDemo(cfg, err_console).run()
    if as_json:
        print(_json.dumps({**asdict(summary), "ok": summary.ok}))
    else:
        print_zk_summary(summary, console)
    if not summary.ok:
        raise typer.Exit(1)


@app.command()
@friendly
def audit(
    job_id: Annotated[int, typer.Argument(help="the job to check")],
    deployment: DeploymentOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the verdict as JSON")] = False,
    pipeline: Annotated[
        bool, typer.Option("--pipeline", help="JOB_ID is a pipelined job (PipelineJobs)")
    ] = False,
) -> None:
    """Check a job from public data alone (chain, blobs, registered artefacts): re-run it,
    compare hashes, check its proofs. Exits 1 when the job does not check out."""
    import json as _json
    from dataclasses import asdict

    from market.audit import audit_job
    from market.chain.client import ChainClient
    from market.chain.market import Market
    from market.config import get_settings

    dep = _load_deployment(deployment)
    if pipeline:  # docs/pipeline.md: each segment re-run from the blob before it
        from market.audit_pipeline import audit_pipeline_job
        from market.blobs import BlobStore
        from market.chain.pipeline import Pipeline

        st = get_settings()
        verdict = audit_pipeline_job(
            Pipeline(ChainClient(dep.rpc_url), dep),
            job_id,
            st.artifacts,
            BlobStore(st.blobs()),
            st.blob_base_url,
        )
    else:
        verdict = audit_job(Market(ChainClient(dep.rpc_url), dep), job_id, get_settings().artifacts)
    if as_json:
        print(_json.dumps({**asdict(verdict), "ok": verdict.ok}))
    else:
        for c in verdict.checks:
            mark = {True: "[green]ok[/]", False: "[bold red]FAIL[/]", None: "[yellow]--[/]"}[c.ok]
            console.print(f"{mark}  {c.name}: {c.detail}", soft_wrap=True, highlight=False)
        word = "[green]checks out[/]" if verdict.ok else "[bold red]does NOT check out[/]"
        console.print(f"job {job_id} ({verdict.status}) {word}", highlight=False)
    if not verdict.ok:
        raise typer.Exit(1)


def _register_subcommands() -> None:
    from market.cli_api import register as register_api
    from market.cli_bench import register as register_bench
    from market.cli_index import register as register_index
    from market.cli_ops import register as register_ops

    register_api(app)
    register_bench(app)
    register_index(app)
    register_ops(app, node_app, models_app)


_register_subcommands()

if __name__ == "__main__":
    app()
