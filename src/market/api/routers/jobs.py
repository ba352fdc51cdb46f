"""Jobs: filtered, paginated list; one job with its timeline, results, proofs, settlement."""

from __future__ import annotations

from typing import Annotated, Literal

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, HTTPException, Path, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from market.api.deps import SessionDep
from market.api.queries import hex_or_none, job_out, status_of, wei
from market.api.schemas import (
    ADDRESS_PATTERN,
    HASH_PATTERN,
    JobDetailOut,
    JobEventOut,
    JobPage,
    JobState,
    ProofOut,
    ResultOut,
    SettlementOut,
    Step,
    TimelineStep,
    error_responses,
)
from market.db.models import Job, Proof, RawEvent, Result, Settlement

router = APIRouter(prefix="/jobs", tags=["jobs"])

#: Job ids are uint256 on chain; the index stores them as signed 64-bit integers.
MAX_ID = 2**63 - 1
MAX_OFFSET = 100_000

JobId = Annotated[int, Path(ge=0, le=MAX_ID, description="the job id on chain")]
AddressQ = Annotated[str | None, Query(pattern=ADDRESS_PATTERN)]


def _job_or_404(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id} in the index")
    return job


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    state: Annotated[list[JobState] | None, Query(description="any of these states")] = None,
    model: Annotated[str | None, Query(pattern=HASH_PATTERN, description="model id")] = None,
    node: Annotated[str | None, Query(pattern=ADDRESS_PATTERN, description="claiming node")] = None,
    agent: Annotated[
        str | None,
        Query(pattern=ADDRESS_PATTERN, description="the payer (the agent, for vault jobs)"),
    ] = None,
    payer: AddressQ = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="next_cursor of the previous page")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")] = 0,
    order: Literal["desc", "asc"] = "desc",
) -> JobPage:
    """Jobs matching every filter given, newest first by default.

    Page with ``cursor`` (keyset: stable while jobs are added) or ``offset``; with both,
    ``offset`` skips rows after the cursor.
    """
    q = select(Job)
    if state:
        q = q.where(Job.status.in_([status_of(s) for s in state]))
    if model is not None:
        q = q.where(Job.model_id == model.lower())
    if node is not None:
        q = q.where(Job.node == to_checksum_address(node))
    for who in (agent, payer):
        if who is not None:
            q = q.where(Job.payer == to_checksum_address(who))
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    if cursor is not None:
        q = q.where(Job.job_id < cursor if order == "desc" else Job.job_id > cursor)
    q = q.order_by(Job.job_id.desc() if order == "desc" else Job.job_id.asc())
    rows = list(session.scalars(q.offset(offset).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return JobPage(
        items=[job_out(j) for j in rows], total=total, next_cursor=rows[-1].job_id if more else None
    )


def _results(session: Session, job_id: int) -> list[ResultOut]:
    rows = session.scalars(
        select(Result).where(Result.job_id == job_id).order_by(Result.block_number, Result.node)
    )
    return [
        ResultOut(
            job_id=r.job_id,
            node=r.node,
            result_hash=r.result_hash,
            output_hex=hex_or_none(r.output),
            output_uri=r.output_uri,
            window_end=r.window_end,
            block_number=r.block_number,
            committed_at=r.committed_at,
            tx_hash=r.tx_hash,
        )
        for r in rows
    ]


def _proofs(session: Session, job_id: int) -> list[ProofOut]:
    rows = session.scalars(
        select(Proof).where(Proof.job_id == job_id).order_by(Proof.node, Proof.segment_index)
    )
    return [ProofOut.model_validate(p) for p in rows]


def _timeline(job: Job) -> list[TimelineStep]:
    steps: list[TimelineStep] = [
        TimelineStep(
            step="submitted",
            block=job.submit_block,
            timestamp=job.submitted_at,
            tx_hash=job.submit_tx,
        )
    ]
    later: tuple[tuple[Step, int | None, int | None, str | None], ...] = (
        ("claimed", job.claim_block, job.claimed_at, job.claim_tx),
        ("committed", job.commit_block, job.committed_at, job.commit_tx),
        ("settled", job.settle_block, job.settled_at, job.settle_tx),
    )
    for step, block, at, tx in later:
        if block is not None and at is not None:
            steps.append(
                TimelineStep(
                    step=step,
                    block=block,
                    timestamp=at,
                    tx_hash=tx,
                )
            )
    return steps


@router.get("/{job_id}", response_model=JobDetailOut, responses=error_responses(404))
def get_job(job_id: JobId, session: SessionDep) -> JobDetailOut:
    """One job: its state, the timeline of its steps with blocks and timestamps, every event
    that names it, its results, proofs and settlement."""
    job = _job_or_404(session, job_id)
    events = session.scalars(
        select(RawEvent)
        .where(RawEvent.job_id == job_id)
        .order_by(RawEvent.block_number, RawEvent.log_index)
    )
    settlement = session.get(Settlement, job_id)
    return JobDetailOut(
        **job_out(job).model_dump(),
        input_hex=hex_or_none(job.input),
        output_hex=hex_or_none(job.output),
        callback=job.callback,
        callback_gas_limit=job.callback_gas_limit,
        callback_failed=job.callback_failed,
        collateral=wei(job.collateral),
        node_payout=wei(job.node_payout),
        fee=wei(job.fee),
        refund=wei(job.refund),
        slashed=wei(job.slashed),
        compensation=wei(job.compensation),
        timeline=_timeline(job),
        events=[
            JobEventOut(
                name=e.name,
                contract=e.contract,
                block=e.block_number,
                log_index=e.log_index,
                timestamp=e.block_timestamp,
                tx_hash=e.tx_hash,
            )
            for e in events
        ],
        results=_results(session, job_id),
        proofs=_proofs(session, job_id),
        settlement=None
        if settlement is None
        else SettlementOut(
            kind=settlement.kind,
            node=settlement.node,
            node_payout=str(settlement.node_payout),
            fee=str(settlement.fee),
            refund=str(settlement.refund),
            slashed=str(settlement.slashed),
            compensation=str(settlement.compensation),
            caller=settlement.caller,
            block_number=settlement.block_number,
            settled_at=settlement.settled_at,
            tx_hash=settlement.tx_hash,
        ),
    )


@router.get("/{job_id}/results", response_model=list[ResultOut], responses=error_responses(404))
def get_results(job_id: JobId, session: SessionDep) -> list[ResultOut]:
    """Results committed for the job (one per node; several for redundant jobs)."""
    _job_or_404(session, job_id)
    return _results(session, job_id)


@router.get("/{job_id}/proofs", response_model=list[ProofOut], responses=error_responses(404))
def get_proofs(job_id: JobId, session: SessionDep) -> list[ProofOut]:
    """Segment proofs recorded for the job, and where and whether they were verified."""
    _job_or_404(session, job_id)
    return _proofs(session, job_id)
