"""k-of-n redundant jobs end to end on anvil: three nodes (dev keys 3, 4, 5) run the real
digits model in-process, commit, reveal and settle a 2-of-3 job; a node that commits a wrong
answer loses its bond and the two agreeing nodes share the fee."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_utils.crypto import keccak

from market.canonical import decode_tensor
from market.chain.anvil import DEV_KEYS
from market.chain.redundant import Redundant, RedundantJob, RedundantRequest, RedundantStatus
from market.chain.txmanager import TxManager
from market.chain.types import Segment
from market.errors import ContractRevert
from market.paths import artifacts_dir
from worker.models import build_models, digits_test_split, encode_digits_input, load_model
from worker.redundant import RedundantLoop, RedundantWorker, redundant_loop
from worker.store import NodeStore

from ..conftest import Chain

pytestmark = pytest.mark.integration

PRICE = 10**15
FEE = 3 * PRICE
BOND = 10**16


class WrongWorker(RedundantWorker):
    """A node that answers with another image's (well-formed) output."""

    def __init__(self, *args: object, wrong: bytes, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.wrong = wrong

    def compute(self, job: RedundantJob) -> bytes:
        return self.wrong


def test_two_of_three_digits_job(chain: Chain, tmp_path: Path) -> None:
    manifest = build_models(artifacts_dir(), ["digits-mlp"], progress=False)[0]
    model = load_model(artifacts_dir(), "digits-mlp")
    model_id = chain.market(0).register_model(
        manifest.artifacts_hash_bytes,
        manifest.output_scale,
        "",
        [Segment(*s) for s in manifest.chain_segments()],
    )
    images, labels = digits_test_split()
    data, other = encode_digits_input(images[0]), encode_digits_input(images[1])
    right, wrong = model.run_inputs([data, other])
    assert right != wrong

    workers: list[RedundantWorker] = []
    loop: RedundantLoop | None = None
    for key in (3, 4, 5):
        market = chain.market(key)
        market.register_node(2 * 10**18)
        market.set_model_price(model_id, PRICE)
        r = Redundant(market)
        seat_dir = tmp_path / f"node{key}"
        if key == 5:
            workers.append(WrongWorker(r, model, model_id, seat_dir, wrong=wrong))
        elif key == 4:  # node 4 runs the node's own loop: its store, its TxManager
            store = NodeStore(f"sqlite:///{tmp_path / 'node4.sqlite'}")
            loop = redundant_loop(
                market, TxManager(market.client, store.sessions), store, {model_id: model}, seat_dir
            )
            assert loop is not None
            workers.append(loop.workers[0])
        else:
            workers.append(RedundantWorker(r, model, model_id, seat_dir))

    assert loop is not None
    agent = Redundant(chain.market(6))
    start = chain.client(0).block_number() + 1
    now = chain.client(0).now()
    job_id = agent.submit(
        RedundantRequest(
            model_id=model_id,
            input_hash=keccak(data),
            input=data,
            fee=FEE,
            k=2,
            n=3,
            bond=BOND,
            commit_deadline=int(now) + 300,
            reveal_deadline=int(now) + 600,
        )
    )
    # each node's loop finds the job and takes a seat; nothing is revealed before all three
    workers[0].step(start)
    loop.step()
    workers[2].step(start)
    first = workers[0].seat(job_id)
    assert first is not None and all(w.seat(job_id) for w in workers)
    assert agent.job(job_id).commits == 3
    assert agent.nodes_of(job_id) == [w.redundant.client.address for w in workers]

    # a fourth node cannot take a seat, and nobody can reveal another's commitment
    fourth = Redundant(chain.market(7))
    chain.market(7).register_node(2 * 10**18)
    chain.market(7).set_model_price(model_id, PRICE)
    with pytest.raises(ContractRevert) as exc:
        fourth.commit(job_id, keccak(right), b"\x01" * 32)
    assert exc.value.name == "JobFull"
    with pytest.raises(ContractRevert) as exc:
        workers[2].redundant.reveal(
            job_id, bytes.fromhex(first.result_hash), bytes.fromhex(first.salt)
        )
    assert exc.value.name == "CommitmentMismatch"

    # a restarted node still has its salt on disk; the last revealer's loop finalizes
    restarted = RedundantWorker(workers[0].redundant, model, model_id, tmp_path / "node3")
    payer_before = agent.withdrawable(agent.client.address)
    restarted.step(start)
    loop.step()
    assert not agent.can_finalize(job_id), "node 5 has not revealed and the deadline is ahead"
    workers[2].step(start)
    assert not restarted.reveal(job_id), "revealed once"

    job = agent.job(job_id)
    assert job.status == RedundantStatus.SETTLED
    assert job.winner == keccak(right)
    output = agent.revealed_output(job_id, job.winner)
    assert output == right
    predicted = int(decode_tensor(output).values.argmax())
    assert predicted == int(labels[0])
    for w in workers[:2]:
        assert agent.withdrawable(w.redundant.client.address) == BOND + FEE // 2
    assert agent.withdrawable(workers[2].redundant.client.address) == 0
    assert agent.withdrawable(agent.client.address) - payer_before == BOND
    assert agent.total_owed() == chain.client(0).balance(chain.deployment.redundant_jobs)
    before = chain.client(3).balance(chain.client(3).address)
    receipt = workers[0].redundant.withdraw()
    gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert chain.client(3).balance(chain.client(3).address) - before == BOND + FEE // 2 - gas


def test_node_service_serves_a_redundant_job(chain: Chain, tmp_path: Path) -> None:
    """The node service's own loop (NodeService.setup builds it) takes the seat of a 1-of-1
    job, reveals once every seat is taken, finalizes and is paid."""
    from market.config import Settings
    from worker.node import NodeService

    manifest = build_models(artifacts_dir(), ["digits-mlp"], progress=False)[0]
    model_id = chain.market(0).register_model(
        manifest.artifacts_hash_bytes,
        manifest.output_scale,
        "",
        [Segment(*s) for s in manifest.chain_segments()],
    )
    node = chain.market(3)
    node.register_node(2 * 10**18)
    node.set_model_price(model_id, PRICE)
    settings = Settings(data=tmp_path / "node", artifacts=artifacts_dir())
    svc = NodeService(settings, chain.deployment, DEV_KEYS[3], ["digits-mlp"], lambda _: None)
    svc.setup()
    assert svc.redundant is not None

    data = encode_digits_input(digits_test_split()[0][5])
    agent = Redundant(chain.market(6))
    now = int(chain.client(0).now())
    job_id = agent.submit(
        RedundantRequest(
            model_id=model_id,
            input_hash=keccak(data),
            input=data,
            fee=PRICE,
            k=1,
            n=1,
            bond=BOND,
            commit_deadline=now + 300,
            reveal_deadline=now + 600,
        )
    )
    for _ in range(3):  # commit; reveal and finalize
        svc.redundant.step()
    job = agent.job(job_id)
    assert job.status == RedundantStatus.SETTLED
    assert (
        agent.revealed_output(job_id, job.winner)
        == load_model(artifacts_dir(), "digits-mlp").run_inputs([data])[0]
    )
    assert agent.withdrawable(node.client.address) == BOND + PRICE
