"""Notice chain reorganisations under a running service, and raise the alarm for deep ones.

A service (the node, the settlement service) acts on blocks: its transaction manager saw a
receipt in block ``n``, its poller read the events up to block ``n``. Each such block is
*observed* here with the hash the service saw (:meth:`ReorgMonitor.observe`), and
:meth:`ReorgMonitor.check` also records every block header it passes on its own. A check
compares what was recorded with the chain: when a recorded block's hash changed, the chain
reorganised; the highest recorded block still on the chain is the *common ancestor*, and
everything the service did above it must be looked at again (the caller re-checks its
transactions' receipts and re-reads its events from there).

Finality: a block is treated as final once ``confirmations`` (K) blocks are built on it.
A reorg of depth d replaces blocks with up to d - 1 blocks on top, so only a reorg
**deeper than K** can undo something treated as final. That is an incident, not routine:
it is logged at ERROR, counted, and written to the service's metrics file (Prometheus
text format, for node_exporter's textfile collector) for an operator's alerting to pick up.
Shallower reorgs are logged at WARNING and counted.

The depth is measured against the blocks this service recorded; blocks mined between two
checks that nobody observed are unknown, so a reorg reaching only into those may be
reported a few blocks deeper than it was (never shallower).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from hexbytes import HexBytes
from pydantic_settings import BaseSettings, SettingsConfigDict
from web3.exceptions import BlockNotFound

from market.chain.client import ChainClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reorg:
    """One detected reorganisation."""

    ancestor: int  # highest recorded block still on the chain: everything above it may differ
    depth: int  # recorded blocks replaced (from the highest one known down to the ancestor)
    deep: bool  # depth > confirmations: something treated as final was undone


@dataclass
class ReorgStats:
    reorgs: int = 0
    deep_reorgs: int = 0
    max_depth: int = 0
    last_depth: int = 0
    last_at: float = 0.0
    checks: int = 0


@dataclass
class ReorgMonitor:
    client: ChainClient
    service: str = "service"
    confirmations: int = 12
    keep: int = 256  # block hashes kept (must exceed the deepest reorg to measure)
    metrics_path: Path | None = None
    stats: ReorgStats = field(default_factory=ReorgStats)
    _hashes: dict[int, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _conflict: int | None = None  # lowest height observed with two different hashes

    def __post_init__(self) -> None:
        if self.confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        if self.keep <= self.confirmations:
            raise ValueError("keep must be larger than confirmations")
        self._write_metrics()

    # ------------------------------------------------------------------ public
    def observe(self, number: int, block_hash: bytes | str) -> None:
        """Record that the service acted on block ``number`` with hash ``block_hash``."""
        h = HexBytes(block_hash).to_0x_hex()
        with self._lock:
            known = self._hashes.setdefault(number, h)
            if known != h:  # the service saw another block at this height than recorded
                self._conflict = number if self._conflict is None else min(self._conflict, number)

    def check(self) -> Reorg | None:
        """Compare the recorded blocks with the chain; returns the reorg found, if any."""
        latest = self.client.rpc(partial(self.client.w3.eth.get_block, "latest"))
        head = int(latest["number"])
        with self._lock:
            self.stats.checks += 1
            known, conflict, self._conflict = dict(self._hashes), self._conflict, None
        reorg = self._compare(known, head, HexBytes(latest["hash"]).to_0x_hex(), conflict)
        with self._lock:
            if reorg is not None:
                for n in [n for n in self._hashes if n > reorg.ancestor]:
                    del self._hashes[n]
            self._record_up_to(head)
        if reorg is not None:
            self._report(reorg)
        return reorg

    # ------------------------------------------------------------------ internals
    def _chain_block(self, number: int) -> tuple[str, str] | None:
        """(hash, parent hash) of the chain's block ``number``, None above the head."""
        try:
            block = self.client.rpc(partial(self.client.w3.eth.get_block, number))
        except BlockNotFound:  # above the head of a chain that got shorter (or moving)
            return None
        if block is None:
            return None
        return HexBytes(block["hash"]).to_0x_hex(), HexBytes(block["parentHash"]).to_0x_hex()

    def _chain_hash(self, number: int) -> str | None:
        block = self._chain_block(number)
        return None if block is None else block[0]

    def _compare(
        self, known: dict[int, str], head: int, head_hash: str, conflict: int | None
    ) -> Reorg | None:
        if not known:
            return None

        def same(n: int) -> bool:
            return known[n] == (head_hash if n == head else self._chain_hash(n))

        heights = sorted(known, reverse=True)
        top = heights[0]
        if conflict is not None:  # above it, count only what the chain no longer has
            top = max((n for n in heights if n >= conflict and not same(n)), default=conflict)
        # a block observed with two hashes was replaced: look for the ancestor below it
        below = [n for n in heights if n <= head and (conflict is None or n < conflict)]
        # the highest recorded block at or below the head decides: if it is unchanged, so
        # is everything below it (each block commits to its parent's hash)
        if conflict is None and top <= head and same(top):
            return None
        ancestor = next((n for n in below if same(n)), None)
        if ancestor is None:  # deeper than every hash kept: assume the worst
            ancestor = min(heights[-1], conflict if conflict is not None else heights[-1]) - 1
        depth = top - ancestor
        return Reorg(ancestor=ancestor, depth=depth, deep=depth > self.confirmations)

    def _record_up_to(self, head: int) -> None:
        """Record headers from the highest recorded block (or head - K) to ``head``."""
        start = max(max(self._hashes, default=head - 1) + 1, head - self.confirmations)
        for n in range(start, head + 1):
            block = self._chain_block(n)
            if block is None:
                continue
            self._hashes[n] = block[0]
            below = self._hashes.get(n - 1)
            if below is not None and below != block[1]:
                # the new block does not follow the one recorded below it (recorded, or seen
                # by the service, before a reorg this check did not catch): next check will
                self._conflict = n - 1 if self._conflict is None else min(self._conflict, n - 1)
        for n in sorted(self._hashes)[: -self.keep or None]:
            del self._hashes[n]

    def _report(self, reorg: Reorg) -> None:
        s = self.stats
        s.reorgs += 1
        s.last_depth, s.last_at = reorg.depth, time.time()
        s.max_depth = max(s.max_depth, reorg.depth)
        if reorg.deep:
            s.deep_reorgs += 1
            log.error(
                "ALERT %s: chain reorg of %d blocks is deeper than the %d confirmations "
                "treated as final (common ancestor block %d): transactions and events "
                "above it are being re-checked; investigate the RPC endpoint and the chain",
                self.service,
                reorg.depth,
                self.confirmations,
                reorg.ancestor,
            )
        else:
            log.warning(
                "%s: chain reorg of %d blocks (common ancestor block %d); re-checking",
                self.service,
                reorg.depth,
                reorg.ancestor,
            )
        self._write_metrics()

    def _write_metrics(self) -> None:
        if self.metrics_path is None:
            return
        s, svc = self.stats, self.service
        text = (
            "# HELP verimarket_reorgs_total Chain reorganisations detected.\n"
            "# TYPE verimarket_reorgs_total counter\n"
            f'verimarket_reorgs_total{{service="{svc}"}} {s.reorgs}\n'
            "# HELP verimarket_deep_reorgs_total Reorganisations deeper than the "
            "confirmations treated as final (alert on any increase).\n"
            "# TYPE verimarket_deep_reorgs_total counter\n"
            f'verimarket_deep_reorgs_total{{service="{svc}"}} {s.deep_reorgs}\n'
            "# HELP verimarket_reorg_max_depth Deepest reorganisation seen, in blocks.\n"
            "# TYPE verimarket_reorg_max_depth gauge\n"
            f'verimarket_reorg_max_depth{{service="{svc}"}} {s.max_depth}\n'
            "# HELP verimarket_confirmations Blocks on top after which a block is final.\n"
            "# TYPE verimarket_confirmations gauge\n"
            f'verimarket_confirmations{{service="{svc}"}} {self.confirmations}\n'
        )
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.metrics_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.metrics_path)  # atomic: a scraper never reads half a file


class ReorgSettings(BaseSettings):
    """``VERIMARKET_CONFIRMATIONS`` (K) and ``VERIMARKET_REORG_CHECK_S`` (seconds between
    checks) for the services that run a monitor."""

    model_config = SettingsConfigDict(env_prefix="VERIMARKET_", extra="ignore")

    confirmations: int = 12
    reorg_check_s: float = 1.0


def service_monitor(client: ChainClient, service: str, data: Path) -> ReorgMonitor:
    """The monitor of a service, configured from the environment; its metrics file is
    ``<data>/metrics/<service>.prom``."""
    cfg = ReorgSettings()
    return ReorgMonitor(
        client,
        service,
        confirmations=cfg.confirmations,
        keep=max(256, 4 * cfg.confirmations),
        metrics_path=data / "metrics" / f"{service}.prom",
    )


def read_metrics(path: Path) -> dict[str, float]:
    """The values of a metrics file written by a monitor, by metric name (tests, status)."""
    out: dict[str, float] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name.split("{", 1)[0]] = float(value)
    return out
