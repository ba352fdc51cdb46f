"""The node's poller finds the same jobs, and judges them the same way, whether it follows
the chain's events or the market index the indexer fills."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_utils.crypto import keccak

from market.chain.client import ChainClient
from market.chain.txmanager import TxManager
from market.chain.types import JobRequest, JobStatus, Segment
from market.cli_index import upgrade
from market.db import make_engine, make_sessions
from market.indexer import Indexer, IndexerConfig
from market.paths import artifacts_dir
from worker.models import build_models, digits_test_split, encode_digits_input, load_model
from worker.poller import Poller, ServedModel
from worker.store import NodeJobState, NodeStore

from ..conftest import Chain

pytestmark = pytest.mark.integration


def test_events_and_index_sources_agree_and_the_index_poller_claims(
    chain: Chain, tmp_path: Path
) -> None:
    manifest = build_models(artifacts_dir(), ["digits-mlp"], progress=False)[0]
    model = load_model(artifacts_dir(), "digits-mlp")
    model_id = chain.market(0).register_model(
        manifest.artifacts_hash_bytes,
        manifest.output_scale,
        "",
        [Segment(*s) for s in manifest.chain_segments()],
    )
    node = chain.market(1)
    node.register_node(5 * 10**18)
    node.set_model_price(model_id, 10**15)
    now = int(chain.client(0).w3.eth.get_block("latest")["timestamp"])
    good = [encode_digits_input(img) for img in digits_test_split()[0][:5]]
    bad = b"\x01\x04\x01\x00\x00\x00\x02" + bytes(16)
    reqs = [
        JobRequest(
            model_id=model_id, input_hash=keccak(x), input=x, max_fee=2 * 10**15, deadline=now + 600
        )
        for x in [*good, bad]
    ]
    ids = chain.market(6).submit_jobs(reqs)

    url = f"sqlite:///{tmp_path / 'market.sqlite'}"
    upgrade(url)
    ix = Indexer(
        ChainClient(chain.anvil.rpc_url),
        chain.deployment,
        make_engine(url),
        IndexerConfig(confirmations=0),
    )
    ix.setup()
    ix.sync()

    served = [ServedModel(model_id, "digits-mlp", 10**15, model.decode_input)]
    seen: dict[str, dict[int, tuple[str, str | None]]] = {}
    queued: list[int] = []
    for source in ("events", "index"):
        store = NodeStore(f"sqlite:///{tmp_path / f'node-{source}.sqlite'}")
        txm = TxManager(node.client, store.sessions)
        poller = Poller(
            node,
            txm,
            store,
            served,
            queued.append,
            index=make_sessions(make_engine(url)) if source == "index" else None,
        )
        assert poller.discover() == len(ids)
        seen[source] = {j: (str(store.get(j).state), store.get(j).error) for j in ids}  # type: ignore[union-attr]
        if source == "index":
            assert poller.claim_pending() == len(good)
            assert sorted(queued) == ids[:5]
            assert store.ids_in(NodeJobState.CLAIMED) == ids[:5]
            assert poller.discover() == 0  # the cursor moved on
    assert seen["events"] == seen["index"]
    assert seen["index"][ids[5]][0] == "rejected" and "invalid input" in (
        seen["index"][ids[5]][1] or ""
    )
    assert all(node.job(j).status == JobStatus.CLAIMED for j in ids[:5])
    assert node.job(ids[5]).status == JobStatus.OPEN
