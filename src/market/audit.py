"""Audit a job from public data alone: the chain, content-addressed blobs and the model's
registered artefacts. Nothing comes from the node that did the job.

Checks, each with a reason in the verdict:
1. the job exists and what state it is in;
2. the model's local artefacts are exactly the registered ones (the model id recomputed
   from the artefact files equals the id on chain);
3. the input bytes (inline in the submit event, or fetched by URI) hash to the input hash;
4. the committed output bytes (inline, or fetched by URI) hash to the result hash;
5. re-running the model on the input gives the same canonical output and result hash;
6. for zk jobs, the proofs the chain accepted, and the boundary hashes re-derived with the
   prover: the first must be the Poseidon hash of the input, the last of the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from market.canonical import keccak
from market.chain.events import Event, LogReader
from market.chain.market import Market
from market.chain.types import ZERO_ADDRESS, VerificationMode


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not applicable / could not be checked
    detail: str


@dataclass
class Verdict:
    job_id: int
    status: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks) and any(c.ok for c in self.checks)

    def add(self, name: str, ok: bool | None, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))


def _fetch(uri: str, limit: int = 16 << 20) -> bytes:
    if not uri.startswith(("http://", "https://")):
        raise ValueError(f"cannot fetch {uri!r}: only http(s) blob URIs are supported")
    r = httpx.get(uri, timeout=20)
    r.raise_for_status()
    if len(r.content) > limit:
        raise ValueError(f"{uri} is larger than {limit} bytes")
    return r.content


def _events_of(market: Market, job_id: int) -> dict[str, list[Event]]:
    d = market.deployment
    contracts = {"JobMarket": d.job_market}
    if d.zk_verification != ZERO_ADDRESS:
        contracts["ZkVerification"] = d.zk_verification
    reader = LogReader(market.client, contracts)
    out: dict[str, list[Event]] = {}
    for ev in reader.fetch(d.start_block, market.client.block_number()):
        if int(ev.args.get("jobId", -1)) == job_id:
            out.setdefault(ev.name, []).append(ev)
    return out


def audit_job(market: Market, job_id: int, artifacts: Path) -> Verdict:
    from worker.models import MODEL_NAMES, load_model

    if not 1 <= job_id <= market.job_count():
        v = Verdict(job_id, "none")
        v.add("job exists", False, f"no job {job_id} on this deployment")
        return v
    job = market.job(job_id)
    v = Verdict(job_id, job.status.name.lower())
    events = _events_of(market, job_id)
    v.add("job exists", True, f"state {v.status}, model 0x{job.model_id.hex()}")

    # 2. the model: local artefacts that hash to the registered id
    model = None
    for name in MODEL_NAMES:
        try:
            candidate = load_model(artifacts, name)
        except Exception:  # noqa: BLE001 - not built here, or corrupt: try the others
            continue
        if candidate.manifest.model_id_bytes == job.model_id:
            model = candidate
            break
    if model is None:
        v.add(
            "model artefacts",
            False,
            "no local artefacts hash to this model id: fetch the registered artefacts "
            "(`verimarket models build` builds the reference models)",
        )
        return v
    v.add(
        "model artefacts",
        True,
        f"{model.manifest.name}: artefact files re-hashed to the registered model id",
    )

    # 3. the input
    submitted = events.get("JobSubmitted", [])
    if not submitted:
        v.add("input", False, "no JobSubmitted event for this job")
        return v
    a = submitted[0].args
    data = bytes(a["input"])
    if not data:
        try:
            data = _fetch(str(a["inputURI"]))
        except (httpx.HTTPError, ValueError) as exc:
            v.add("input", False, f"input not retrievable: {exc}")
            return v
    if keccak(data) != job.input_hash:
        v.add("input", False, "the input bytes do not hash to the job's input hash")
        return v
    v.add("input", True, f"{len(data)} bytes hash to the input hash")

    # 4. the committed output
    committed = events.get("ResultCommitted", [])
    if not committed:
        v.add("result", None, f"no result committed (job is {v.status})")
        return v
    c = committed[0].args
    out = bytes(c["output"])
    if not out and c["outputURI"]:
        try:
            out = _fetch(str(c["outputURI"]))
        except (httpx.HTTPError, ValueError) as exc:
            v.add("output", False, f"output not retrievable: {exc}")
    if out:
        v.add(
            "output",
            keccak(out) == job.result_hash,
            "output bytes hash to the result hash"
            if keccak(out) == job.result_hash
            else "output bytes do NOT hash to the committed result hash",
        )

    # 5. re-execution (optimistic jobs: the canonical output is the float64 torch output)
    if job.mode == VerificationMode.NONE:
        expected = model.run_inputs([data])[0]
        same = keccak(expected) == job.result_hash
        v.add(
            "re-execution",
            same,
            "re-running the model gives the committed result hash"
            if same
            else f"re-running the model gives 0x{keccak(expected).hex()}, "
            f"not the committed 0x{job.result_hash.hex()}",
        )
    else:
        _audit_zk(v, events, model, data, artifacts / model.manifest.name)
    return v


def _audit_zk(
    v: Verdict, events: dict[str, list[Event]], model: Any, data: bytes, model_dir: Path
) -> None:
    """zk jobs: the proofs the chain accepted, and the boundary hashes re-derived."""
    proven = sorted(int(e.args["segment"]) for e in events.get("SegmentProven", []))
    v.add(
        "proofs",
        bool(proven) or None,
        f"segments proven on chain: {proven}" if proven else "no segment proven yet",
    )
    committed = events.get("BoundaryHashesCommitted", [])
    if not committed:
        v.add("boundary hashes", None, "no boundary hashes committed")
        return
    hashes = [int(h) for h in committed[0].args.get("boundaryHashes", [])]
    try:
        from prover import boundary_hashes

        decoded = model.decode_input(data).numpy()
        ours = boundary_hashes(model_dir, decoded)
    except Exception as exc:  # noqa: BLE001 - the prover may be unavailable here
        v.add("boundary hashes", None, f"not re-derived: {exc}")
        return
    v.add(
        "boundary hashes",
        ours == hashes,
        "re-derived boundary hashes equal the committed ones"
        if ours == hashes
        else "re-derived boundary hashes differ from the committed ones",
    )
