"""Audit a pipelined job (PipelineJobs, docs/pipeline.md) from public data alone: the chain,
the content-addressed blob store and the model's registered artefacts.

Each segment is re-run from the blob the *previous segment committed* (not from the
auditor's own re-run), so a fault is pinned on the segment that made it:

1. the job exists, and its model is a registered zk variant of local artefacts whose
   circuits have the registered verifying keys;
2. the input (inline in the submit event, or its blob) hashes to the input hash, and its
   boundary hash is the job's ``inputBoundaryHash``;
3. for every committed segment: its blob can be fetched; the shadow in the blob it started
   from hashes to the boundary the previous segment committed (the link); re-running it
   from that blob gives exactly the committed blob hash and boundary hash;
4. the result: the last blob is the job's result hash (``PipelineCompleted``) and equals one
   node running the whole model;
5. every proof the chain accepted verifies here (ezkl) against the committed boundaries; a
   slashed segment fails the job, an open challenge is reported as pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from market.audit import Verdict, _zk_variant
from market.blobs import BlobStore
from market.canonical import keccak
from market.chain.events import Event, LogReader
from market.chain.market import Market
from market.chain.pipeline import Pipeline, PipelineStatus, SegmentStatus
from market.errors import ContractRevert

if TYPE_CHECKING:
    from prover import ProverConfig


@dataclass(frozen=True)
class _Local:
    manifest: Any


def _events_of(pipeline: Pipeline, job_id: int) -> dict[str, list[Event]]:
    d = pipeline.deployment
    reader = LogReader(pipeline.client, {"PipelineJobs": d.pipeline_jobs})
    out: dict[str, list[Event]] = {}
    for ev in reader.fetch(d.start_block, pipeline.client.block_number()):
        if int(ev.args.get("jobId", -1)) == job_id:
            out.setdefault(ev.name, []).append(ev)
    return out


def audit_pipeline_job(
    pipeline: Pipeline,
    job_id: int,
    artifacts: Path,
    blobs: BlobStore,
    blob_base_url: str = "",
    prover_config: ProverConfig | None = None,
) -> Verdict:
    """The verdict on pipelined job ``job_id``; blobs are read from ``blobs`` or, when not
    there, from ``blob_base_url`` (checked by hash either way)."""
    from worker.models import MODEL_NAMES, load_model
    from worker.models.manifest import ModelManifest
    from worker.pipeline import SegmentRunner
    from worker.pipeline_loop import BlobSource

    try:
        job = pipeline.job(job_id)
    except ContractRevert:  # UnknownJob
        job = None
    if job is None or job.status == PipelineStatus.NONE:
        v = Verdict(job_id, "none")
        v.add("job exists", False, f"no pipelined job {job_id} on this deployment")
        return v
    v = Verdict(job_id, job.status.name.lower())
    v.add(
        "job exists",
        True,
        f"pipelined, state {v.status}, {job.committed}/{job.segment_count} segments committed, "
        f"model 0x{job.model_id.hex()}",
    )
    events = _events_of(pipeline, job_id)

    # 1. the model and its circuits
    market = Market(pipeline.client, pipeline.deployment)
    local = []  # manifests only: the matching model alone is loaded (and its files checked)
    for name in MODEL_NAMES:
        try:
            local.append(_Local(ModelManifest.read(artifacts / name)))
        except Exception:  # noqa: BLE001 - not built here, or corrupt: try the others
            continue
    found = _zk_variant(market, job.model_id, local, artifacts, prover_config)
    if isinstance(found, str):
        v.add("model artefacts", False, found)
        return v
    circuits = found[1]
    try:
        model = load_model(artifacts, found[0].manifest.name, device="cpu")
    except Exception as exc:  # noqa: BLE001 - files that do not match their manifest
        v.add("model artefacts", False, f"{found[0].manifest.name}: {exc}")
        return v
    try:
        runner = SegmentRunner(artifacts / model.manifest.name, circuits, device="cpu")
    except Exception as exc:  # noqa: BLE001 - a model that cannot be split: say why
        v.add("model artefacts", False, f"{model.manifest.name} cannot be run by segment: {exc}")
        return v
    v.add(
        "model artefacts",
        True,
        f"{model.manifest.name}: artefacts and verifying keys re-derive the registered model id",
    )

    # 2. the input
    source = BlobSource(blobs, blob_base_url)
    submitted = events.get("PipelineJobSubmitted", [])
    data = bytes(submitted[0].args["input"]) if submitted else b""
    if not data:
        data = source.get("0x" + job.input_hash.hex()) or b""
    if not data or keccak(data) != job.input_hash:
        v.add("input", False, "the input (inline or blob) is missing or does not hash to it")
        return v
    try:
        boundary = runner.input_boundary_hash(data)
    except Exception as exc:  # noqa: BLE001 - a malformed input: the job is bad
        v.add("input", False, f"the input is not a valid input of the model: {exc}")
        return v
    v.add(
        "input",
        boundary == job.input_boundary_hash,
        f"{len(data)} bytes hash to the input hash; boundary hash "
        + ("matches" if boundary == job.input_boundary_hash else "does NOT match the job's"),
    )

    # 3. every committed segment, from the blob the previous one committed
    prev_data, prev_boundary = data, job.input_boundary_hash
    boundaries = [job.input_boundary_hash]
    statuses = []
    for i in range(job.committed):
        seg = pipeline.segment(job_id, i)
        statuses.append(seg.status)
        boundaries.append(seg.output_boundary_hash)
        name = "0x" + seg.output_hash.hex()
        blob = source.get(name)
        if blob is None:
            v.add(f"segment {i} blob", False, f"blob {name} not retrievable (or not its hash)")
        try:
            out = runner.run(i, prev_data)
        except Exception as exc:  # noqa: BLE001 - the input blob is malformed or forged
            v.add(f"segment {i} re-run", False, f"its committed input is refused: {exc}")
            break
        if i > 0:
            linked = out.input_boundary_hash == prev_boundary
            v.add(
                f"link {i - 1} -> {i}",
                linked,
                f"the shadow in segment {i - 1}'s blob hashes to its committed boundary"
                if linked
                else f"the shadow in segment {i - 1}'s blob hashes to "
                f"{out.input_boundary_hash}, not the committed {prev_boundary}",
            )
        same = out.output_hash == seg.output_hash
        same_b = out.output_boundary_hash == seg.output_boundary_hash
        v.add(
            f"segment {i} re-run",
            same and same_b,
            f"by {seg.node}: re-running it gives the committed blob and boundary hashes"
            if same and same_b
            else f"by {seg.node}: re-running it gives blob 0x{out.output_hash.hex()} / "
            f"boundary {out.output_boundary_hash}, committed {name} / {seg.output_boundary_hash}",
        )
        if blob is None:
            break
        prev_data, prev_boundary = blob, seg.output_boundary_hash

    # 4. the result
    completed = events.get("PipelineCompleted", [])
    unfinished = job.committed < job.segment_count
    if job.status == PipelineStatus.STALLED or (unfinished and job.status.name == "FINALIZED"):
        v.add("result", False, f"stalled: {job.committed}/{job.segment_count} segments committed")
    elif not completed:
        v.add("result", None, f"no result yet (job is {v.status})")
    else:
        result_hash = bytes(completed[0].args["resultHash"])
        last = pipeline.segment(job_id, job.segment_count - 1).output_hash
        expected = model.run_inputs([data])[0]
        ok = result_hash == last and keccak(expected) == result_hash
        v.add(
            "result",
            ok,
            "the last blob is the result and equals one node running the whole model"
            if ok
            else f"result 0x{result_hash.hex()}; one node running the model gives "
            f"0x{keccak(expected).hex()}",
        )

    # 5. proofs and challenges
    _audit_proofs(v, pipeline, events, circuits, boundaries, statuses)
    return v


def _audit_proofs(
    v: Verdict,
    pipeline: Pipeline,
    events: dict[str, list[Event]],
    circuits: Any,
    boundaries: list[int],
    statuses: list[SegmentStatus],
) -> None:
    from prover import ProverError, proof_on_boundaries, verify_segment

    for ev in events.get("SegmentProven", []):
        i = int(ev.args["index"])
        tx = pipeline.client.w3.eth.get_transaction(ev.tx_hash)  # type: ignore[arg-type]
        _fn, args = pipeline.contract.decode_function_input(tx["input"])
        try:
            proof = proof_on_boundaries(
                circuits.segments[i], bytes(args["proof"]), boundaries[i], boundaries[i + 1]
            )
            verify_segment(
                circuits.segments[i],
                proof,
                input_hash=boundaries[i],
                output_hash=boundaries[i + 1],
            )
        except ProverError as exc:
            v.add(f"proof of segment {i}", False, f"does not verify here: {exc}")
            continue
        v.add(f"proof of segment {i}", True, "verifies (ezkl) against the committed boundaries")
    for i, status in enumerate(statuses):
        if status == SegmentStatus.SLASHED:
            v.add(f"challenge of segment {i}", False, "slashed: no proof posted in time")
        elif status == SegmentStatus.CHALLENGED:
            v.add(f"challenge of segment {i}", None, "challenged: proof not posted yet")
