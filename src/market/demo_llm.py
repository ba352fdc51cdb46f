"""`verimarket demo --model smollm2`: real questions to a language model, answered on chain.

It starts anvil, deploys, registers SmolLM2 and a staked node serving it, deploys an agent
contract (``DigitsConsumer``: it stores whatever output bytes the market delivers, for any
one model), starts the worker, node and settlement service, and has the contract ask each
question as a chat job paid with ETH. The answers are printed as the contract receives them
by callback: the canonical output is the generated token ids, turned into text with the
model's published tokenizer. Everything it started is stopped on exit.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console

from market.canonical import decode_tensor, keccak
from market.chain.anvil import DEV_KEYS, Anvil, start_anvil
from market.chain.client import ChainClient
from market.chain.events import LogReader
from market.chain.market import Market
from market.demo import deploy_with_node
from market.errors import ConfigError, VerimarketError
from market.paths import artifacts_dir
from market.procs import Child, start_stack

ETH = 10**18
PRICE = 10**15
MAX_FEE = 2 * 10**15
#: Gas for the consumer's callback (measured on anvil: storing 64 token ids, 519 bytes,
#: takes ~450k; 125 ids, the 1 KiB inline limit, ~790k).
CALLBACK_GAS = 800_000

QUESTIONS = (
    "What is the capital of France?",
    "Name three primary colours.",
    "What is 2 + 2?",
    "Write one sentence about the sea.",
    "What do bees make?",
    "Translate 'thank you' into Spanish.",
)


@dataclass
class LLMDemoConfig:
    model: str = "smollm2"
    questions: tuple[str, ...] = QUESTIONS
    max_new_tokens: int = 48
    broker: str | None = None
    challenge_window: int = 2
    timeout_s: float = 600.0
    artifacts: Path = field(default_factory=artifacts_dir)


@dataclass(frozen=True)
class Answer:
    job_id: int
    question: str
    token_ids: tuple[int, ...]
    text: str
    seconds: float  # submit to callback
    settled: bool


def run_llm_demo(cfg: LLMDemoConfig, console: Console) -> list[Answer]:
    """Run the demo; the answers received by callback, in question order."""
    from worker.generative import GenerativeInputCheck, is_generative
    from worker.llm import encode_generation_input
    from worker.models import build_models

    if not is_generative(cfg.model):
        raise ConfigError(f"{cfg.model} is not a generative model")
    if not cfg.questions:
        raise ConfigError("no questions to ask")
    if not 1 <= cfg.max_new_tokens <= 64:
        raise ConfigError("max_new_tokens must be between 1 and 64 (the callback's gas)")
    console.print(f"[bold]verimarket demo[/]: {len(cfg.questions)} questions to {cfg.model}")
    with console.status(f"building or checking {cfg.model} (first build: ~1-2 min)"):
        manifest = build_models(cfg.artifacts, [cfg.model], progress=False)[0]
    codec = GenerativeInputCheck(cfg.artifacts, cfg.model).codec
    inputs = [encode_generation_input(q, max_new_tokens=cfg.max_new_tokens) for q in cfg.questions]
    work = Path(tempfile.mkdtemp(prefix="verimarket-llm-demo-"))
    anvil: Anvil | None = None
    children: list[Child] = []
    try:
        anvil = start_anvil(log_path=work / "anvil.log")
        rpc = anvil.rpc_url
        dep, dep_file, market, model_id = deploy_with_node(
            rpc, DEV_KEYS, manifest, cfg.challenge_window, work
        )
        deployer = market.client
        owner = ChainClient(rpc, DEV_KEYS[4])
        consumer_addr, _ = owner.deploy("DigitsConsumer", dep.job_market, model_id, CALLBACK_GAS)
        consumer = owner.contract("DigitsConsumer", consumer_addr)

        env = {"VERIMARKET_ARTIFACTS": str(cfg.artifacts)}
        if cfg.broker:
            env["VERIMARKET_BROKER_URL"] = cfg.broker
        with console.status("starting worker (loading the model), node and settlement service"):
            children = start_stack(
                work,
                dep_file,
                node_key=DEV_KEYS[1],
                settler_key=DEV_KEYS[2],
                models=[cfg.model],
                env=env,
                timeout=300.0,
            )

        start_block = deployer.block_number()
        submitted: dict[int, tuple[int, float]] = {}
        deadline = int(deployer.now()) + 600
        for k, data in enumerate(inputs):
            t0 = time.perf_counter()
            receipt = owner.transact(consumer.functions.classify(data, deadline), value=MAX_FEE)
            (job_id,) = market.job_ids_from(receipt, "JobSubmitted")
            submitted[job_id] = (k, t0)
            console.print(f"asked job {job_id}: {cfg.questions[k]}")
        received = _wait_for_callbacks(
            market, consumer_addr, start_block, submitted, children, cfg.timeout_s, console
        )
    finally:
        for child in reversed(children):
            child.stop()
        if anvil is not None:
            anvil.stop()
        shutil.rmtree(work, ignore_errors=True)

    answers = []
    for job_id, (k, t0) in sorted(submitted.items(), key=lambda kv: kv[1][0]):
        output, result_hash, at, settled = received[job_id]
        if keccak(output) != result_hash:
            raise VerimarketError(f"job {job_id}: the output does not hash to its result hash")
        ids = tuple(int(v) for v in decode_tensor(output).values.reshape(-1))
        answers.append(
            Answer(job_id, cfg.questions[k], ids, codec.decode(ids), round(at - t0, 2), settled)
        )
    return answers


def _wait_for_callbacks(
    market: Market,
    consumer: str,
    start_block: int,
    submitted: dict[int, tuple[int, float]],
    children: list[Child],
    timeout_s: float,
    console: Console,
) -> dict[int, tuple[bytes, bytes, float, bool]]:
    """job id -> (output, result hash, when the callback was seen, settled) for every job."""
    reader = LogReader(
        market.client, {"JobMarket": market.deployment.job_market, "DigitsConsumer": consumer}
    )
    got: dict[int, tuple[bytes, bytes, float]] = {}
    settled: set[int] = set()
    cursor = start_block
    end = time.monotonic() + timeout_s
    with console.status("waiting for the answers (callbacks) and settlement"):
        while True:
            head = market.client.block_number()
            if head > cursor:
                for ev in reader.fetch(cursor + 1, head):
                    job_id = int(ev.args.get("jobId", -1))
                    if job_id not in submitted:
                        continue
                    if ev.name == "DigitClassified":
                        out, rh = bytes(ev.args["output"]), bytes(ev.args["resultHash"])
                        got[job_id] = (out, rh, time.perf_counter())
                        console.print(f"callback for job {job_id} ({len(out)} output bytes)")
                    elif ev.name == "JobFinalized":
                        settled.add(job_id)
                cursor = head
            if len(got) == len(submitted) and settled >= set(submitted):
                break
            for c in children:
                if not c.alive():
                    raise VerimarketError(f"{c.name} died:\n{c.tail()}")
            if time.monotonic() > end:
                raise VerimarketError(
                    f"timed out after {timeout_s} s with {len(got)}/{len(submitted)} answers"
                )
            time.sleep(0.2)
    return {j: (*v, j in settled) for j, v in got.items()}


def answers_json(answers: list[Answer]) -> str:
    return json.dumps([asdict(a) for a in answers])


def print_answers(answers: list[Answer], console: Console) -> None:
    """Each question and the answer its consumer contract received by callback."""
    console.print("[bold]answers received on chain by callback[/]")
    for a in answers:
        state = "settled" if a.settled else "not settled yet"
        console.print(
            f"\n[bold]job {a.job_id}[/] ({len(a.token_ids)} tokens, {a.seconds:.1f} s from "
            f"submit to callback, {state})\n[cyan]Q:[/] {a.question}\n[green]A:[/] {a.text}"
        )
