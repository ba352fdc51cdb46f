"""Commit ready results on chain, several per ``commitResults`` transaction.

Batches go through :class:`worker.chainwork.ChainWork`: a batch that reverts on one job
sets that job aside with the reason and the rest go again, so one bad job never holds up
the others; RPC faults leave the batch in flight until its transaction's outcome is known.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from market.chain.market import Market
from market.chain.txmanager import TxManager
from market.chain.types import JobStatus
from market.errors import ContractRevert
from worker.chainwork import BatchKind, ChainWork
from worker.store import NodeJob, NodeJobState, NodeStore

S = NodeJobState
COMMIT = BatchKind(
    name="commit",
    waiting=S.READY,
    in_flight=S.COMMITTING,
    done=S.COMMITTED,
    give_up=S.FAILED,
    permanent=frozenset(
        {
            "DeadlinePassed",
            "InvalidJobStatus",
            "NotClaimer",
            "OutputHashMismatch",
            "MissingOutput",
            "JobNotFound",
        }
    ),
)


class Committer:
    def __init__(
        self,
        market: Market,
        txm: TxManager,
        store: NodeStore,
        max_batch: int = 32,
        skip: Callable[[list[int]], set[int]] | None = None,
    ) -> None:
        """``skip(ids)``: which ready jobs are committed elsewhere (zk jobs: worker.zk)."""
        self.skip = skip
        self.market = market
        self.store = store
        self.max_batch = max_batch
        self.work = ChainWork(
            store,
            txm,
            market.deployment.job_market,
            COMMIT,
            self._calldata,
            confirmed=self._stamp,
            reconcile=self._reconcile,
        )

    def _calldata(self, jobs: list[NodeJob]) -> bytes:
        fn = self.market.jobs.functions.commitResults(
            [j.job_id for j in jobs],
            [bytes.fromhex((j.result_hash or "")[2:]) for j in jobs],
            [j.output or b"" for j in jobs],
            [j.output_uri for j in jobs],
        )
        return bytes.fromhex(fn._encode_transaction_data()[2:])

    def _stamp(self, ids: list[int]) -> None:
        self.store.stamp(ids, committed_at=time.time())

    def _reconcile(self, job_id: int, revert: ContractRevert) -> NodeJobState | None:
        """A commit refused because the job is already committed — by us — is done."""
        if revert.name != "InvalidJobStatus":
            return None
        job, onchain = self.store.get(job_id), self.market.job(job_id)
        ours = job is not None and job.result_hash == "0x" + onchain.result_hash.hex()
        if ours and onchain.node == self.market.client.address:
            return S.COMMITTED
        if job is not None and onchain.status is JobStatus.OPEN:
            # our claim was dropped by a reorg and is being re-sent (TxManager.reorged):
            # commit again once it is mined; the job's deadline bounds the retries
            time.sleep(0.25)
            return S.READY
        return None

    def recover(self) -> None:
        """After a restart: settle batches whose transaction ended while we were down."""
        self.work.resolve()

    def commit_ready(self) -> int:
        """Commit up to ``max_batch`` ready results. Returns how many were committed."""
        moved = self.work.resolve()
        ids = self.store.ids_in(S.READY, self.max_batch)
        if self.skip is not None and ids:
            others = self.skip(ids)
            ids = [i for i in ids if i not in others]
        tx_id = self.work.start(ids)
        if tx_id is not None:
            self.work.drive(tx_id)
            moved += self.work.resolve()
        return moved
