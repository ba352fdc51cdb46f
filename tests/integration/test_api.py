"""The market API against a real (SQLite file) database: reads, blobs, sign-in, limits.

Rows are written straight through the models, as the indexer would leave them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from market.api.app import create_app
from market.api.client_auth import ApiClient, build_message, sign_message
from market.api.siwe import rfc3339
from market.chain.types import JobStatus
from market.config import Settings
from market.db import Base, make_engine, make_sessions, sqlite_url
from market.db.models import (
    Blob,
    IndexerCursor,
    Job,
    Model,
    ModelSegment,
    Node,
    NodeModel,
    Proof,
    RawEvent,
    Result,
    Settlement,
)

pytestmark = pytest.mark.integration

CHAIN_ID = 31337
KEYS = [Account.create(f"verimarket api test {i}") for i in range(4)]
NODES = [a.address for a in KEYS[:3]]
AGENTS = [Account.create(f"agent {i}").address for i in range(2)]
MODELS = ["0x" + keccak(text=f"model {i}").hex() for i in range(2)]
T0 = 1_700_000_000
#: submit→commit latency of job i (seconds) for committed jobs: 2, 4, 6, ...
LATENCY = 2


def h(text: str) -> str:
    return "0x" + keccak(text=text).hex()


# ---------------------------------------------------------------- data


def seed(session: Session, n_jobs: int = 12) -> None:
    """Two models, three nodes, ``n_jobs`` jobs in every state, their results and events.

    Job ``i`` (1-based) is submitted at ``T0 + 10 i`` in block ``100 + i`` by agent ``i % 2``
    for model ``i % 2``; jobs with ``i % 4 != 1`` are claimed by node ``i % 3``; jobs with
    ``i % 4 in (2, 3)`` are committed ``2 i`` seconds after submit; ``i % 4 == 3`` are
    finalized, ``i % 4 == 0`` stay claimed, ``i % 4 == 1`` stay open.
    """
    session.add(
        IndexerCursor(
            chain_id=CHAIN_ID,
            deployment=NODES[0],
            start_block=1,
            block=500,
            head=505,
            confirmations=2,
            confirmed_block=503,
        )
    )
    for m, model_id in enumerate(MODELS):
        session.add(
            Model(
                model_id=model_id,
                owner=AGENTS[0],
                artifacts_hash=h(f"art {m}"),
                output_scale=16,
                segment_count=2,
                metadata_uri=f"ipfs://m{m}",
                registered_block=10 + m,
                registered_at=T0 - 100 + m,
                tx_hash=h(f"model tx {m}"),
            )
        )
        for s in range(2):
            session.add(
                ModelSegment(
                    model_id=model_id,
                    index=s,
                    segment_hash=h(f"seg {m} {s}"),
                    vk_hash=h(f"vk {m} {s}"),
                    verifier=NODES[2],
                )
            )
    for n, node in enumerate(NODES):
        session.add(
            Node(
                address=node,
                registered=n < 2,
                stake=10**18 * (n + 1),
                locked=10**17,
                jobs_claimed=n,
                jobs_served=n,
                earnings=10**15 * n,
                slashes=n % 2,
                slashed_total=10**16 * (n % 2),
                registered_block=20 + n,
                registered_at=T0 - 50,
                updated_block=20 + n,
            )
        )
        for m, model_id in enumerate(MODELS):
            if n == 2 and m == 1:
                continue
            session.add(
                NodeModel(node=node, model_id=model_id, price=10**14 * (n + 1), updated_block=30)
            )
    session.flush()
    for i in range(1, n_jobs + 1):
        add_job(session, i)


def add_job(session: Session, i: int) -> Job:
    phase = i % 4
    submitted = T0 + 10 * i
    job = Job(
        job_id=i,
        status=JobStatus.OPEN,
        payer=AGENTS[i % 2],
        from_vault=i % 2 == 0,
        mode=0,
        model_id=MODELS[i % 2],
        input_hash=h(f"in {i}"),
        input=b"\x01\x02",
        max_fee=10**15,
        deadline=submitted + 3600,
        callback=AGENTS[0],
        callback_gas_limit=0,
        submit_block=100 + i,
        submitted_at=submitted,
        submit_tx=h(f"submit {i}"),
        updated_block=100 + i,
    )
    session.add(job)
    session.add(
        RawEvent(
            chain_id=CHAIN_ID,
            tx_hash=job.submit_tx,
            log_index=0,
            block_number=job.submit_block,
            block_hash=h(f"b {job.submit_block}"),
            block_timestamp=submitted,
            contract="JobMarket",
            address=NODES[0],
            name="JobSubmitted",
            args={"jobId": i},
            job_id=i,
            agent=job.payer,
            model_id=job.model_id,
        )
    )
    if phase != 1:
        job.status = JobStatus.CLAIMED
        job.node, job.price, job.collateral = NODES[i % 3], 10**14, 10**14
        job.claim_block, job.claimed_at, job.claim_tx = 200 + i, submitted + 1, h(f"claim {i}")
        job.updated_block = 200 + i
    if phase in (2, 3):
        job.status = JobStatus.COMMITTED
        job.commit_block, job.committed_at = 300 + i, submitted + LATENCY * i
        job.commit_tx, job.result_hash = h(f"commit {i}"), h(f"out {i}")
        job.window_end, job.output = submitted + LATENCY * i + 60, b"\xaa"
        job.updated_block = 300 + i
        session.flush()
        session.add(
            Result(
                job_id=i,
                node=job.node or "",
                result_hash=job.result_hash,
                output=b"\xaa",
                window_end=job.window_end,
                block_number=300 + i,
                committed_at=job.committed_at,
                tx_hash=job.commit_tx,
            )
        )
        session.add(
            Proof(
                job_id=i,
                node=job.node or "",
                segment_index=1,
                proof_size=1234,
                instances=["0x01"],
                prove_seconds=1.5,
                verified=True,
                verifier="offchain",
            )
        )
    if phase == 3:
        job.status = JobStatus.SETTLED
        job.settle_block, job.settled_at = 400 + i, submitted + LATENCY * i + 61
        job.settle_tx, job.updated_block = h(f"settle {i}"), 400 + i
        job.node_payout, job.fee, job.refund = 97_500_000_000_000, 2_500_000_000_000, 9 * 10**14
        session.flush()
        session.add(
            Settlement(
                job_id=i,
                kind="finalized",
                node=job.node,
                node_payout=job.node_payout,
                fee=job.fee,
                refund=job.refund,
                caller=AGENTS[1],
                block_number=400 + i,
                settled_at=job.settled_at,
                tx_hash=job.settle_tx,
            )
        )
    session.flush()
    return job


# ---------------------------------------------------------------- fixtures


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data": tmp_path,
        "database_url": sqlite_url(tmp_path / "market.sqlite"),
        "deployment_file": tmp_path / "no-deployment.json",
        "api_chain_id": CHAIN_ID,
        "api_rate_per_s": 10_000.0,
        "api_rate_burst": 10_000,
        "api_secret": "test secret",
    }
    values.update(overrides)
    return Settings(**values)


def make_db(settings: Settings) -> Engine:
    assert settings.database_url is not None
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    return engine


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Engine]:
    engine = make_db(make_settings(tmp_path))
    with make_sessions(engine)() as session:
        seed(session)
        session.commit()
    yield engine
    engine.dispose()


@pytest.fixture()
def client(tmp_path: Path, db: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tmp_path), engine=db)) as c:
        yield c


def as_httpx(c: TestClient) -> httpx.Client:
    """Starlette's TestClient speaks httpx's client interface (it is typed apart)."""
    return cast(httpx.Client, c)


def sign_in(c: TestClient, account: LocalAccount = KEYS[3]) -> dict[str, str]:
    api = ApiClient(str(c.base_url), account, http=as_httpx(c))
    return {"Authorization": f"Bearer {api.token()}"}


# ---------------------------------------------------------------- jobs


def ids(resp: Any) -> list[int]:
    assert resp.status_code == 200, resp.text
    return [j["job_id"] for j in resp.json()["items"]]


def test_jobs_list_filters(client: TestClient) -> None:
    assert ids(client.get("/jobs")) == list(range(12, 0, -1))
    assert ids(client.get("/jobs", params={"state": "settled"})) == [11, 7, 3]
    assert ids(client.get("/jobs", params=[("state", "open"), ("state", "settled")])) == [
        11,
        9,
        7,
        5,
        3,
        1,
    ]
    assert ids(client.get("/jobs", params={"model": MODELS[1].upper().replace("0X", "0x")})) == [
        11,
        9,
        7,
        5,
        3,
        1,
    ]
    assert ids(client.get("/jobs", params={"node": NODES[0].lower()})) == [12, 6, 3]
    assert ids(client.get("/jobs", params={"agent": AGENTS[0]})) == [12, 10, 8, 6, 4, 2]
    assert ids(client.get("/jobs", params={"payer": AGENTS[1], "state": "committed"})) == []
    assert ids(client.get("/jobs", params={"payer": AGENTS[0], "state": "committed"})) == [10, 6, 2]
    r = client.get("/jobs", params={"model": MODELS[0], "node": NODES[1]})
    assert ids(r) == [10, 4] and r.json()["total"] == 2
    job = client.get("/jobs", params={"state": "settled", "limit": 1}).json()["items"][0]
    assert job["status"] == "settled" and job["price"] == str(10**14)
    assert job["max_fee"] == str(10**15) and job["confirmed"] is False


def test_jobs_pagination_by_cursor_and_offset(client: TestClient) -> None:
    for order, expected in (("desc", list(range(12, 0, -1))), ("asc", list(range(1, 13)))):
        seen: list[int] = []
        cursor: int | None = None
        while True:
            params: dict[str, Any] = {"limit": 5, "order": order}
            if cursor is not None:
                params["cursor"] = cursor
            page = client.get("/jobs", params=params).json()
            assert page["total"] == 12
            seen += [j["job_id"] for j in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == expected
    assert ids(client.get("/jobs", params={"limit": 4, "offset": 4})) == [8, 7, 6, 5]
    assert ids(client.get("/jobs", params={"limit": 2, "offset": 1, "cursor": 10})) == [8, 7]
    assert ids(client.get("/jobs", params={"offset": 12})) == []
    full = client.get("/jobs", params={"limit": 12}).json()
    assert full["next_cursor"] is None and len(full["items"]) == 12


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 201},
        {"limit": "x"},
        {"offset": -1},
        {"offset": 10**9},
        {"cursor": -1},
        {"cursor": 2**63},
        {"state": "done"},
        {"node": "0x12"},
        {"agent": "0x" + "g" * 40},
        {"model": "0x1234"},
        {"order": "sideways"},
    ],
)
def test_jobs_list_refuses_bad_parameters(client: TestClient, params: dict[str, Any]) -> None:
    r = client.get("/jobs", params=params)
    assert r.status_code == 422, r.text


def test_job_detail_timeline_results_proofs(client: TestClient) -> None:
    j = client.get("/jobs/7").json()
    assert j["status"] == "settled" and j["node"] == NODES[1]
    assert [(s["step"], s["block"], s["timestamp"]) for s in j["timeline"]] == [
        ("submitted", 107, T0 + 70),
        ("claimed", 207, T0 + 71),
        ("committed", 307, T0 + 70 + 14),
        ("settled", 407, T0 + 70 + 14 + 61),
    ]
    assert j["timeline"][0]["tx_hash"] == h("submit 7")
    assert [e["name"] for e in j["events"]] == ["JobSubmitted"]
    assert j["input_hex"] == "0x0102" and j["output_hex"] == "0xaa"
    assert j["results"][0]["result_hash"] == h("out 7")
    assert j["proofs"][0]["segment_index"] == 1 and j["proofs"][0]["verified"] is True
    s = j["settlement"]
    assert s["kind"] == "finalized"
    assert int(s["node_payout"]) + int(s["fee"]) + int(s["refund"]) == 10**15
    open_job = client.get("/jobs/1").json()
    assert [s["step"] for s in open_job["timeline"]] == ["submitted"]
    assert open_job["settlement"] is None and open_job["results"] == []
    assert client.get("/jobs/6/results").json()[0]["node"] == NODES[0]
    assert client.get("/jobs/6/proofs").json()[0]["proof_size"] == 1234
    assert client.get("/jobs/4/results").json() == []


@pytest.mark.parametrize("path", ["/jobs/99", "/jobs/99/results", "/jobs/99/proofs"])
def test_missing_job_is_404(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404 and "no job 99" in r.json()["detail"]


def test_bad_job_id_is_422(client: TestClient) -> None:
    assert client.get("/jobs/-1").status_code == 422
    assert client.get("/jobs/abc").status_code == 422
    assert client.get(f"/jobs/{2**63}").status_code == 422


# ---------------------------------------------------------------- nodes, models


def test_nodes(client: TestClient) -> None:
    page = client.get("/nodes").json()
    assert page["total"] == 3
    assert [n["address"] for n in page["items"]] == sorted(NODES)
    n1 = client.get(f"/nodes/{NODES[1].lower()}").json()
    assert n1["stake"] == str(2 * 10**18) and n1["earnings"] == str(10**15)
    assert n1["jobs_served"] == 1 and n1["slashes"] == 1
    assert {m["model_id"]: m["price"] for m in n1["models"]} == {
        MODELS[0]: str(2 * 10**14),
        MODELS[1]: str(2 * 10**14),
    }
    serving = client.get("/nodes", params={"model": MODELS[1]}).json()
    assert {n["address"] for n in serving["items"]} == set(NODES[:2])
    assert client.get("/nodes", params={"registered": "false"}).json()["total"] == 1
    assert client.get("/nodes/" + "0x" + "0" * 40).status_code == 404
    assert client.get("/nodes/0x1234").status_code == 422


def test_models(client: TestClient) -> None:
    page = client.get("/models").json()
    assert [m["model_id"] for m in page["items"]] == MODELS
    m = client.get(f"/models/{MODELS[0]}").json()
    assert [s["segment_hash"] for s in m["segments"]] == [h("seg 0 0"), h("seg 0 1")]
    assert m["artifacts_hash"] == h("art 0") and m["output_scale"] == 16
    assert [n["price"] for n in m["nodes"]] == [str(p * 10**14) for p in (1, 2, 3)]
    assert client.get("/models/" + "0x" + "00" * 32).status_code == 404
    assert client.get("/models/nothex").status_code == 422


# ---------------------------------------------------------------- stats, metrics, health


def test_stats_percentiles_and_throughput(client: TestClient) -> None:
    st_ = client.get("/stats").json()
    committed = [i for i in range(1, 13) if i % 4 in (2, 3)]  # 2, 3, 6, 7, 10, 11
    lat = sorted(LATENCY * i for i in committed)  # 4, 6, 12, 14, 20, 22
    o = st_["overall"]
    assert o["jobs"] == 12 and o["committed"] == 6 and o["finalized"] == 3
    assert o["latency"]["p50"] == pytest.approx((12 + 14) / 2)
    assert o["latency"]["p95"] == pytest.approx(20 + 0.75 * 2)  # rank 4.75 between 20 and 22
    assert o["latency"]["p99"] == pytest.approx(20 + 0.95 * 2)
    assert o["latency"]["mean"] == pytest.approx(sum(lat) / 6)
    span = (T0 + 110 + 22) - (T0 + 10)  # first submit → last commit
    assert st_["since"] == T0 + 10 and st_["until"] == T0 + 132
    assert o["throughput"] == pytest.approx(6 / span)
    assert st_["by_status"] == {
        "open": 3,
        "claimed": 3,
        "committed": 3,
        "disputed": 0,
        "settled": 3,
        "slashed": 0,
        "cancelled": 0,
        "expired": 0,
    }
    per_model = {m["model_id"]: m for m in st_["per_model"]}
    assert per_model[MODELS[1]]["latency"]["samples"] == 3  # jobs 3, 7, 11
    assert per_model[MODELS[1]]["latency"]["p50"] == pytest.approx(14)
    per_node = {n["node"]: n for n in st_["per_node"]}
    assert per_node[NODES[0]]["jobs"] == 3 and per_node[NODES[0]]["committed"] == 2
    window = client.get("/stats", params={"since": T0 + 60, "until": T0 + 80}).json()
    assert window["overall"]["jobs"] == 3 and window["overall"]["committed"] == 2  # 6, 7, 8
    assert window["overall"]["throughput"] == pytest.approx(2 / 20)
    assert client.get("/stats", params={"since": -1}).status_code == 422


def test_metrics_and_health(client: TestClient) -> None:
    client.get("/jobs/1")
    client.get("/jobs/99")
    body = client.get("/metrics")
    assert body.status_code == 200 and body.headers["content-type"].startswith("text/plain")
    text = body.text
    assert (
        'verimarket_api_requests_total{method="GET",route="/jobs/{job_id}",status="404"} 1.0'
        in text
    )
    assert 'verimarket_jobs{state="settled"} 3.0' in text
    assert 'verimarket_indexer_block{chain_id="31337",kind="indexed"} 500.0' in text
    assert "verimarket_api_request_duration_seconds_bucket" in text
    health = client.get("/health").json()
    assert health == {"status": "ok", "database": "ok", "chain_id": CHAIN_ID, "indexed_block": 500}


def test_health_is_503_without_database(tmp_path: Path) -> None:
    s = make_settings(tmp_path, database_url=sqlite_url(tmp_path / "db.sqlite"))
    engine = make_engine(f"sqlite:///{tmp_path}/missing/dir/db.sqlite")
    with TestClient(create_app(s, engine=engine)) as c:
        r = c.get("/health")
        assert r.status_code == 503 and "database unreachable" in r.json()["detail"]
        r = c.get("/jobs")
        assert r.status_code == 503 and "database unavailable" in r.json()["detail"]
        assert "verimarket_api_database_up 0.0" in c.get("/metrics").text
    bare = make_engine(sqlite_url(tmp_path / "empty.sqlite"))  # reachable, no tables
    with TestClient(create_app(s, engine=bare)) as c:
        r = c.get("/health")
        assert r.status_code == 503 and "not migrated" in r.json()["detail"]


# ---------------------------------------------------------------- blobs


def test_blob_round_trip(client: TestClient, db: Engine, tmp_path: Path) -> None:
    auth = sign_in(client)
    data = b"canonical output \x00\x01" * 100
    name = "0x" + keccak(data).hex()
    assert client.get(f"/blobs/{name}").status_code == 404
    r = client.put(f"/blobs/{name}", content=data, headers=auth)
    assert r.status_code == 201 and r.json() == {"hash": name, "size": len(data), "created": True}
    r = client.put(f"/blobs/{name.upper().replace('0X', '0x')}", content=data, headers=auth)
    assert r.status_code == 200 and r.json()["created"] is False
    got = client.get(f"/blobs/{name}")
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["etag"] == f'"{name}"'
    with make_sessions(db)() as session:
        assert session.scalars(select(Blob.size).where(Blob.hash == name)).all() == [len(data)]
    assert (tmp_path / "blobs" / name[2:4] / name[2:]).read_bytes() == data


def test_blob_refusals(tmp_path: Path, db: Engine) -> None:
    s = make_settings(tmp_path, blob_max_bytes=1000)
    with TestClient(create_app(s, engine=db)) as c:
        auth = sign_in(c)
        data = b"x" * 10
        wrong = "0x" + keccak(b"y").hex()
        r = c.put(f"/blobs/{wrong}", content=data, headers=auth)
        assert r.status_code == 400 and "refused" in r.json()["detail"]
        assert c.get(f"/blobs/{wrong}").status_code == 404  # nothing was stored
        big = b"z" * 1001
        r = c.put(f"/blobs/0x{keccak(big).hex()}", content=big, headers=auth)
        assert r.status_code == 413 and "1000-byte limit" in r.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
            for _ in range(11):
                yield b"z" * 100

        r = c.put(f"/blobs/0x{keccak(b'z' * 1100).hex()}", content=chunks(), headers=auth)
        assert r.status_code == 413, r.text
        for bad in ("0x1234", "0X" + "ab" * 32, "ab" * 33, "0x" + "zz" * 32):
            assert c.get(f"/blobs/{bad}").status_code == 400
            assert c.put(f"/blobs/{bad}", content=data, headers=auth).status_code == 400
        name = "0x" + keccak(data).hex()
        r = c.put(f"/blobs/{name}", content=data)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = c.put(f"/blobs/{name}", content=data, headers={"Authorization": "Bearer abc.def"})
        assert r.status_code == 401 and "invalid" in r.json()["detail"]


def test_client_helper_uploads(client: TestClient) -> None:
    api = ApiClient(str(client.base_url), KEYS[0].key.hex(), http=as_httpx(client))
    name = api.put_blob(b"output bytes")
    assert api.get_blob(name) == b"output bytes"
    assert (
        client.get("/auth/me", headers={"Authorization": f"Bearer {api.token()}"}).json()["address"]
        == KEYS[0].address
    )


# ---------------------------------------------------------------- auth


def signed(
    c: TestClient,
    account: LocalAccount,
    *,
    signer: LocalAccount | None = None,
    chain_id: int = CHAIN_ID,
    lifetime: float = 600,
    domain: str = "testserver",
    nonce: str | None = None,
    issued: float | None = None,
) -> dict[str, str]:
    nonce = nonce or c.get("/auth/nonce").json()["nonce"]
    msg = build_message(
        account,
        domain=domain,
        uri="http://testserver/",
        chain_id=chain_id,
        nonce=nonce,
        lifetime_s=lifetime,
        now=issued,
    )
    return {"message": msg.to_text(), "signature": sign_message(signer or account, msg)}


def refused(c: TestClient, body: dict[str, str], reason: str) -> None:
    r = c.post("/auth/verify", json=body)
    assert r.status_code == 401, r.text
    assert reason in r.json()["detail"], r.json()["detail"]


def test_sign_in_and_refusals(client: TestClient) -> None:
    nonce = client.get("/auth/nonce").json()
    assert nonce["chain_id"] == CHAIN_ID and nonce["domain"] == "testserver"
    body = signed(client, KEYS[0])
    r = client.post("/auth/verify", json=body)
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["address"] == KEYS[0].address and tok["token_type"] == "bearer"
    assert tok["expires_at"] <= time.time() + 600 + 1  # never past the message's expiry
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {tok['access_token']}"})
    assert me.json()["address"] == KEYS[0].address
    refused(client, body, "already used: replay refused")
    refused(client, signed(client, KEYS[0], lifetime=-1), "expired")
    refused(client, signed(client, KEYS[0], chain_id=1), "chain id 1")
    refused(client, signed(client, KEYS[0], signer=KEYS[1]), f"signature is by {KEYS[1].address}")
    refused(client, signed(client, KEYS[0], domain="evil.example"), "domain 'evil.example'")
    refused(client, signed(client, KEYS[0], nonce="abcdefgh12345678"), "not issued")
    refused(client, signed(client, KEYS[0], issued=time.time() + 3600), "in the future")
    refused(client, {"message": "hello\nworld", "signature": "0x" + "11" * 65}, "malformed")
    refused(client, {**signed(client, KEYS[0]), "signature": "0x" + "00" * 65}, "signature")
    assert client.post("/auth/verify", json={"message": "x"}).status_code == 422
    # A refused attempt does not burn the nonce: the right signature still gets in.
    good = signed(client, KEYS[2])
    refused(
        client,
        {**good, "signature": signed(client, KEYS[2], signer=KEYS[1])["signature"]},
        "signature is by",
    )
    assert client.post("/auth/verify", json=good).status_code == 200


def test_expired_nonce_and_token(tmp_path: Path, db: Engine) -> None:
    s = make_settings(tmp_path, api_nonce_ttl_s=0)
    app = create_app(s, engine=db)
    with TestClient(app) as c:
        refused(c, signed(c, KEYS[0]), "expired at")
        tokens = app.state.ctx.tokens
        stale = tokens.encode(tokens.issue(KEYS[0].address, CHAIN_ID, now=time.time() - 7200))
        r = c.get("/auth/me", headers={"Authorization": f"Bearer {stale}"})
        assert r.status_code == 401 and "expired" in r.json()["detail"]
        other = tokens.encode(tokens.issue(KEYS[0].address, 1))
        r = c.get("/auth/me", headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 401 and "chain 1" in r.json()["detail"]
    # A token from a server with another secret is refused.
    with TestClient(create_app(make_settings(tmp_path, api_secret="other"), engine=db)) as c2:
        forged = create_app(make_settings(tmp_path), engine=db).state.ctx.tokens
        tok = forged.encode(forged.issue(KEYS[0].address, CHAIN_ID))
        r = c2.get("/auth/me", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 401 and "forged" in r.json()["detail"]


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("fuzz")
    s = make_settings(tmp)
    with TestClient(create_app(s, engine=make_db(s))) as c:
        yield c


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    claimed=st.integers(0, 3),
    signer=st.integers(0, 3),
    chain_id=st.one_of(st.just(CHAIN_ID), st.integers(1, 2**64)),
    lifetime=st.one_of(st.integers(-86_400, -5), st.integers(5, 86_400)),
)
def test_fuzz_sign_in(
    fuzz_client: TestClient, claimed: int, signer: int, chain_id: int, lifetime: int
) -> None:
    """Accepted exactly when the claimed key signed, for this chain, before expiry."""
    body = signed(
        fuzz_client, KEYS[claimed], signer=KEYS[signer], chain_id=chain_id, lifetime=lifetime
    )
    r = fuzz_client.post("/auth/verify", json=body)
    ok = claimed == signer and chain_id == CHAIN_ID and lifetime > 0
    assert r.status_code == (200 if ok else 401), r.text
    if ok:
        assert r.json()["address"] == KEYS[claimed].address
        refused(fuzz_client, body, "replay")
    else:
        assert r.json()["detail"]


def test_siwe_message_round_trip() -> None:
    msg = build_message(
        KEYS[0],
        domain="api.example:8443",
        uri="https://api.example:8443/",
        chain_id=10,
        nonce="abcdEFGH1234",
        now=T0,
    )
    from market.api.siwe import SiweMessage

    assert SiweMessage.parse(msg.to_text()) == msg
    assert msg.issued_at == rfc3339(T0) == "2023-11-14T22:13:20Z"
    bare = SiweMessage(
        domain="d",
        address=KEYS[0].address,
        uri="u",
        chain_id=1,
        nonce="12345678",
        issued_at=msg.issued_at,
        statement=None,
        resources=("ipfs://a", "https://b"),
    )
    assert SiweMessage.parse(bare.to_text()) == bare


# ---------------------------------------------------------------- limits


def test_rate_limit(tmp_path: Path, db: Engine) -> None:
    s = make_settings(tmp_path, api_rate_per_s=0.5, api_rate_burst=3)
    with TestClient(create_app(s, engine=db)) as c:
        assert [c.get("/jobs/1").status_code for _ in range(3)] == [200, 200, 200]
        r = c.get("/jobs/1")
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 2 and "rate limit" in r.json()["detail"]
        assert c.get("/health").status_code == 200  # probes are never limited
        assert c.get("/metrics").status_code == 200


def test_body_limit_on_json_routes(tmp_path: Path, db: Engine) -> None:
    s = make_settings(tmp_path, api_max_json_body=1024)
    with TestClient(create_app(s, engine=db)) as c:
        r = c.post("/auth/verify", json={"message": "x" * 2000, "signature": "0x"})
        assert r.status_code == 413 and "1024-byte limit" in r.json()["detail"]
        r = c.post(
            "/auth/verify",
            content=iter([b"{" + b" " * 600, b" " * 600 + b"}"]),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413, r.text


# ---------------------------------------------------------------- CLI


def test_cli_registers_api_command() -> None:
    import typer
    from typer.testing import CliRunner

    from market.cli_api import register

    app = typer.Typer()
    register(app)

    @app.command()
    def other() -> None:  # a second command, so `api` is a subcommand as in the real CLI
        """Another command."""

    r = CliRunner().invoke(app, ["api", "--help"])
    assert r.exit_code == 0, r.output
    assert "--port" in r.output and "--db" in r.output


def test_stats_cache_expires(tmp_path: Path, db: Engine) -> None:
    with TestClient(create_app(make_settings(tmp_path, api_stats_ttl_s=0), engine=db)) as c:
        assert c.get("/stats").json()["overall"]["jobs"] == 12
        with make_sessions(db)() as session:
            add_job(session, 13)
            session.commit()
        assert c.get("/stats").json()["overall"]["jobs"] == 13
    with TestClient(create_app(make_settings(tmp_path, api_stats_ttl_s=60), engine=db)) as c:
        assert c.get("/stats").json()["overall"]["jobs"] == 13
        with make_sessions(db)() as session:
            add_job(session, 14)
            session.commit()
        assert c.get("/stats").json()["overall"]["jobs"] == 13  # cached
        assert c.get("/stats", params={"since": 0}).json()["overall"]["jobs"] == 14
