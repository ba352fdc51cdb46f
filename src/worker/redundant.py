"""A node's side of k-of-n redundant jobs (RedundantJobs): run the model, commit
keccak(resultHash, salt, node) with the job's bond, keep the salt, and reveal once the
reveal phase opens. See docs/redundancy.md.

The salt is what lets a node open its commitment: a node that loses it is slashed as if it
had never revealed, so seats are written to ``seat_dir`` (one small JSON file per job,
atomically) before the commit transaction is sent, and read back after a restart.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from market.canonical import keccak
from market.chain.market import Market
from market.chain.redundant import Redundant, RedundantJob, RedundantStatus, new_salt
from market.chain.txmanager import TxManager
from market.chain.types import ZERO_ADDRESS, ZERO_HASH
from market.errors import ChainError, ContractRevert
from worker.models import LoadedModel
from worker.store import NodeStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Seat:
    """What a node must remember between its commit and its reveal."""

    job_id: int
    result_hash: str
    salt: str
    output: str

    @property
    def output_bytes(self) -> bytes:
        return bytes.fromhex(self.output)


class RedundantWorker:
    """Serves redundant jobs of one model with one key."""

    def __init__(
        self,
        redundant: Redundant,
        model: LoadedModel,
        model_id: bytes,
        seat_dir: Path | None = None,
        inline_output_max: int = 4096,
    ) -> None:
        self.redundant = redundant
        self.model = model
        self.model_id = model_id
        self.seat_dir = seat_dir
        self.inline_output_max = inline_output_max
        self._seats: dict[int, Seat] = {}
        #: jobs with business left (a seat to reveal, a job to finalize); after a restart,
        #: every job this node holds a seat file for
        self._open: set[int] = set()
        if seat_dir is not None and seat_dir.is_dir():
            for path in seat_dir.glob("redundant-*.json"):
                self._open.add(int(path.stem.removeprefix("redundant-")))

    # ------------------------------------------------------------------ seats
    def _path(self, job_id: int) -> Path | None:
        return None if self.seat_dir is None else self.seat_dir / f"redundant-{job_id}.json"

    def _remember(self, seat: Seat) -> None:
        self._seats[seat.job_id] = seat
        path = self._path(seat.job_id)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(seat)))
            tmp.replace(path)

    def seat(self, job_id: int) -> Seat | None:
        if job_id in self._seats:
            return self._seats[job_id]
        path = self._path(job_id)
        if path is None or not path.exists():
            return None
        seat = Seat(**json.loads(path.read_text()))
        self._seats[job_id] = seat
        return seat

    # ------------------------------------------------------------------ work
    def compute(self, job: RedundantJob) -> bytes:
        """The canonical output for the job's inline input (checked against its hash)."""
        if job.model_id != self.model_id:
            raise ChainError(f"redundant job {job.job_id} is for another model")
        data, uri = self.redundant.input_of(job.job_id)
        if not data:
            raise ChainError(f"redundant job {job.job_id} has no inline input ({uri})")
        if keccak(data) != job.input_hash:
            raise ChainError(f"redundant job {job.job_id}: input does not match its hash")
        return self.model.run_inputs([data])[0]

    def commit(self, job_id: int) -> Seat:
        """Run the job and take a seat committed to the result (idempotent per job)."""
        existing = self.seat(job_id)
        if existing is not None:
            return existing
        job = self.redundant.job(job_id)
        output = self.compute(job)
        seat = Seat(job_id, keccak(output).hex(), new_salt().hex(), output.hex())
        self._remember(seat)  # before the transaction: a crash after it must not lose the salt
        try:
            self.redundant.commit(job_id, bytes.fromhex(seat.result_hash), bytes.fromhex(seat.salt))
        except ContractRevert:  # refused (seats full, deadline passed): no seat to keep
            self._forget(job_id)
            raise
        return seat

    def _forget(self, job_id: int) -> None:
        self._seats.pop(job_id, None)
        path = self._path(job_id)
        if path is not None:
            path.unlink(missing_ok=True)

    def reveal(self, job_id: int) -> bool:
        """Reveal this node's seat once the phase is open; False when there is nothing to do
        (no seat, already revealed, phase not open yet, job closed)."""
        seat = self.seat(job_id)
        if seat is None:
            return False
        job = self.redundant.job(job_id)
        if job.status != RedundantStatus.OPEN or not _reveal_open(job, self._now()):
            return False
        _, revealed = self.redundant.seat_of(job_id, self.redundant.client.address)
        if revealed != ZERO_HASH:
            return False
        output = seat.output_bytes
        inline = output if len(output) <= self.inline_output_max else b""
        self.redundant.reveal(
            job_id, bytes.fromhex(seat.result_hash), bytes.fromhex(seat.salt), inline
        )
        return True

    # ------------------------------------------------------------------ loop
    def _now(self) -> int:
        return int(self.redundant.client.now())

    def wants(self, job: RedundantJob, price: int | None) -> bool:
        """Whether to take a seat: our model, seats and time left, and a share ≥ our price."""
        return (
            job.status == RedundantStatus.OPEN
            and job.model_id == self.model_id
            and job.commits < job.n
            and self._now() <= job.commit_deadline
            and price is not None
            and job.fee // job.n >= price
        )

    def step(self, from_block: int) -> int:
        """One round of the node's loop over redundant jobs submitted since ``from_block``:
        take a seat in those it wants, reveal where the phase has opened, finalize those
        whose outcome is fixed (it is paid only then). Returns the block to start from next
        time (jobs with open business are remembered, so nothing is skipped)."""
        head = self.redundant.client.block_number()
        self._open.update(self.redundant.submitted_since(from_block, head))
        me = self.redundant.client.address
        price = self.redundant.market.price_of(me, self.model_id)
        for job_id in sorted(self._open):
            try:
                job = self.redundant.job(job_id)
                if job.status != RedundantStatus.OPEN:
                    self._open.discard(job_id)
                    continue
                if self.seat(job_id) is None:
                    if self.wants(job, price):
                        self.commit(job_id)
                    elif (
                        self._now() > job.commit_deadline
                        or job.commits >= job.n
                        or job.model_id != self.model_id
                    ):
                        self._open.discard(job_id)  # nothing for us here, ever
                    continue
                self.reveal(job_id)
                if self.redundant.can_finalize(job_id):
                    self.redundant.finalize(job_id)
                    self._open.discard(job_id)
            except ChainError as exc:  # a lost race for the last seat, a reorg: next round
                log.info("redundant job %s: %s", job_id, exc)
        return head + 1


def _reveal_open(job: RedundantJob, now: int) -> bool:
    """Reveals are open once every seat has committed or the commit deadline has passed,
    until the reveal deadline."""
    return (job.commits == job.n or now > job.commit_deadline) and now <= job.reveal_deadline


CURSOR = "redundant"


class RedundantLoop:
    """The node's loop over redundant jobs: one RedundantWorker per served model, its read
    position kept in the node store."""

    def __init__(self, workers: list[RedundantWorker], store: NodeStore, start_block: int) -> None:
        self.workers = workers
        self.store = store
        self.start_block = start_block

    def step(self) -> int:
        """One round for every model; returns 0 (the caller sleeps its interval)."""
        frm = self.store.cursor(CURSOR, self.start_block - 1) + 1
        nxt = frm
        for w in self.workers:
            nxt = w.step(frm)
        if nxt > frm:
            with self.store.sessions.begin() as s:
                self.store.set_cursor(s, CURSOR, nxt - 1)
        return 0


def redundant_loop(
    market: Market,
    txm: TxManager,
    store: NodeStore,
    models: dict[bytes, LoadedModel],
    seat_dir: Path,
) -> RedundantLoop | None:
    """The node's redundant-job loop for ``models`` (id -> loaded model), or None when the
    deployment has no RedundantJobs contract."""
    if market.deployment.redundant_jobs == ZERO_ADDRESS or not models:
        return None
    redundant = Redundant(market, txm)
    workers = [
        RedundantWorker(redundant, model, model_id, seat_dir / model_id.hex()[:16])
        for model_id, model in models.items()
    ]
    return RedundantLoop(workers, store, market.deployment.start_block)
