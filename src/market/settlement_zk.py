"""The settlement service's part for zk jobs (docs/protocol.md, "Verification").

A zk job finalizes like any other once the market's window is over **and** its proofs are in
(``ZkVerification.canFinalize``: the required segments proven on chain, or an undisputed
Valid attestation past its dispute window): the settler asks the module before putting a zk
job in a ``finalizeMany`` batch, so an unproven job costs no gas. After the proof deadline
with the proofs still missing, it calls ``slashUnproven`` (one transaction per job; the
caller's share of the slash pays for it): the payer is refunded and compensated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from market.chain.market import Market
from market.chain.txmanager import TxManager
from market.chain.types import JobStatus
from market.errors import ChainError

log = logging.getLogger(__name__)

#: chain seconds before a job whose slash was refused is looked at again
RETRY_S = 5


@dataclass
class ZkSettlement:
    market: Market
    txm: TxManager
    slashed: int = 0
    #: job id -> proof deadline last read from the module (it moves on disputes)
    _deadline: dict[int, int] = field(default_factory=dict)
    _retry_at: dict[int, float] = field(default_factory=dict)

    def can_finalize(self, job_id: int) -> bool:
        try:
            return bool(self.market.client.call(self.market.zk.functions.canFinalize(job_id)))
        except ChainError as exc:
            log.warning("canFinalize(%s) failed: %s", job_id, exc)
            return False

    def slash_due(self, jobs: dict[int, tuple[JobStatus, int]], now: float) -> int:
        """Slash zk jobs (``jobs``: id -> (status, mode), zk ones) whose proof deadline has
        passed without the proofs. Returns how many slash transactions succeeded."""
        done = 0
        for job_id, (status, _mode) in sorted(jobs.items()):
            if status not in (JobStatus.COMMITTED, JobStatus.DISPUTED):
                continue
            if self._retry_at.get(job_id, 0) > now:
                continue
            deadline = self._deadline.get(job_id)
            if deadline is None or now > deadline:
                deadline = self.market.zk_job(job_id).proof_deadline
                self._deadline[job_id] = deadline
            if now <= deadline or self.can_finalize(job_id):
                continue
            fn = self.market.zk.functions.slashUnproven(job_id)
            res = self.txm.send(
                self.market.deployment.zk_verification,
                bytes.fromhex(fn._encode_transaction_data()[2:]),
                purpose="slash",
                key=f"slash:{job_id}:{time.time_ns()}",
            )
            if res.ok:
                done += 1
                self.slashed += 1
                log.info("job %s slashed: proofs missing after the deadline", job_id)
            else:
                self._retry_at[job_id] = now + RETRY_S
                log.warning("slashUnproven(%s) refused: %s", job_id, res.error)
        return done

    def forget(self, job_id: int) -> None:
        self._deadline.pop(job_id, None)
        self._retry_at.pop(job_id, None)
