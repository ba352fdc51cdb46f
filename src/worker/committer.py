"""Commit ready results on chain, several per ``commitResults`` transaction.

A batch that reverts is split: the job the revert names (``DeadlinePassed(jobId, …)``,
``InvalidJobStatus(jobId, …)``) is set aside with the reason and the rest go again, so one
bad job never holds up the others.
"""

from __future__ import annotations

import logging
import time

from market.chain.market import Market
from market.chain.txmanager import TxManager
from worker.store import NodeJobState, NodeStore

log = logging.getLogger(__name__)
S = NodeJobState
#: Reverts that will not change by trying again.
PERMANENT = {
    "DeadlinePassed",
    "InvalidJobStatus",
    "NotClaimer",
    "OutputHashMismatch",
    "MissingOutput",
    "JobNotFound",
}


class Committer:
    def __init__(
        self, market: Market, txm: TxManager, store: NodeStore, max_batch: int = 32
    ) -> None:
        self.market = market
        self.txm = txm
        self.store = store
        self.max_batch = max_batch

    def recover(self) -> None:
        """After a restart: jobs left 'committing' go back to 'ready' unless already on chain."""
        for job in self.store.jobs_in(S.COMMITTING):
            onchain = self.market.job(job.job_id)
            if onchain.result_hash != b"\x00" * 32:
                self.store.transition(
                    [job.job_id], S.COMMITTING, S.COMMITTED, committed_at=time.time()
                )
            else:
                self.store.transition([job.job_id], S.COMMITTING, S.READY)

    def commit_ready(self) -> int:
        """Commit up to ``max_batch`` ready results. Returns how many were committed."""
        ids = self.store.transition(
            self.store.ids_in(S.READY, self.max_batch), S.READY, S.COMMITTING
        )
        committed = 0
        while ids:
            jobs = [self.store.get(i) for i in ids]
            fn = self.market.jobs.functions.commitResults(
                ids,
                [bytes.fromhex((j.result_hash or "")[2:]) for j in jobs if j],
                [j.output or b"" for j in jobs if j],
                [j.output_uri for j in jobs if j],
            )
            res = self.txm.send(
                self.market.deployment.job_market,
                bytes.fromhex(fn._encode_transaction_data()[2:]),
                purpose="commit",
                key=f"commit:{ids[0]}:{len(ids)}:{time.time_ns()}",
            )
            if res.ok:
                committed += len(
                    self.store.transition(ids, S.COMMITTING, S.COMMITTED, committed_at=time.time())
                )
                break
            revert = res.revert
            bad = revert.args_by_name.get("jobId") if revert else None
            if isinstance(bad, int) and bad in ids:
                if revert is not None and revert.name in PERMANENT:
                    self.store.transition([bad], S.COMMITTING, S.FAILED, error=str(revert))
                else:
                    self.store.transition([bad], S.COMMITTING, S.READY, error=str(revert))
                ids = [i for i in ids if i != bad]
                continue
            log.warning("commit of %s failed: %s; will retry", ids, res.error)
            self.store.transition(ids, S.COMMITTING, S.READY, error=res.error)
            break
        return committed
