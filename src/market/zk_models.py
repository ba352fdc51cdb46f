"""zk variants of registered models: register one (verifiers deployed, artefacts stored as
blobs, their hashes pinned in ModelRegistry) and find one on chain from local circuits.

A model's zk variant is a separate ModelRegistry entry: the same artefacts hash, output scale
and segment (ONNX) hashes as the plain model, plus each segment's verifying-key hash and the
address of its ezkl verifier. Its model id therefore differs from the plain model's (the id
covers the segments), and jobs that ask for zk-spot / zk-full name that id.

The metadata URI of the variant points at a content-addressed blob, ``zk-artefacts.json``,
that lists every circuit artefact (ONNX, settings, compiled circuit, verifying key, verifier
source) by its sha256 blob name and keccak256 hash, so that an auditor can fetch them from the
blob store and check them against the chain (the vk hash is on chain; the rest is pinned by
the index blob, whose own hash is in the URI). Proving keys are not published: they are
large (16-67 MB for the digits MLP) and anyone can re-derive them from the same circuit
and SRS.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eth_utils.crypto import keccak

from market.blobs import BlobStore
from market.chain.events import LogReader, topic_of
from market.chain.market import Market
from market.chain.types import ZERO_ADDRESS, Segment
from market.errors import ChainError

if TYPE_CHECKING:
    from prover import ModelCircuits
    from worker.models.manifest import ModelManifest

#: EIP-170: the largest runtime code a real chain accepts.
CODE_SIZE_LIMIT = 24_576
ARTEFACTS = ("onnx_path", "settings_path", "compiled_path", "vk_path", "sol_path")


@dataclass(frozen=True)
class ZkModel:
    """A zk variant on chain: its id and each segment's verifier."""

    model_id: bytes
    verifiers: tuple[str, ...]
    metadata_uri: str = ""


def _segments(circuits: ModelCircuits, verifiers: Sequence[str]) -> list[Segment]:
    return [
        Segment(bytes.fromhex(seg.source_hash[2:]), bytes.fromhex(seg.vk_hash[2:]), address)
        for seg, address in zip(circuits.segments, verifiers, strict=True)
    ]


def publish_artefacts(circuits: ModelCircuits, blobs: BlobStore, base_url: str) -> str:
    """Store every circuit artefact as a blob, then an index of them; returns its URI."""
    index: dict[str, Any] = {"format": "verimarket-zk-artefacts/1", "segments": []}
    for seg in circuits.segments:
        entry: dict[str, Any] = {"name": seg.name, "vk_hash": seg.vk_hash, "logrows": seg.logrows}
        for attr in ARTEFACTS:
            data = getattr(seg, attr).read_bytes()
            entry[attr.removesuffix("_path")] = {
                "blob": blobs.put(data),
                "keccak256": "0x" + keccak(data).hex(),
                "bytes": len(data),
            }
        index["segments"].append(entry)
    name = blobs.put(json.dumps(index, indent=1, sort_keys=True).encode())
    return base_url + name


def deploy_verifiers(market: Market, circuits: ModelCircuits) -> list[str]:
    """Deploy each segment's verifier; refuse any whose deployed code is over EIP-170."""
    out = []
    for seg in circuits.segments:
        receipt: Any = market.client.send(data=seg.verifier().bytecode)
        address = str(receipt["contractAddress"])
        size = len(market.client.w3.eth.get_code(address))  # type: ignore[arg-type]
        if not 0 < size <= CODE_SIZE_LIMIT:
            raise ChainError(
                f"verifier of {seg.name} has {size} bytes of code (limit {CODE_SIZE_LIMIT})"
            )
        out.append(address)
    return out


def register_zk_model(
    market: Market,
    manifest: ModelManifest,
    circuits: ModelCircuits,
    *,
    blobs: BlobStore | None = None,
    base_url: str = "",
) -> ZkModel:
    """Deploy the verifiers and register the zk variant of ``manifest``'s model."""
    plain = [s.segment_hash for s in manifest.segments]
    built = [s.source_hash for s in circuits.segments]
    if plain != built:
        raise ChainError(f"the circuits were not built from {manifest.name}'s segment files")
    verifiers = deploy_verifiers(market, circuits)
    uri = publish_artefacts(circuits, blobs, base_url) if blobs is not None else ""
    model_id = market.register_model(
        manifest.artifacts_hash_bytes,
        manifest.output_scale,
        uri or f"model://{manifest.name}#zk",
        _segments(circuits, verifiers),
    )
    return ZkModel(model_id, tuple(verifiers), uri)


def find_zk_models(
    market: Market, manifest: ModelManifest, circuits: ModelCircuits | None = None
) -> list[ZkModel]:
    """Every registered zk variant of ``manifest``'s model: same artefacts, output scale and
    segment files, a verifier for every segment, and (given ``circuits``) the verifying-key
    hashes of those circuits, so that whoever holds them can prove its jobs."""
    d = market.deployment
    reader = LogReader(
        market.client,
        {"ModelRegistry": d.model_registry},
        topics=[topic_of("ModelRegistry", "ModelRegistered")],
    )
    plain = [s.segment_hash for s in manifest.segments]
    vks = [s.vk_hash for s in circuits.segments] if circuits is not None else None
    found = []
    for ev in reader.fetch(d.start_block, market.client.block_number()):
        a = ev.args
        if (
            ev.name != "ModelRegistered"
            or bytes(a["artifactsHash"]) != manifest.artifacts_hash_bytes
            or int(a["outputScale"]) != manifest.output_scale
        ):
            continue
        model_id = bytes(a["modelId"])
        segs = market.client.call(market.models.functions.getSegments(model_id))
        hashes = ["0x" + bytes(s[0]).hex() for s in segs]
        have_vks = ["0x" + bytes(s[1]).hex() for s in segs]
        verifiers = tuple(str(s[2]) for s in segs)
        if hashes == plain and vks in (None, have_vks) and ZERO_ADDRESS not in verifiers:
            found.append(ZkModel(model_id, verifiers, str(a["metadataURI"])))
    return found
