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
   prover: the first must be the boundary hash of the input, the last of the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from market.canonical import keccak
from market.chain.events import Event, LogReader
from market.chain.market import Market
from market.chain.types import ZERO_ADDRESS, Segment, VerificationMode

if TYPE_CHECKING:
    from prover import ModelCircuits, ProverConfig


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


def audit_job(
    market: Market, job_id: int, artifacts: Path, prover_config: ProverConfig | None = None
) -> Verdict:
    """``prover_config`` (default ``ProverConfig.from_env()``) says where the circuits of zk
    models are built or cached, and with which SRS (it must be the one the model's
    verifying keys were made with: their hashes are checked against the chain)."""
    from worker.models import MODEL_NAMES, load_model

    if not 1 <= job_id <= market.job_count():
        v = Verdict(job_id, "none")
        v.add("job exists", False, f"no job {job_id} on this deployment")
        return v
    job = market.job(job_id)
    v = Verdict(job_id, job.status.name.lower())
    events = _events_of(market, job_id)
    v.add("job exists", True, f"state {v.status}, model 0x{job.model_id.hex()}")

    # 2. the model: local artefacts that hash to the registered id (for a zk variant: the
    #    plain artefacts plus the circuits built from them, whose vk hashes are registered)
    model = None
    circuits = None
    local = []
    for name in MODEL_NAMES:
        try:
            candidate = load_model(artifacts, name)
        except Exception:  # noqa: BLE001 - not built here, or corrupt: try the others
            continue
        local.append(candidate)
        if candidate.manifest.model_id_bytes == job.model_id:
            model = candidate
            break
    llm = None  # a generative model (worker.llm): re-executed by its engine
    if model is None and job.mode == VerificationMode.NONE:
        from worker.generative import local_llm_for

        llm = local_llm_for(artifacts, job.model_id)
    if model is None and llm is None and job.mode != VerificationMode.NONE:
        found = _zk_variant(market, job.model_id, local, artifacts, prover_config)
        if isinstance(found, str):
            v.add("model artefacts", False, found)
            return v
        model, circuits = found
    if model is None and llm is None:
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
        f"{llm.name if llm else model.manifest.name if model else '?'}: artefact files "
        "re-hashed to the registered model id",
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
    if llm is not None:  # generative: judged at the first differing token (docs/llm.md)
        from worker.generative import audit_generative_result

        if out:
            v.add("re-execution", *audit_generative_result(llm, data, out))
    elif model is None:
        v.add("re-execution", False, "no model to re-execute")
    elif job.mode == VerificationMode.NONE:
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
    elif circuits is None:
        v.add("zk circuits", False, "a zk job on a model with no verifiers registered")
    else:
        _audit_zk(v, market, job_id, events, model, data, circuits)
    return v


def _zk_variant(
    market: Market,
    model_id: bytes,
    local: list[Any],
    artifacts: Path,
    config: ProverConfig | None,
) -> tuple[Any, ModelCircuits] | str:
    """The local model and circuits whose artefacts, verifying keys and the registered
    verifiers recompute ``model_id``; else the reason there are none."""
    from prover import ProverConfig, ProverError, build_model

    info = market.client.call(market.models.functions.getModel(model_id))
    segs = market.client.call(market.models.functions.getSegments(model_id))
    artifacts_hash = bytes(info[3])  # IModelRegistry.Model.artifactsHash
    for model in local:
        man = model.manifest
        if man.artifacts_hash_bytes != artifacts_hash:
            continue
        if [s.segment_hash for s in man.segments] != ["0x" + bytes(s[0]).hex() for s in segs]:
            continue
        try:
            circuits = build_model(artifacts / man.name, config or ProverConfig.from_env())
        except ProverError as exc:
            return f"{man.name}: the circuits could not be built here: {exc}"
        ours = [
            Segment(bytes.fromhex(c.source_hash[2:]), bytes.fromhex(c.vk_hash[2:]), str(s[2]))
            for c, s in zip(circuits.segments, segs, strict=True)
        ]
        if market.compute_model_id(man.artifacts_hash_bytes, man.output_scale, ours) != model_id:
            return (
                f"{man.name}: the verifying keys of the circuits built here are not the "
                "registered ones (another SRS, circuit options or ezkl version)"
            )
        return model, circuits
    return "no local artefacts hash to this model id (nor to its zk variant)"


def _audit_zk(
    v: Verdict,
    market: Market,
    job_id: int,
    events: dict[str, list[Event]],
    model: Any,
    data: bytes,
    circuits: ModelCircuits,
) -> None:
    """zk jobs: re-run the circuits (boundary hashes and result), verify every proof the
    chain accepted against the committed hashes, and check the required ones are there."""
    from prover import ProverError, proof_on_boundaries, run_model, verify_segment
    from worker.zk import zk_output

    committed = events.get("BoundaryHashesCommitted", [])
    if not committed:
        v.add("boundary hashes", None, "no boundary hashes committed")
        return
    hashes = [int(h) for h in committed[0].args["boundaryHashes"]]
    try:
        run = run_model(circuits, model.decode_input(data).numpy())
    except ProverError as exc:
        v.add("re-execution", False, f"the circuits could not run the input: {exc}")
        return
    same = list(run.boundary_hashes) == hashes
    differ = [i for i, (a, b) in enumerate(zip(run.boundary_hashes, hashes, strict=True)) if a != b]
    v.add(
        "boundary hashes",
        same,
        "re-derived boundary hashes equal the committed ones"
        if same
        else f"re-derived boundary hashes differ from the committed ones at {differ}",
    )
    expected = keccak(zk_output(run, model.manifest.output_scale))
    job = market.job(job_id)
    v.add(
        "re-execution",
        expected == job.result_hash,
        "the circuits' output gives the committed result hash"
        if expected == job.result_hash
        else f"the circuits' output gives 0x{expected.hex()}, not the committed "
        f"0x{job.result_hash.hex()}",
    )

    proven = []
    for ev in events.get("SegmentProven", []):
        seg = int(ev.args["segment"])
        tx = market.client.w3.eth.get_transaction(ev.tx_hash)  # type: ignore[arg-type]
        _fn, args = market.zk.decode_function_input(tx["input"])
        try:
            proof = proof_on_boundaries(
                circuits.segments[seg], bytes(args["proof"]), hashes[seg], hashes[seg + 1]
            )
            verify_segment(
                circuits.segments[seg], proof, input_hash=hashes[seg], output_hash=hashes[seg + 1]
            )
        except ProverError as exc:
            v.add(f"proof of segment {seg}", False, f"does not verify here: {exc}")
            continue
        v.add(f"proof of segment {seg}", True, "verifies (ezkl) against the committed hashes")
        proven.append(seg)
    zk = market.zk_job(job_id)
    required = list(range(zk.segment_count)) if zk.full else zk.required_segments
    if job.status.name == "SLASHED":
        v.add("proofs", False, f"slashed: required segments {required} not proven in time")
    elif required and set(required) <= set(proven):
        v.add("proofs", True, f"every required segment {required} proven on chain")
    else:
        v.add("proofs", None, f"required {required or '(not drawn yet)'}, proven {proven}")
