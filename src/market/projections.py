"""How raw events become derived state: the event record, and one fold per entity family.

A *family* owns some derived tables, all keyed by one :class:`~market.db.models.RawEvent`
column (``job_id``, ``node``, ``model_id`` or ``agent``), and has a handler per event name.
Contracts every handler keeps:

- it reads only the event record and its own family's rows (never the chain, the clock, or
  another family's tables), so a family's rows for some keys are exactly the fold of the
  events carrying those keys, in chain order;
- it sets ``updated_block`` on the rows it touches.

So :func:`rebuild` can delete one entity's rows and replay only its events, and the indexer
gets the same rows whether it folded events one range at a time, after a crash, or after a
reorg. Handlers work on records (the stored JSON form), never on decoded web3 values, so
events read from the chain and events loaded back from the database fold alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from sqlalchemy import delete, inspect, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from market.chain.events import Event
from market.chain.types import JobStatus
from market.db import Base
from market.db.models import (
    Job,
    Model,
    ModelSegment,
    Node,
    NodeModel,
    RawEvent,
    Result,
    Settlement,
    VaultAccount,
)
from market.errors import VerimarketError

T = TypeVar("T", bound=Base)

#: JSON keeps integers exact up to 2^53; larger ones are stored as decimal strings.
JSON_INT_MAX = 2**53

#: Keys per ``IN (...)`` clause.
IN_CHUNK = 500


class ProjectionError(VerimarketError):
    """The events in the database do not fold: one names an entity never created."""


# ---------------------------------------------------------------- records


def jsonable(value: Any) -> Any:
    """An event argument in its stored JSON form: bytes as 0x hex, integers beyond ±2^53 as
    decimal strings, tuples as lists; booleans, strings and small integers unchanged."""
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int):
        return value if -JSON_INT_MAX <= value <= JSON_INT_MAX else str(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    raise TypeError(f"cannot store {type(value).__name__} in an event's JSON")


@dataclass(frozen=True)
class EventRecord:
    """One raw event in its stored form (the columns of :class:`RawEvent`)."""

    chain_id: int
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    block_timestamp: int
    contract: str
    address: str
    name: str
    args: dict[str, Any]
    extra: dict[str, Any] | None
    job_id: int | None
    node: str | None
    agent: str | None
    model_id: str | None

    @property
    def key(self) -> tuple[str, int]:
        return (self.tx_hash, self.log_index)

    @property
    def order(self) -> tuple[int, int]:
        return (self.block_number, self.log_index)

    @classmethod
    def from_event(
        cls, chain_id: int, event: Event, timestamp: int, extra: dict[str, Any] | None
    ) -> EventRecord:
        args = {k: jsonable(v) for k, v in event.args.items()}
        job_id = event.args.get("jobId")
        return cls(
            chain_id=chain_id,
            tx_hash="0x" + event.tx_hash.hex(),
            log_index=event.log_index,
            block_number=event.block_number,
            block_hash="0x" + event.block_hash.hex(),
            block_timestamp=timestamp,
            contract=event.contract,
            address=event.address,
            name=event.name,
            args=args,
            extra=extra,
            job_id=int(job_id) if job_id is not None else None,
            node=event.args.get("node"),
            agent=event.args.get("agent"),
            model_id=args.get("modelId"),
        )

    @classmethod
    def from_row(cls, row: RawEvent) -> EventRecord:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})

    def as_row(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _blob(value: str) -> bytes | None:
    """Inline bytes from their 0x hex; None when empty."""
    return bytes.fromhex(value[2:]) or None


# ---------------------------------------------------------------- row cache
# The session's identity map holds clean rows weakly; keeping them here saves one SELECT per
# event on rows already loaded in this transaction.


def _rows(s: Session) -> dict[tuple[type[Base], Any], Any]:
    rows: dict[tuple[type[Base], Any], Any] = s.info.setdefault("projection_rows", {})
    return rows


def _get(s: Session, cls: type[T], key: Any) -> T | None:
    rows = _rows(s)
    obj = rows.get((cls, key))
    if obj is None:
        obj = s.get(cls, key)
        if obj is not None:
            rows[(cls, key)] = obj
    return obj


def _add(s: Session, obj: T, key: Any) -> T:
    s.add(obj)
    _rows(s)[(type(obj), key)] = obj
    return obj


def forget(s: Session) -> None:
    """Flush, then drop every row this session holds (after bulk deletes or updates)."""
    s.flush()
    s.expunge_all()
    _rows(s).clear()


# ---------------------------------------------------------------- jobs


def _job(s: Session, rec: EventRecord) -> Job:
    job = _get(s, Job, rec.job_id)
    if job is None:
        raise ProjectionError(
            f"{rec.name} at block {rec.block_number} names job {rec.job_id}, never submitted "
            "in the indexed blocks; re-index from the deployment block"
        )
    job.updated_block = rec.block_number
    job.confirmed = False
    return job


def _on_submitted(s: Session, rec: EventRecord) -> None:
    a = rec.args
    job = Job(
        job_id=rec.job_id,
        status=JobStatus.OPEN,
        payer=a["payer"],
        from_vault=bool(a["fromVault"]),
        mode=int(a["mode"]),
        model_id=a["modelId"],
        input_hash=a["inputHash"],
        input=_blob(a["input"]),
        input_uri=a["inputURI"],
        max_fee=int(a["maxFee"]),
        deadline=int(a["deadline"]),
        callback=a["callback"],
        callback_gas_limit=int(a["callbackGasLimit"]),
        callback_failed=False,
        submit_block=rec.block_number,
        submitted_at=rec.block_timestamp,
        submit_tx=rec.tx_hash,
        updated_block=rec.block_number,
        confirmed=False,
    )
    _add(s, job, rec.job_id)


def _on_claimed(s: Session, rec: EventRecord) -> None:
    job, a = _job(s, rec), rec.args
    job.status = JobStatus.CLAIMED
    job.node, job.price, job.collateral = a["node"], int(a["price"]), int(a["collateral"])
    job.claim_block, job.claimed_at = rec.block_number, rec.block_timestamp
    job.claim_tx = rec.tx_hash


def _on_answered_from_cache(s: Session, rec: EventRecord) -> None:
    """An Open job answered from a node's result cache (no JobClaimed): its node and price."""
    job, a = _job(s, rec), rec.args
    job.node, job.price, job.collateral = a["node"], int(a["price"]), 0


def _on_committed(s: Session, rec: EventRecord) -> None:
    job, a = _job(s, rec), rec.args
    job.status = JobStatus.COMMITTED
    job.result_hash, job.output, job.output_uri = (
        a["resultHash"],
        _blob(a["output"]),
        a["outputURI"],
    )
    job.window_end = int(a["windowEnd"])
    job.commit_block, job.committed_at = rec.block_number, rec.block_timestamp
    job.commit_tx = rec.tx_hash
    result = Result(
        job_id=job.job_id,
        node=a["node"],
        result_hash=a["resultHash"],
        output=_blob(a["output"]),
        output_uri=a["outputURI"],
        window_end=int(a["windowEnd"]),
        block_number=rec.block_number,
        committed_at=rec.block_timestamp,
        tx_hash=rec.tx_hash,
    )
    _add(s, result, (job.job_id, a["node"]))


def _on_callback_failed(s: Session, rec: EventRecord) -> None:
    _job(s, rec).callback_failed = True


def _settle(
    s: Session,
    rec: EventRecord,
    status: JobStatus,
    kind: str,
    caller: str | None = None,
    **amounts: int,
) -> None:
    job = _job(s, rec)
    job.status = status
    job.settle_block, job.settled_at, job.settle_tx = (
        rec.block_number,
        rec.block_timestamp,
        rec.tx_hash,
    )
    for name, value in amounts.items():
        setattr(job, name, value)
    parts = {"node_payout": 0, "fee": 0, "refund": 0, "slashed": 0, "compensation": 0}
    parts.update(amounts)
    settlement = Settlement(
        job_id=job.job_id,
        kind=kind,
        node=job.node,
        caller=caller,
        block_number=rec.block_number,
        settled_at=rec.block_timestamp,
        tx_hash=rec.tx_hash,
        **parts,
    )
    _add(s, settlement, job.job_id)


def _on_finalized(s: Session, rec: EventRecord) -> None:
    a = rec.args
    _settle(
        s,
        rec,
        JobStatus.SETTLED,
        "finalized",
        node_payout=int(a["nodePayout"]),
        fee=int(a["fee"]),
        refund=int(a["refund"]),
    )


def _on_expired(s: Session, rec: EventRecord) -> None:
    a = rec.args
    _settle(
        s,
        rec,
        JobStatus.EXPIRED,
        "expired",
        caller=a["caller"],
        refund=int(a["refund"]),
        slashed=int(a["slashed"]),
        compensation=int(a["compensation"]),
    )


def _on_cancelled(s: Session, rec: EventRecord) -> None:
    _settle(s, rec, JobStatus.CANCELLED, "cancelled", refund=int(rec.args["refund"]))


# ---------------------------------------------------------------- nodes


def _node(s: Session, rec: EventRecord) -> Node:
    node = _get(s, Node, rec.node)
    if node is None:
        node = _add(
            s,
            Node(
                address=rec.node,
                registered=False,
                stake=0,
                locked=0,
                unbonding=0,
                unbonding_ready_at=0,
                jobs_claimed=0,
                jobs_served=0,
                earnings=0,
                slashes=0,
                slashed_total=0,
            ),
            rec.node,
        )
    node.updated_block = rec.block_number
    return node


def _on_node_registered(s: Session, rec: EventRecord) -> None:
    node = _node(s, rec)
    node.registered, node.stake = True, int(rec.args["stake"])
    node.registered_block, node.registered_at = rec.block_number, rec.block_timestamp


def _on_stake_added(s: Session, rec: EventRecord) -> None:
    _node(s, rec).stake = int(rec.args["stake"])


def _on_unbonding(s: Session, rec: EventRecord) -> None:
    node = _node(s, rec)
    node.unbonding += int(rec.args["amount"])
    node.unbonding_ready_at = int(rec.args["readyAt"])


def _on_unbonded(s: Session, rec: EventRecord) -> None:
    node = _node(s, rec)
    node.stake -= int(rec.args["amount"])
    node.unbonding, node.unbonding_ready_at = 0, 0


def _on_locked(s: Session, rec: EventRecord) -> None:
    _node(s, rec).locked += int(rec.args["amount"])


def _on_unlocked(s: Session, rec: EventRecord) -> None:
    _node(s, rec).locked -= int(rec.args["amount"])


def _on_slashed(s: Session, rec: EventRecord) -> None:
    node, amount = _node(s, rec), int(rec.args["amount"])
    node.locked -= amount
    node.stake -= amount
    node.slashes += 1
    node.slashed_total += amount


def _on_node_claimed(s: Session, rec: EventRecord) -> None:
    _node(s, rec).jobs_claimed += 1


def _on_node_finalized(s: Session, rec: EventRecord) -> None:
    node = _node(s, rec)
    node.jobs_served += 1
    node.earnings += int(rec.args["nodePayout"])


def _on_price_set(s: Session, rec: EventRecord) -> None:
    _node(s, rec)
    key = (rec.node, rec.model_id)
    row = _get(s, NodeModel, key)
    if row is None:
        row = _add(s, NodeModel(node=rec.node, model_id=rec.model_id), key)
    row.price, row.updated_block = int(rec.args["price"]), rec.block_number


def _on_model_removed(s: Session, rec: EventRecord) -> None:
    _node(s, rec)
    key = (rec.node, rec.model_id)
    row = _get(s, NodeModel, key)
    if row is None:
        return
    _rows(s).pop((NodeModel, key))
    if inspect(row).pending:  # set earlier in this transaction, never written
        s.expunge(row)
    else:
        s.delete(row)
        s.flush()  # a later ModelPriceSet in this transaction inserts it again


# ---------------------------------------------------------------- models


def _on_model_registered(s: Session, rec: EventRecord) -> None:
    a = rec.args
    s.add(
        Model(
            model_id=rec.model_id,
            owner=a["owner"],
            artifacts_hash=a["artifactsHash"],
            output_scale=int(a["outputScale"]),
            segment_count=int(a["segmentCount"]),
            metadata_uri=a["metadataURI"],
            registered_block=rec.block_number,
            registered_at=rec.block_timestamp,
            tx_hash=rec.tx_hash,
        )
    )
    for i, seg in enumerate((rec.extra or {}).get("segments", [])):
        s.add(
            ModelSegment(
                model_id=rec.model_id,
                index=i,
                segment_hash=seg["segment_hash"],
                vk_hash=seg["vk_hash"],
                verifier=seg["verifier"],
            )
        )


# ---------------------------------------------------------------- vault accounts


def _account(s: Session, rec: EventRecord) -> VaultAccount:
    acct = _get(s, VaultAccount, rec.agent)
    if acct is None:
        raise ProjectionError(
            f"{rec.name} at block {rec.block_number} names vault account {rec.agent}, never "
            "opened in the indexed blocks; re-index from the deployment block"
        )
    acct.updated_block = rec.block_number
    return acct


def _on_account_opened(s: Session, rec: EventRecord) -> None:
    a = rec.args
    acct = VaultAccount(
        agent=a["agent"],
        funder=a["funder"],
        balance=int(a["deposit"]),
        max_fee_per_job=0,
        budget_per_period=0,
        period_length=0,
        any_model=False,
        spent=0,
        refunded=0,
        withdrawn=0,
        pending_withdrawal=0,
        withdrawal_ready_at=0,
        opened_block=rec.block_number,
        updated_block=rec.block_number,
    )
    _add(s, acct, rec.agent)


def _on_policy_set(s: Session, rec: EventRecord) -> None:
    acct, a = _account(s, rec), rec.args
    acct.max_fee_per_job = int(a["maxFeePerJob"])
    acct.budget_per_period = int(a["budgetPerPeriod"])
    acct.period_length = int(a["periodLength"])
    acct.any_model = bool(a["anyModel"])


def _on_deposited(s: Session, rec: EventRecord) -> None:
    _account(s, rec).balance = int(rec.args["balance"])


def _on_spent(s: Session, rec: EventRecord) -> None:
    acct, amount = _account(s, rec), int(rec.args["amount"])
    acct.balance -= amount
    acct.spent += amount


def _on_refunded(s: Session, rec: EventRecord) -> None:
    acct = _account(s, rec)
    acct.balance = int(rec.args["balance"])
    acct.refunded += int(rec.args["amount"])


def _on_withdrawal_requested(s: Session, rec: EventRecord) -> None:
    acct = _account(s, rec)
    acct.pending_withdrawal = int(rec.args["amount"])
    acct.withdrawal_ready_at = int(rec.args["readyAt"])


def _on_withdrawal_cancelled(s: Session, rec: EventRecord) -> None:
    acct = _account(s, rec)
    acct.pending_withdrawal, acct.withdrawal_ready_at = 0, 0


def _on_withdrawn(s: Session, rec: EventRecord) -> None:
    acct, amount = _account(s, rec), int(rec.args["amount"])
    acct.balance -= amount
    acct.withdrawn += amount
    acct.pending_withdrawal, acct.withdrawal_ready_at = 0, 0


def _touch_account(s: Session, rec: EventRecord) -> None:
    _account(s, rec)


# ---------------------------------------------------------------- families

Handler = Callable[[Session, EventRecord], None]


@dataclass(frozen=True)
class Family:
    """Derived tables keyed by one RawEvent column, and the handlers that fold into them."""

    name: str
    column: InstrumentedAttribute[Any]
    #: (table, its key column), child tables first (the order rows are deleted in).
    tables: tuple[tuple[type[Base], InstrumentedAttribute[Any]], ...]
    handlers: dict[str, Handler]

    def key(self, rec: EventRecord) -> Any:
        """The entity ``rec`` folds into in this family, or None."""
        return getattr(rec, self.column.key) if rec.name in self.handlers else None


FAMILIES: tuple[Family, ...] = (
    Family(
        "jobs",
        RawEvent.job_id,
        ((Result, Result.job_id), (Settlement, Settlement.job_id), (Job, Job.job_id)),
        {
            "JobSubmitted": _on_submitted,
            "JobClaimed": _on_claimed,
            "ResultCommitted": _on_committed,
            "JobAnsweredFromCache": _on_answered_from_cache,
            "CallbackFailed": _on_callback_failed,
            "JobFinalized": _on_finalized,
            "JobExpired": _on_expired,
            "JobCancelled": _on_cancelled,
        },
    ),
    Family(
        "nodes",
        RawEvent.node,
        ((NodeModel, NodeModel.node), (Node, Node.address)),
        {
            "NodeRegistered": _on_node_registered,
            "StakeAdded": _on_stake_added,
            "UnbondingRequested": _on_unbonding,
            "UnbondedWithdrawn": _on_unbonded,
            "CollateralLocked": _on_locked,
            "CollateralUnlocked": _on_unlocked,
            "NodeSlashed": _on_slashed,
            "ModelPriceSet": _on_price_set,
            "ModelRemoved": _on_model_removed,
            "JobClaimed": _on_node_claimed,
            "JobFinalized": _on_node_finalized,
        },
    ),
    Family(
        "models",
        RawEvent.model_id,
        ((ModelSegment, ModelSegment.model_id), (Model, Model.model_id)),
        {"ModelRegistered": _on_model_registered},
    ),
    Family(
        "vault",
        RawEvent.agent,
        ((VaultAccount, VaultAccount.agent),),
        {
            "AccountOpened": _on_account_opened,
            "PolicySet": _on_policy_set,
            "Deposited": _on_deposited,
            "Spent": _on_spent,
            "Refunded": _on_refunded,
            "WithdrawalRequested": _on_withdrawal_requested,
            "WithdrawalCancelled": _on_withdrawal_cancelled,
            "Withdrawn": _on_withdrawn,
            "ModelAllowed": _touch_account,
            "SpenderSet": _touch_account,
        },
    ),
)


def apply_events(s: Session, records: Iterable[EventRecord]) -> None:
    """Fold ``records`` into the derived tables. They must be in chain order and come after
    every event already folded (else use :func:`rebuild`)."""
    for rec in records:
        for fam in FAMILIES:
            if fam.key(rec) is not None:
                fam.handlers[rec.name](s, rec)


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def rebuild(s: Session, chain_id: int, touched: Iterable[EventRecord]) -> int:
    """Rebuild the derived rows of every entity ``touched`` names, from the raw events now in
    the database: delete the rows, replay that entity's events in chain order. Returns the
    number of events replayed. Leaves the session empty (re-get any row held before)."""
    touched = list(touched)
    forget(s)
    replayed = 0
    for fam in FAMILIES:
        keys = sorted({k for rec in touched if (k := fam.key(rec)) is not None})
        if not keys:
            continue
        rows: list[RawEvent] = []
        for chunk in chunks(keys):
            for table, col in fam.tables:
                s.execute(
                    delete(table).where(col.in_(chunk)),
                    execution_options={"synchronize_session": False},
                )
            rows.extend(
                s.scalars(
                    select(RawEvent).where(
                        RawEvent.chain_id == chain_id,
                        fam.column.in_(chunk),
                        RawEvent.name.in_(list(fam.handlers)),
                    )
                )
            )
        records = sorted((EventRecord.from_row(r) for r in rows), key=lambda r: r.order)
        forget(s)
        for rec in records:
            fam.handlers[rec.name](s, rec)
        forget(s)
        replayed += len(records)
    return replayed


def mark_confirmed(s: Session, confirmed_block: int) -> None:
    """Set ``jobs.confirmed`` to (last event's block <= ``confirmed_block``)."""
    s.flush()
    opts = {"synchronize_session": False}
    s.execute(
        update(Job)
        .where(Job.confirmed.is_(False), Job.updated_block <= confirmed_block)
        .values(confirmed=True),
        execution_options=opts,
    )
    s.execute(
        update(Job)
        .where(Job.confirmed.is_(True), Job.updated_block > confirmed_block)
        .values(confirmed=False),
        execution_options=opts,
    )
