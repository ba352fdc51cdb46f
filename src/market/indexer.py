"""The chain indexer: every event of the four protocol contracts, into the market database.

One :class:`Indexer` follows one deployment from its ``start_block``. Each round it reads a
block range, and writes the range's raw events, the derived state (jobs, nodes, models,
vault accounts…) and the cursor in **one** database transaction, so a crash at any moment
leaves the database at a range boundary and a restart carries on from the cursor.

Contracts kept by this module:

- **Deterministic**: derived rows are a pure fold, in chain order, of the raw events that name
  them (plus their block timestamps). Indexing the same chain into an empty database gives the
  same rows, whatever the range sizes, crashes, replays and reorgs on the way
  (:func:`dump` gives the canonical form tests compare).
- **Idempotent**: replaying a range already indexed (:meth:`Indexer.index_range`) inserts
  nothing twice and leaves the database identical.
- **Pending then final**: events are visible as soon as their block is indexed; the cursor's
  ``confirmed_block`` (head - K confirmations) says which are final, and ``jobs.confirmed``
  marks jobs whose last event is at or below it.
- **Reorg-safe**: the hashes of the last ``keep_blocks`` indexed blocks are kept; a range is
  only written when its first block's parent is the stored hash of the block before it, its
  events' block hashes match the headers, and its last block did not change while it was read.
  When the stored hash of the cursor block differs from the chain's, the indexer walks back to
  the common ancestor, deletes the raw events above it, rebuilds the derived rows of every
  entity those events named from the remaining events, and carries on from there. A reorg
  deeper than ``keep_blocks`` re-indexes from the deployment block.
- **Large ranges**: :class:`market.chain.events.LogReader` halves the log range when the RPC
  refuses one as too large, and grows it back after successes.

One indexer per database: the database holds one deployment's index.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from functools import partial
from typing import Any, cast

import requests
from hexbytes import HexBytes
from sqlalchemy import Engine, delete, insert, inspect, select
from sqlalchemy.orm import Session, sessionmaker
from web3.exceptions import ContractCustomError, ContractLogicError, Web3Exception, Web3RPCError

from market.chain.client import ChainClient
from market.chain.events import Event, LogReader
from market.chain.types import Deployment
from market.db import Base
from market.db.models import DERIVED_TABLES, IndexedBlock, IndexerCursor, RawEvent
from market.errors import ChainError, ConfigError, RpcUnreachable, VerimarketError
from market.projections import (
    EventRecord,
    apply_events,
    chunks,
    forget,
    mark_confirmed,
    rebuild,
)

log = logging.getLogger(__name__)

#: The contracts followed, by the Deployment field that holds each address.
CONTRACTS = {
    "JobMarket": "job_market",
    "NodeRegistry": "node_registry",
    "PaymentVault": "payment_vault",
    "ModelRegistry": "model_registry",
}

#: Core tables for bulk inserts (the ORM's bulk path splits rows by which columns are NULL).
_RAW_EVENTS = Base.metadata.tables[RawEvent.__tablename__]
_INDEXED_BLOCKS = Base.metadata.tables[IndexedBlock.__tablename__]


class IndexerError(VerimarketError):
    """The index cannot be brought in line with the chain without a person's help."""


class _ChainMoved(Exception):
    """The chain changed while a range was read; nothing was written, read it again."""


class _ReorgDetected(Exception):
    """The block before a range is not the block the index holds."""


@dataclass(frozen=True)
class IndexerConfig:
    """How the indexer paces itself.

    ``confirmations`` (K): blocks on top of a block before its events are final.
    ``keep_blocks`` (N): block hashes kept for reorg detection; the deepest reorg rewound
    precisely (deeper ones re-index from the deployment block). ``batch_blocks``: most blocks
    per database transaction. ``max_log_range``: most blocks per eth_getLogs (narrowed on
    refusal). ``poll_interval``: seconds between rounds once caught up. ``max_backoff_s``:
    longest wait after failed chain reads (the wait doubles from ``poll_interval``).
    """

    confirmations: int = 12
    keep_blocks: int = 128
    batch_blocks: int = 2000
    max_log_range: int = 2000
    poll_interval: float = 1.0
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if self.keep_blocks < 2 or self.batch_blocks < 1 or self.confirmations < 0:
            raise ConfigError(
                "indexer: keep_blocks must be >= 2, batch_blocks >= 1, confirmations >= 0"
            )


@dataclass(frozen=True)
class Header:
    """The parts of a block header the indexer keeps."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int


# ---------------------------------------------------------------- chain reads


class _TimedLogReader(LogReader):
    """A LogReader that also keeps the ``blockTimestamp`` nodes put on logs (when they do)."""

    def __init__(self, client: ChainClient, contracts: dict[str, str], max_range: int) -> None:
        super().__init__(client, contracts, max_range=max_range)
        self.timestamps: dict[int, int] = {}

    def _get_logs(self, start: int, end: int) -> list[Any]:
        logs = super()._get_logs(start, end)
        for entry in logs:
            ts = entry.get("blockTimestamp")
            if ts is not None:
                self.timestamps[int(entry["blockNumber"])] = (
                    int(ts, 16) if isinstance(ts, str) else int(ts)
                )
        return logs


def _hex(value: Any) -> str:
    return HexBytes(value).to_0x_hex()


# ---------------------------------------------------------------- the indexer


class Indexer:
    """Follows one deployment into one database (``setup`` / ``run_forever`` / ``stop``)."""

    def __init__(
        self,
        client: ChainClient,
        deployment: Deployment,
        engine: Engine,
        config: IndexerConfig | None = None,
    ) -> None:
        self.client = client
        self.deployment = deployment
        self.engine = engine
        self.config = config or IndexerConfig()
        self.sessions = sessionmaker(engine)
        self.reader = _TimedLogReader(
            client,
            {name: getattr(deployment, attr) for name, attr in CONTRACTS.items()},
            self.config.max_log_range,
        )
        self.chain_id = deployment.chain_id
        self._stop = threading.Event()
        self._cursor_id: int | None = None
        #: Counters since start (for logs, tests and benchmarks).
        self.events_indexed = 0
        self.reorgs_handled = 0
        self.retries = 0

    # ------------------------------------------------------------ lifecycle
    def setup(self) -> None:
        """Check the chain and the schema, and find or create this deployment's cursor.

        Raises ConfigError when the RPC serves another chain, the schema is missing, or the
        database already indexes another deployment.
        """
        if not inspect(self.engine).has_table(RawEvent.__tablename__):
            raise ConfigError(
                f"the database has no index tables: run `verimarket db upgrade` first "
                f"({self.engine.url.render_as_string(hide_password=True)})"
            )
        actual = self.client.chain_id
        if actual != self.chain_id:
            raise ConfigError(
                f"the RPC {self.client.rpc_url} serves chain {actual}, but the deployment is on "
                f"chain {self.chain_id}"
            )
        market = self.deployment.job_market
        with self.sessions.begin() as s:
            others = s.scalars(select(IndexerCursor)).all()
            mine = [c for c in others if (c.chain_id, c.deployment) == (self.chain_id, market)]
            if not mine and others:
                o = others[0]
                raise ConfigError(
                    f"this database already indexes deployment {o.deployment} on chain "
                    f"{o.chain_id}; use another database for {market}"
                )
            if mine:
                cursor = mine[0]
            else:
                cursor = IndexerCursor(
                    chain_id=self.chain_id,
                    deployment=market,
                    start_block=self.deployment.start_block,
                    block=self.deployment.start_block - 1,
                    block_hash=None,
                    head=0,
                    confirmations=self.config.confirmations,
                    confirmed_block=-1,
                    reorgs=0,
                )
                s.add(cursor)
                s.flush()
            cursor.confirmations = self.config.confirmations
            self._cursor_id = cursor.id

    def run_forever(self) -> None:
        """Index until :meth:`stop`: catch up, then poll. Chain hiccups (unreachable RPC,
        refused calls) are logged and retried with back-off; database errors propagate."""
        if self._cursor_id is None:
            self.setup()
        backoff = self.config.poll_interval
        while not self._stop.is_set():
            try:
                progressed = self.step()
                backoff = self.config.poll_interval
            except (RpcUnreachable, Web3Exception, requests.RequestException, ChainError) as exc:
                log.warning("indexer: chain read failed (%s); retrying in %.1f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(self.config.max_backoff_s, backoff * 2)
                continue
            if not progressed:
                self._stop.wait(self.config.poll_interval)

    def stop(self) -> None:
        """Ask :meth:`run_forever` to return after the current round (thread-safe)."""
        self._stop.set()

    def sync(self, *, max_rounds: int = 1_000_000) -> int:
        """Index until the cursor reaches the head seen at the end; returns the cursor block."""
        if self._cursor_id is None:
            self.setup()
        for _ in range(max_rounds):
            if not self.step():
                return self.cursor().block
        raise IndexerError(f"indexer did not catch up within {max_rounds} rounds")

    # ------------------------------------------------------------ rounds
    def cursor(self) -> IndexerCursor:
        """A detached copy of this deployment's cursor row."""
        with self.sessions() as s:
            cur = s.get(IndexerCursor, self._cursor_id)
            assert cur is not None, "setup() first"
            s.expunge(cur)
            return cur

    def step(self) -> bool:
        """One round: handle a reorg if the cursor block was replaced, else index the next
        range (at most ``batch_blocks``). Returns False when there was nothing to do."""
        if self._cursor_id is None:
            self.setup()
        head = self.client.block_number()
        cur = self.cursor()
        if cur.block_hash is not None:
            now = self._headers([cur.block]).get(cur.block)
            if now is None or now.hash != cur.block_hash:
                self._handle_reorg()
                return True
        if cur.block >= head:
            return False
        frm = cur.block + 1
        to = min(head, frm + self.config.batch_blocks - 1)
        try:
            self._index(frm, to, head, advance=True)
        except _ReorgDetected:
            self._handle_reorg()
        except _ChainMoved as exc:
            self.retries += 1
            log.info("indexer: chain moved while reading %d..%d (%s); again", frm, to, exc)
        return True

    def index_range(self, frm: int, to: int) -> None:
        """(Re)index blocks ``frm..to`` (within what is already indexed, or just after it).

        Idempotent: events already stored are skipped, the cursor only moves forward.
        Raises IndexerError if the chain changed under the range (a reorg the regular rounds
        will handle).
        """
        if self._cursor_id is None:
            self.setup()
        head = self.client.block_number()
        try:
            self._index(frm, min(to, head), head, advance=False)
        except (_ChainMoved, _ReorgDetected) as exc:
            raise IndexerError(f"the chain changed under blocks {frm}..{to}: {exc}") from exc

    # ------------------------------------------------------------ one range
    def _index(self, frm: int, to: int, head: int, *, advance: bool) -> None:
        top = self._headers([to]).get(to)
        if top is None:
            raise _ChainMoved(f"block {to} is gone")
        self.reader.timestamps.clear()
        events = self.reader.fetch(frm, to)
        keep_from = max(frm, to - self.config.keep_blocks + 1)
        want = {frm, to, *range(keep_from, to + 1)}
        want.update(e.block_number for e in events if e.block_number not in self.reader.timestamps)
        headers = self._headers(sorted(want))
        self._check_consistent(frm, to, top, headers, events)
        extras = self._extras(events)
        stamps = {**self.reader.timestamps, **{n: h.timestamp for n, h in headers.items()}}
        if any(e.block_number not in stamps for e in events):
            raise _ChainMoved("a block with events is gone")
        records = [
            EventRecord.from_event(self.chain_id, e, stamps[e.block_number], extras.get(e.key))
            for e in events
        ]
        with self.sessions.begin() as s:
            cur = s.get(IndexerCursor, self._cursor_id, with_for_update=True)
            assert cur is not None
            if advance and cur.block != frm - 1:
                raise _ChainMoved(f"cursor moved to {cur.block} meanwhile (another indexer?)")
            if not advance and frm > cur.block + 1:
                raise IndexerError(f"cannot index {frm}..{to}: the index ends at {cur.block}")
            self._check_stored_hashes(s, frm, to, headers)
            last = s.execute(
                select(RawEvent.block_number, RawEvent.log_index)
                .where(RawEvent.chain_id == self.chain_id)
                .order_by(RawEvent.block_number.desc(), RawEvent.log_index.desc())
                .limit(1)
            ).first()
            new = self._store_events(s, frm, to, records)
            if new and (last is None or tuple(last) < new[0].order):
                apply_events(s, new)
            elif new:  # new events fall between stored ones: refold the entities they touch
                rebuild(s, self.chain_id, new)
            # rebuilding empties the session: fetch the (still locked) cursor row again
            cur = s.get(IndexerCursor, self._cursor_id)
            assert cur is not None
            if to > cur.block:
                cur.block, cur.block_hash = to, headers[to].hash
            cur.head = max(head, cur.block)
            cur.confirmed_block = cur.head - self.config.confirmations
            self._store_headers(s, headers, cur.block)
            mark_confirmed(s, cur.confirmed_block)
        self.events_indexed += len(new)

    def _store_events(
        self, s: Session, frm: int, to: int, records: list[EventRecord]
    ) -> list[EventRecord]:
        """Insert the records not stored yet; returns them. A stored event with another block
        hash means the index and the chain disagree below the range: a reorg."""
        stored = {
            (tx, li): bh
            for tx, li, bh in s.execute(
                select(RawEvent.tx_hash, RawEvent.log_index, RawEvent.block_hash).where(
                    RawEvent.chain_id == self.chain_id,
                    RawEvent.block_number >= frm,
                    RawEvent.block_number <= to,
                )
            )
        }
        new = []
        for rec in records:
            bh = stored.get(rec.key)
            if bh is None:
                new.append(rec)
            elif bh != rec.block_hash:
                raise _ReorgDetected(f"event {rec.key} is stored with block hash {bh}")
        if new:
            s.execute(insert(_RAW_EVENTS), [r.as_row() for r in new])
        return new

    def _store_headers(self, s: Session, headers: dict[int, Header], cursor_block: int) -> None:
        """Keep the hashes of blocks in (cursor_block - keep_blocks, cursor_block]."""
        floor = cursor_block - self.config.keep_blocks
        keep = [h for h in headers.values() if floor < h.number <= cursor_block]
        if keep:
            s.execute(
                delete(IndexedBlock).where(
                    IndexedBlock.chain_id == self.chain_id,
                    IndexedBlock.number.in_([h.number for h in keep]),
                )
            )
            s.execute(
                insert(_INDEXED_BLOCKS),
                [
                    {
                        "chain_id": self.chain_id,
                        "number": h.number,
                        "hash": h.hash,
                        "parent_hash": h.parent_hash,
                        "timestamp": h.timestamp,
                    }
                    for h in keep
                ],
            )
        s.execute(
            delete(IndexedBlock).where(
                IndexedBlock.chain_id == self.chain_id, IndexedBlock.number <= floor
            )
        )

    def _check_stored_hashes(
        self, s: Session, frm: int, to: int, headers: dict[int, Header]
    ) -> None:
        """The index's hashes of blocks frm-1..to must be the chain's (frm-1: as parent)."""
        parent = s.get(IndexedBlock, (self.chain_id, frm - 1))
        if parent is not None and parent.hash != headers[frm].parent_hash:
            raise _ReorgDetected(
                f"block {frm}'s parent is {headers[frm].parent_hash}, the index holds {parent.hash}"
            )
        for n, h in s.execute(
            select(IndexedBlock.number, IndexedBlock.hash).where(
                IndexedBlock.chain_id == self.chain_id,
                IndexedBlock.number >= frm,
                IndexedBlock.number <= to,
            )
        ):
            if n in headers and headers[n].hash != h:
                raise _ReorgDetected(f"block {n} is {headers[n].hash}, the index holds {h}")

    def _check_consistent(
        self, frm: int, to: int, top: Header, headers: dict[int, Header], events: list[Event]
    ) -> None:
        if to not in headers or headers[to].hash != top.hash:
            raise _ChainMoved(f"block {to} changed while its range was read")
        for e in events:
            h = headers.get(e.block_number)
            if h is not None and h.hash != _hex(e.block_hash):
                raise _ChainMoved(f"logs of block {e.block_number} came from another fork")
        for n in sorted(headers):
            prev = headers.get(n - 1)
            if prev is not None and headers[n].parent_hash != prev.hash:
                raise _ChainMoved(f"blocks {n - 1} and {n} do not link")

    def _extras(self, events: list[Event]) -> dict[tuple[bytes, int], dict[str, Any]]:
        """Chain reads an event needs and does not carry: a model's segments."""
        out: dict[tuple[bytes, int], dict[str, Any]] = {}
        registry = None
        for e in events:
            if e.name != "ModelRegistered":
                continue
            if registry is None:
                registry = self.client.contract("ModelRegistry", self.deployment.model_registry)
            fn = registry.functions.getSegments(e.args["modelId"])
            at = HexBytes(e.block_hash)
            try:
                segs = self.client.rpc(partial(fn.call, block_identifier=at))
            except (ContractCustomError, ContractLogicError, Web3RPCError) as exc:
                raise _ChainMoved(f"segments of a model at block {e.block_number}: {exc}") from exc
            out[e.key] = {
                "segments": [
                    {"segment_hash": _hex(h), "vk_hash": _hex(vk), "verifier": str(v)}
                    for h, vk, v in segs
                ]
            }
        return out

    def _headers(self, numbers: Sequence[int]) -> dict[int, Header]:
        """Headers of ``numbers`` (one batched request per 200); absent blocks are left out."""
        out: dict[int, Header] = {}
        provider = cast(Any, self.client.w3.provider)
        for chunk in chunks(list(numbers), 200):
            reqs = [("eth_getBlockByNumber", [hex(n), False]) for n in chunk]
            replies = self.client.rpc(partial(provider.make_batch_request, reqs))
            if not isinstance(replies, list):
                raise ChainError(f"the node refused a batch of block requests: {replies}")
            for reply in replies:
                if "error" in reply:
                    raise ChainError(f"the node refused a block request: {reply['error']}")
                b = reply.get("result")
                if b:
                    h = Header(
                        int(b["number"], 16), b["hash"], b["parentHash"], int(b["timestamp"], 16)
                    )
                    out[h.number] = h
        return out

    # ------------------------------------------------------------ reorgs
    def _handle_reorg(self) -> None:
        """Rewind to the newest stored block the chain still has, in one transaction."""
        with self.sessions() as s:
            stored = {
                n: h
                for n, h in s.execute(
                    select(IndexedBlock.number, IndexedBlock.hash).where(
                        IndexedBlock.chain_id == self.chain_id
                    )
                )
            }
        chain = self._headers(sorted(stored))
        common = [n for n, h in stored.items() if n in chain and chain[n].hash == h]
        start = self.deployment.start_block
        ancestor = max(common) if common else start - 1
        with self.sessions.begin() as s:
            cur = s.get(IndexerCursor, self._cursor_id, with_for_update=True)
            assert cur is not None
            if ancestor >= cur.block:
                return  # someone rewound already, or the chain came back
            depth = cur.block - ancestor
            if not common:
                log.error(
                    "indexer: reorg deeper than the %d kept block hashes; re-indexing from "
                    "block %d",
                    self.config.keep_blocks,
                    start,
                )
            elif cur.block - depth < cur.confirmed_block:
                log.error(
                    "indexer: reorg of %d blocks reaches below the confirmed block %d: data "
                    "shown as final changed; raise --confirmations",
                    depth,
                    cur.confirmed_block,
                )
            else:
                log.warning("indexer: reorg of %d blocks; rewinding to block %d", depth, ancestor)
            self.rewind(s, ancestor)
            cur = s.get(IndexerCursor, self._cursor_id)  # rewinding empties the session
            assert cur is not None
            cur.block, cur.block_hash = ancestor, stored.get(ancestor)
            cur.reorgs += 1
            mark_confirmed(s, cur.confirmed_block)
        self.reorgs_handled += 1

    def rewind(self, s: Session, ancestor: int) -> None:
        """Delete what the index holds above block ``ancestor`` and rebuild the entities
        those events named from the events that remain. The caller moves the cursor."""
        rows = s.scalars(
            select(RawEvent).where(
                RawEvent.chain_id == self.chain_id, RawEvent.block_number > ancestor
            )
        ).all()
        gone = [EventRecord.from_row(r) for r in rows]
        forget(s)
        s.execute(
            delete(RawEvent).where(
                RawEvent.chain_id == self.chain_id, RawEvent.block_number > ancestor
            )
        )
        s.execute(
            delete(IndexedBlock).where(
                IndexedBlock.chain_id == self.chain_id, IndexedBlock.number > ancestor
            )
        )
        rebuild(s, self.chain_id, gone)


# ---------------------------------------------------------------- canonical dump

#: Tables whose content a fresh index of the same chain must reproduce exactly.
DUMPED: tuple[type[Base], ...] = (IndexedBlock, RawEvent, *DERIVED_TABLES)

#: Cursor columns that depend only on the chain (not on when or how often it was indexed).
_CURSOR_COLUMNS = (
    "chain_id",
    "deployment",
    "start_block",
    "block",
    "block_hash",
    "head",
    "confirmations",
    "confirmed_block",
)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.name
    return value


def dump(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """The index in a canonical form (rows by primary key, plain values; the cursor without
    its wall-clock and reorg counter). Two indexes of the same chain at the same head dump
    equal."""
    out: dict[str, list[dict[str, Any]]] = {}
    with Session(engine) as s:
        out["indexer_cursors"] = [
            {c: getattr(cur, c) for c in _CURSOR_COLUMNS}
            for cur in s.scalars(select(IndexerCursor).order_by(IndexerCursor.chain_id))
        ]
        for table in DUMPED:
            mapper = inspect(table)
            pk = list(mapper.primary_key)
            out[cast(str, table.__tablename__)] = [
                {a.key: _plain(getattr(obj, a.key)) for a in mapper.column_attrs}
                for obj in s.scalars(select(table).order_by(*pk))
            ]
    return out


def measure(indexer: Indexer) -> tuple[int, float]:
    """Index to the head from where the cursor is; returns (events indexed, seconds)."""
    before = indexer.events_indexed
    t0 = time.perf_counter()
    indexer.sync()
    return indexer.events_indexed - before, time.perf_counter() - t0
