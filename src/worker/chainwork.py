"""Batched claim and commit transactions whose outcome survives crashes and RPC faults.

A batch of jobs moves to an in-flight state (claiming / committing) in the same database
transaction that records the chain transaction for them, so after any crash the node knows
exactly which transaction each job waits on. ``resolve`` then reads that transaction's
outcome: confirmed moves the jobs on; a revert that names one job (``DeadlinePassed(jobId,
…)``) sets that job aside and sends the rest back to try again; any other failure sends the
whole batch back. RPC errors leave everything in flight for the next round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import update

from market.chain.txmanager import TxManager, TxResult
from market.errors import ChainError, ContractRevert
from worker.store import NodeJob, NodeJobState, NodeStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchKind:
    """One kind of batched transaction: its states and how to build its calldata."""

    name: str
    waiting: NodeJobState  # jobs ready for this transaction
    in_flight: NodeJobState
    done: NodeJobState
    give_up: NodeJobState  # where a job named by a permanent revert goes
    permanent: frozenset[str]  # revert names that will not change by trying again


class ChainWork:
    def __init__(
        self,
        store: NodeStore,
        txm: TxManager,
        to: str,
        kind: BatchKind,
        calldata: Callable[[list[NodeJob]], bytes],
        confirmed: Callable[[list[int]], None] | None = None,
        reconcile: Callable[[int, ContractRevert], NodeJobState | None] | None = None,
        wait_s: float = 60.0,
    ) -> None:
        self.store = store
        self.txm = txm
        self.to = to
        self.kind = kind
        self.calldata = calldata
        self.confirmed = confirmed or (lambda ids: None)
        self.reconcile = reconcile
        self.wait_s = wait_s

    def start(self, ids: Sequence[int]) -> int | None:
        """Put ``ids`` (those still waiting) in flight under one new transaction."""
        k = self.kind
        if not ids:
            return None
        with self.store.sessions.begin() as s:
            jobs = [j for j in (s.get(NodeJob, i) for i in ids) if j and j.state == k.waiting]
            if not jobs:
                return None
            tx_id = self.txm.enqueue(
                self.to,
                self.calldata(jobs),
                purpose=k.name,
                key=f"{k.name}:{jobs[0].job_id}:{time.time_ns()}",
                session=s,
            )
            s.execute(
                update(NodeJob)
                .where(NodeJob.job_id.in_([j.job_id for j in jobs]), NodeJob.state == k.waiting)
                .values(state=k.in_flight, tx_id=tx_id, updated_at=time.time())
            )
        return tx_id

    def drive(self, tx_id: int) -> None:
        """Push the transaction along until it ends or ``wait_s`` passes (RPC errors: later)."""
        try:
            self.txm.wait(tx_id, timeout=self.wait_s)
        except (ChainError, OSError) as exc:
            log.warning("%s transaction %s not done yet: %s", self.kind.name, tx_id, exc)

    def resolve(self) -> int:
        """Settle every in-flight batch whose transaction has ended. Returns jobs moved on."""
        k = self.kind
        moved = 0
        for tx_id, ids in self.store.waiting_on_tx(k.in_flight).items():
            res = self.txm.result(tx_id) if tx_id >= 0 else None
            if tx_id < 0:  # in flight with no transaction recorded: cannot happen; recover
                self.store.transition(ids, k.in_flight, k.waiting)
                continue
            if res is None:
                continue
            moved += self._settle(ids, res)
        return moved

    def _settle(self, ids: list[int], res: TxResult) -> int:
        k = self.kind
        if res.ok:
            done = self.store.transition(ids, k.in_flight, k.done, tx_id=None, error=None)
            self.confirmed(done)
            return len(done)
        revert = res.revert
        bad = revert.args_by_name.get("jobId") if revert else None
        if revert is not None and isinstance(bad, int) and bad in ids:
            target = self.reconcile(bad, revert) if self.reconcile else None
            if target is None:
                target = k.give_up if revert.name in k.permanent else k.waiting
            if target is k.done:
                self.store.transition([bad], k.in_flight, k.done, tx_id=None)
                self.confirmed([bad])
            else:
                self.store.transition([bad], k.in_flight, target, tx_id=None, error=str(revert))
            rest = [i for i in ids if i != bad]
        else:
            log.warning("%s of %s failed: %s", k.name, ids, res.error)
            rest = ids
        self.store.transition(rest, k.in_flight, k.waiting, tx_id=None, error=res.error)
        return 0
