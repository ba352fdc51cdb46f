"""The indexer on a real anvil and a real PostgreSQL.

Every test compares the index it built the hard way (reorgs, kills, replays, refused log
ranges) with a fresh index of the same chain at the same head, table by table in canonical
form (:func:`market.indexer.dump`), and checks the derived state against the contracts.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_utils.crypto import keccak
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session
from web3.exceptions import Web3RPCError
from web3.types import Nonce

from market.chain.anvil import DEV_KEYS, Anvil, start_anvil
from market.chain.client import ChainClient
from market.chain.deploy import deploy
from market.chain.market import Market
from market.chain.types import ZERO_ADDRESS, Deployment, JobRequest, JobStatus, Policy, Segment
from market.cli_index import upgrade
from market.db import make_engine
from market.db.models import IndexerCursor, Job, Node, NodeModel, RawEvent, VaultAccount
from market.errors import ContractRevert
from market.indexer import Indexer, IndexerConfig, dump, measure

from ..pg import pg_databases_fixture, pg_server_fixture  # noqa: F401

pytestmark = pytest.mark.integration

ETH = 10**18
PRICE = 10**15
MAX_FEE = 2 * 10**15
SEED = 20240611
DEPLOYER, NODE_A, NODE_B, FUNDER, AGENT, PAYER, PAYER2, REORGER = 0, 1, 2, 3, 4, 5, 6, 9


# ---------------------------------------------------------------- chain and workload


@dataclass
class World:
    """A deployed market with two models, two nodes and a funded agent account."""

    anvil: Anvil
    deployment: Deployment
    models: list[bytes]
    markets: dict[int, Market] = field(default_factory=dict)

    def market(self, key: int) -> Market:
        if key not in self.markets:
            client = ChainClient(self.anvil.rpc_url, DEV_KEYS[key])
            self.markets[key] = Market(client, self.deployment)
        return self.markets[key]

    def rpc(self, method: str, *params: Any) -> Any:
        reply = self.market(0).client.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def head(self) -> int:
        return self.market(0).client.block_number()

    def now(self) -> int:
        return int(self.market(0).client.w3.eth.get_block("latest")["timestamp"])

    def warp(self, seconds: int) -> None:
        self.rpc("evm_increaseTime", seconds)
        self.rpc("evm_mine")

    def resync(self) -> None:
        for m in self.markets.values():
            m.client.resync_nonce()


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    node = start_anvil()
    try:
        dep = deploy(ChainClient(node.rpc_url, DEV_KEYS[DEPLOYER]))
        w = World(node, dep, [])
        owner = w.market(DEPLOYER)
        for name in (b"digits", b"minilm"):
            w.models.append(
                owner.register_model(
                    keccak(name),
                    16,
                    f"blob://{name.decode()}",
                    [Segment(keccak(name + b"/0")), Segment(keccak(name + b"/1"), keccak(b"vk"))],
                )
            )
        for key, models in ((NODE_A, w.models), (NODE_B, w.models[:1])):
            m = w.market(key)
            m.register_node(20 * ETH)
            for mid in models:
                m.set_model_price(mid, PRICE)
        policy = Policy(MAX_FEE, 10_000 * MAX_FEE, 3600, any_model=True)
        w.market(FUNDER).open_account(w.market(AGENT).client.address, policy, 200 * MAX_FEE)
        yield w
    finally:
        node.stop()


@pytest.fixture()
def chain(world: World) -> Iterator[World]:
    """The world, reverted to its setup state after the test."""
    snap = world.rpc("evm_snapshot")
    try:
        yield world
    finally:
        world.rpc("evm_revert", snap)
        world.resync()


def _request(
    w: World, model: bytes, *, deadline_s: int = 600, vault: str | None = None, tag: int = 0
) -> JobRequest:
    data = b"\x01\x00\x01\x00\x00\x00\x01" + tag.to_bytes(8, "big")
    kwargs: dict[str, Any] = {"vault_agent": vault} if vault else {}
    return JobRequest(
        model_id=model,
        input_hash=keccak(data),
        input=data,
        max_fee=MAX_FEE,
        deadline=w.now() + deadline_s,
        **kwargs,
    )


class Workload:
    """Random protocol traffic (every derived event but CallbackFailed) that reads its state
    from the chain, so it keeps working when reorgs drop or move its transactions."""

    def __init__(self, w: World, rng: random.Random) -> None:
        self.w, self.rng = w, rng
        self.tag = 0

    def _jobs(self, *statuses: JobStatus) -> list[Any]:
        """The last 40 jobs in one of ``statuses`` (older ones are left as they are)."""
        m = self.w.market(0)
        count = m.job_count()
        jobs = [m.job(i) for i in range(max(1, count - 40), count + 1)]
        return [j for j in jobs if j.status in statuses]

    def act(self) -> None:
        """One random action (a transaction or two, or a time jump)."""
        w, rng = self.w, self.rng
        self.tag += 1
        choice = rng.choice(
            [
                "submit",
                "submit",
                "vault",
                "claim",
                "claim",
                "commit",
                "commit",
                "finalize",
                "expire",
                "cancel",
                "price",
                "unserve",
                "stake",
                "unbond",
                "withdrawal",
                "deposit",
            ]
        )
        if choice == "submit":
            short = rng.random() < 0.3
            reqs = [
                _request(
                    w, rng.choice(w.models), deadline_s=20 if short else 600, tag=self.tag * 10 + i
                )
                for i in range(rng.randint(1, 3))
            ]
            w.market(rng.choice([PAYER, PAYER2])).submit_jobs(reqs)
        elif choice == "vault":
            agent = w.market(AGENT)
            agent.submit_job(
                _request(w, rng.choice(w.models), vault=agent.client.address, tag=self.tag)
            )
        elif choice == "claim":
            now = w.now()
            open_ = [j for j in self._jobs(JobStatus.OPEN) if j.deadline > now + 2]
            if open_:
                node = w.market(rng.choice([NODE_A, NODE_B]))
                address = node.client.address
                open_ = [j for j in open_ if node.price_of(address, j.model_id) is not None]
                pick = rng.sample(open_, min(len(open_), rng.randint(1, 3)))
                if pick:
                    node.claim_jobs([j.job_id for j in pick])
        elif choice == "commit":
            now = w.now()
            mine = [j for j in self._jobs(JobStatus.CLAIMED) if j.deadline > now + 2]
            if mine:
                node = rng.choice(sorted({j.node for j in mine}))
                ids = [j.job_id for j in mine if j.node == node]
                key = NODE_A if node == w.market(NODE_A).client.address else NODE_B
                outs = [b"out" + i.to_bytes(4, "big") for i in ids]
                w.market(key).commit_results(ids, [keccak(o) for o in outs], outs, [""] * len(ids))
        elif choice == "finalize":
            committed = self._jobs(JobStatus.COMMITTED)
            if committed:
                w.warp(61)
                w.market(rng.choice([PAYER, DEPLOYER])).finalize_many([j.job_id for j in committed])
        elif choice == "expire":
            pending = self._jobs(JobStatus.OPEN, JobStatus.CLAIMED)
            if pending:
                w.warp(25)
                w.market(PAYER2).expire_many([j.job_id for j in pending])
        elif choice == "cancel":
            mine = [
                j for j in self._jobs(JobStatus.OPEN) if j.payer == w.market(PAYER).client.address
            ]
            if mine:
                w.market(PAYER).cancel(rng.choice(mine).job_id)
        elif choice == "price":
            w.market(NODE_A).set_model_price(w.models[1], PRICE + rng.randint(0, 1000))
        elif choice == "unserve":
            node = w.market(NODE_A)
            if node.price_of(node.client.address, w.models[1]) is not None:
                node.client.transact(node.nodes.functions.removeModel(w.models[1]))
        elif choice == "stake":
            w.market(NODE_B).add_stake(rng.randint(1, 10) * 10**16)
        elif choice == "unbond":
            w.market(NODE_B).request_unbond(rng.randint(1, 5) * 10**16)
        elif choice == "withdrawal":
            funder, agent_address = w.market(FUNDER), w.market(AGENT).client.address
            fn = funder.vault.functions
            call = fn.cancelWithdrawal(agent_address) if rng.random() < 0.3 else None
            try:
                funder.client.transact(call or fn.requestWithdrawal(agent_address, MAX_FEE))
            except ContractRevert:  # nothing pending to cancel
                funder.client.transact(fn.requestWithdrawal(agent_address, MAX_FEE))
        else:
            w.market(FUNDER).deposit(w.market(AGENT).client.address, MAX_FEE)

    def reorg(self, depth: int) -> None:
        """anvil_reorg ``depth`` blocks: the replaced blocks' transactions come back in order at
        random offsets (a random tail is dropped) and a new job from another key is added."""
        w, rng = self.w, self.rng
        head = w.head()
        txs: list[str] = []
        for n in range(head - depth + 1, head + 1):
            txs.extend(w.rpc("eth_getBlockByNumber", hex(n), False)["transactions"])
        keep = txs[: rng.randint(0, len(txs))]
        raws = [w.rpc("eth_getRawTransactionByHash", t) for t in keep]
        offsets = sorted(rng.randrange(depth) for _ in raws)
        plan = [[raw, off] for raw, off in zip(raws, offsets, strict=True)]
        if rng.random() < 0.6:
            reorger = w.market(REORGER)
            sender = reorger.client.address
            nonce = int(w.rpc("eth_getTransactionCount", sender, hex(head - depth)), 16)
            nonce += sum(
                1
                for t in keep
                if w.rpc("eth_getTransactionByHash", t)["from"].lower() == sender.lower()
            )
            req = _request(w, w.models[0], tag=10**6 + self.tag)
            fn = reorger.jobs.functions.submitJob(req.as_tuple())
            tx = reorger.client.build(fn, value=MAX_FEE, gas=600_000)
            tx["nonce"] = Nonce(nonce)
            signed = reorger.client.account.sign_transaction(tx)  # type: ignore[union-attr, arg-type]
            plan.append(["0x" + bytes(signed.raw_transaction).hex(), depth - 1])
        w.rpc("anvil_reorg", depth, plan)
        w.resync()


# ---------------------------------------------------------------- helpers


def _indexer(w: World, url: str, **cfg: Any) -> Indexer:
    upgrade(url)
    engine = make_engine(url)
    ix = Indexer(ChainClient(w.anvil.rpc_url), w.deployment, engine, IndexerConfig(**cfg))
    ix.setup()
    return ix


def _fresh_dump(w: World, url: str, **cfg: Any) -> dict[str, Any]:
    ix = _indexer(w, url, **cfg)
    try:
        ix.sync()
        return dump(ix.engine)
    finally:
        ix.engine.dispose()


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    for table in want:
        assert got[table] == want[table], f"table {table} differs from a fresh index"


def _assert_matches_chain(w: World, engine: Engine) -> None:
    """Derived state equals what the contracts say now."""
    m = w.market(0)
    with Session(engine) as s:
        jobs = {j.job_id: j for j in s.scalars(select(Job))}
        assert sorted(jobs) == list(range(1, m.job_count() + 1))
        for job_id, row in jobs.items():
            onchain = m.job(job_id)
            assert (row.status, row.payer, row.max_fee) == (
                onchain.status,
                onchain.payer,
                onchain.max_fee,
            ), job_id
            if onchain.node != ZERO_ADDRESS:
                assert (row.node, row.price) == (onchain.node, onchain.price), job_id
        for node in s.scalars(select(Node)):
            info = m.node_info(node.address)
            assert (node.stake, node.locked, node.registered) == (
                info.stake,
                info.locked,
                info.registered,
            )
        for acct in s.scalars(select(VaultAccount)):
            onchain_acct = m.client.call(m.vault.functions.getAccount(acct.agent))
            assert acct.balance == m.vault_balance(acct.agent)
            assert acct.funder == onchain_acct[0]
        for agent_node in (NODE_A, NODE_B):
            address = w.market(agent_node).client.address
            offers = {
                r.model_id: r.price
                for r in s.scalars(select(NodeModel).where(NodeModel.node == address))
            }
            for mid in w.models:
                assert offers.get("0x" + mid.hex()) == m.price_of(address, mid)
            info = m.node_info(address)
            node_row = s.get(Node, address)
            assert node_row is not None
            assert (node_row.unbonding, node_row.unbonding_ready_at) == (
                info.unbonding,
                info.unbonding_ready_at,
            )


def _activity(w: World, rng: random.Random, actions: int) -> None:
    load = Workload(w, rng)
    for _ in range(actions):
        load.act()


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("rounds", [60, pytest.param(400, marks=pytest.mark.long, id="long")])
def test_random_reorgs_leave_the_index_equal_to_a_fresh_one(
    chain: World, pg_databases: Callable[[], str], rounds: int
) -> None:
    rng = random.Random(SEED)
    load = Workload(chain, rng)
    cfg = {"confirmations": 3, "keep_blocks": 16, "batch_blocks": 3}
    ix = _indexer(chain, pg_databases(), **cfg)
    base = chain.head()
    reorgs = 0
    for _ in range(rounds):
        for _ in range(rng.randint(1, 3)):
            load.act()
        for _ in range(rng.randint(0, 3)):
            ix.step()
        if rng.random() < 0.5:
            ix.sync()
        if rng.random() < 0.6:
            depth = rng.randint(1, 5)
            if chain.head() - depth > base:
                load.reorg(depth)
                reorgs += 1
    ix.sync()
    _assert_same(dump(ix.engine), _fresh_dump(chain, pg_databases(), **cfg))
    _assert_matches_chain(chain, ix.engine)
    with Session(ix.engine) as s:
        events = s.scalar(select(func.count()).select_from(RawEvent))
    print(
        f"\nreorgs: {reorgs} anvil_reorg calls (depth 1-5), {ix.reorgs_handled} detected and "
        f"rewound by the indexer; {events} events indexed"
    )
    assert ix.reorgs_handled >= rounds // 3
    ix.engine.dispose()


def test_reorgs_while_the_indexer_follows_the_chain_in_a_thread(
    chain: World, pg_databases: Callable[[], str]
) -> None:
    rng = random.Random(SEED + 4)
    load = Workload(chain, rng)
    cfg = {"confirmations": 2, "keep_blocks": 12, "batch_blocks": 2, "poll_interval": 0.005}
    ix = _indexer(chain, pg_databases(), **cfg)
    worker = threading.Thread(target=ix.run_forever, daemon=True)
    worker.start()
    base, reorgs = chain.head(), 0
    try:
        for _ in range(30):
            load.act()
            time.sleep(rng.uniform(0, 0.03))
            depth = rng.randint(1, 5)
            if rng.random() < 0.7 and chain.head() - depth > base:
                load.reorg(depth)
                reorgs += 1
    finally:
        ix.stop()
        worker.join(timeout=30)
    assert not worker.is_alive()
    ix.sync()
    _assert_same(dump(ix.engine), _fresh_dump(chain, pg_databases(), **cfg))
    _assert_matches_chain(chain, ix.engine)
    print(
        f"\nthreaded: {reorgs} anvil_reorg calls, {ix.reorgs_handled} rewound, "
        f"{ix.retries} ranges re-read because the chain moved under them"
    )
    assert ix.reorgs_handled >= 5
    ix.engine.dispose()


def test_killed_indexer_restarts_without_gap_or_duplicate(
    chain: World, pg_databases: Callable[[], str], tmp_path: Path
) -> None:
    rng = random.Random(SEED + 1)
    _activity(chain, rng, 40)
    url = pg_databases()
    upgrade(url)
    dep_file = tmp_path / "deployment.json"
    chain.deployment.save(dep_file)
    cmd = [
        sys.executable,
        "-m",
        "market.cli_index",
        "index",
        "--deployment",
        str(dep_file),
        "--database-url",
        url,
        "--batch-blocks",
        "1",
        "--confirmations",
        "2",
        "--no-migrate",
        "--exit-at-head",
        "--poll",
        "0.05",
    ]
    engine = make_engine(url)

    def cursor() -> int:
        with Session(engine) as s:
            block = s.scalar(select(IndexerCursor.block))
            return -1 if block is None else block

    kills, mid_range = 0, 0
    head = chain.head()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(6):
        before = cursor()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while cursor() == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode()  # type: ignore[union-attr]
        if before < cursor() < head:
            mid_range += 1
        if cursor() >= head:
            break
        _activity(chain, rng, 2)  # the chain moves on while the indexer is down
        head = chain.head()
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    print(f"\ncrash test: {kills} SIGKILLs, {mid_range} left the index part-way, then a clean run")
    assert kills >= 3 and mid_range >= 3
    _assert_same(dump(engine), _fresh_dump(chain, pg_databases(), confirmations=2))
    _assert_matches_chain(chain, engine)
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_replaying_any_range_changes_nothing(
    chain: World, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(SEED + 2)
    _activity(chain, rng, 30)
    url = (
        f"sqlite:///{tmp_path / 'market.sqlite'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_databases")()
    )
    ix = _indexer(chain, url, batch_blocks=7)
    ix.sync()
    want = dump(ix.engine)
    start, head = chain.deployment.start_block, chain.head()
    ix.index_range(start, head)
    for _ in range(5):
        a = rng.randint(start, head)
        ix.index_range(a, rng.randint(a, head))
    _assert_same(dump(ix.engine), want)
    # events lost from the middle of the index come back, and the entities they name are
    # refolded in chain order
    with Session(ix.engine) as s, s.begin():
        blocks = sorted(set(s.scalars(select(RawEvent.block_number))))
        lo = blocks[len(blocks) // 3]
        hi = blocks[len(blocks) // 2]
        s.execute(delete(RawEvent).where(RawEvent.block_number.between(lo, hi)))
    ix.index_range(lo, hi)
    _assert_same(dump(ix.engine), want)
    # a new indexer on the same database carries on from the cursor and finds nothing to add
    again = Indexer(
        ChainClient(chain.anvil.rpc_url), chain.deployment, ix.engine, IndexerConfig(batch_blocks=7)
    )
    again.setup()
    again.sync()
    assert again.events_indexed == 0
    _assert_same(dump(ix.engine), want)
    _assert_matches_chain(chain, ix.engine)
    ix.engine.dispose()


def test_refused_large_log_ranges_are_narrowed(
    chain: World, pg_databases: Callable[[], str]
) -> None:
    _activity(chain, random.Random(SEED + 3), 25)
    ix = _indexer(chain, pg_databases(), batch_blocks=50, max_log_range=50)
    eth = ix.client.w3.eth
    real = eth.get_logs
    refused = []

    def picky(params: Any) -> Any:
        if int(params["toBlock"]) - int(params["fromBlock"]) + 1 > 4:
            refused.append((params["fromBlock"], params["toBlock"]))
            raise Web3RPCError("query returned more than 10000 results")
        return real(params)

    eth.get_logs = picky  # type: ignore[method-assign,assignment]
    ix.sync()
    assert refused, "the RPC never refused a range"
    _assert_same(dump(ix.engine), _fresh_dump(chain, pg_databases()))
    ix.engine.dispose()


def test_pending_state_is_shown_at_once_and_final_after_k_confirmations(
    chain: World, tmp_path: Path
) -> None:
    ix = _indexer(chain, f"sqlite:///{tmp_path / 'm.sqlite'}", confirmations=3)
    ix.sync()
    job_id = chain.market(PAYER).submit_job(_request(chain, chain.models[0]))
    ix.sync()
    with Session(ix.engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == JobStatus.OPEN and not job.confirmed
    for _ in range(3):
        chain.rpc("evm_mine")
    ix.sync()
    with Session(ix.engine) as s:
        job = s.get(Job, job_id)
        cur = s.scalars(select(IndexerCursor)).one()
        assert job is not None and job.confirmed
        assert cur.confirmed_block == cur.head - 3 >= job.updated_block
    ix.engine.dispose()


def test_job_timeline_and_node_record_come_from_events(chain: World, tmp_path: Path) -> None:
    payer, node = chain.market(PAYER), chain.market(NODE_A)
    job_id = payer.submit_job(_request(chain, chain.models[1]))
    node.claim_job(job_id)
    node.commit_result(job_id, keccak(b"out"), b"out")
    chain.warp(61)
    payer.finalize(job_id)
    ix = _indexer(chain, f"sqlite:///{tmp_path / 'm.sqlite'}", confirmations=0)
    ix.sync()
    with Session(ix.engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == JobStatus.SETTLED and job.confirmed
        assert job.submitted_at <= job.claimed_at <= job.committed_at <= job.settled_at  # type: ignore[operator]
        assert job.settled_at - job.submitted_at >= 61  # type: ignore[operator]
        fee = PRICE * chain.deployment.params.fee_bps // 10_000
        assert (job.node_payout, job.fee, job.refund) == (PRICE - fee, fee, MAX_FEE - PRICE)
        assert job.output == b"out" and job.result_hash == "0x" + keccak(b"out").hex()
        n = s.get(Node, node.client.address)
        assert n is not None and (n.jobs_claimed, n.jobs_served, n.earnings) == (1, 1, PRICE - fee)
    _assert_matches_chain(chain, ix.engine)
    ix.engine.dispose()


@pytest.mark.long  # a throughput figure, not a check: bench row 7a reports it in the suite's place
def test_indexer_events_per_second(
    chain: World, pg_databases: Callable[[], str], tmp_path: Path
) -> None:
    """Index a few thousand events made by batched calls; print events/s (PostgreSQL and
    SQLite)."""
    payer, node = chain.market(PAYER), chain.market(NODE_A)
    node.add_stake(100 * ETH)
    batch, rounds = 100, 8
    for r in range(rounds):
        first = payer.job_count() + 1
        payer.submit_jobs(
            [_request(chain, chain.models[1], tag=r * batch + i) for i in range(batch)]
        )
        ids = list(range(first, first + batch))
        node.claim_jobs(ids)
        outs = [b"o" + i.to_bytes(4, "big") for i in ids]
        node.commit_results(ids, [keccak(o) for o in outs], outs, [""] * batch)
    chain.warp(61)
    committed = list(range(1, payer.job_count() + 1))
    for i in range(0, len(committed), batch):
        payer.finalize_many(committed[i : i + batch])
    figures = []
    for name, url in (
        ("postgresql", pg_databases()),
        ("sqlite", f"sqlite:///{tmp_path / 'bench.sqlite'}"),
    ):
        ix = _indexer(chain, url)
        events, seconds = measure(ix)
        figures.append(f"{name}: {events} events in {seconds:.2f} s = {events / seconds:.0f}/s")
        assert events >= 4000
        ix.engine.dispose()
    print("\nindexer throughput: " + "; ".join(figures))
