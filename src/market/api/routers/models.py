"""Models: registration, segments with their artefact and verifying-key hashes, who serves
them at what price."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from market.api.deps import SessionDep
from market.api.schemas import (
    HASH_PATTERN,
    ModelNodeOut,
    ModelOut,
    ModelPage,
    SegmentOut,
    error_responses,
)
from market.db.models import Model, ModelSegment, NodeModel

router = APIRouter(prefix="/models", tags=["models"])

ModelId = Annotated[str, Path(pattern=HASH_PATTERN, description="the model id (0x-hex)")]


def _models_out(session: Session, models: list[Model]) -> list[ModelOut]:
    ids = [m.model_id for m in models]
    segments: dict[str, list[SegmentOut]] = defaultdict(list)
    nodes: dict[str, list[ModelNodeOut]] = defaultdict(list)
    if ids:
        for s in session.scalars(
            select(ModelSegment)
            .where(ModelSegment.model_id.in_(ids))
            .order_by(ModelSegment.model_id, ModelSegment.index)
        ):
            segments[s.model_id].append(
                SegmentOut(
                    index=s.index,
                    segment_hash=s.segment_hash,
                    vk_hash=s.vk_hash,
                    verifier=s.verifier,
                )
            )
        for n in session.scalars(
            select(NodeModel)
            .where(NodeModel.model_id.in_(ids))
            .order_by(NodeModel.model_id, NodeModel.price, NodeModel.node)
        ):
            nodes[n.model_id].append(ModelNodeOut(node=n.node, price=str(n.price)))
    return [
        ModelOut(
            model_id=m.model_id,
            owner=m.owner,
            artifacts_hash=m.artifacts_hash,
            output_scale=m.output_scale,
            segment_count=m.segment_count,
            metadata_uri=m.metadata_uri,
            registered_block=m.registered_block,
            registered_at=m.registered_at,
            segments=segments[m.model_id],
            nodes=nodes[m.model_id],
        )
        for m in models
    ]


@router.get("", response_model=ModelPage)
def list_models(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> ModelPage:
    """Registered models, oldest first."""
    total = session.scalar(select(func.count()).select_from(Model)) or 0
    rows = list(
        session.scalars(
            select(Model)
            .order_by(Model.registered_block, Model.model_id)
            .offset(offset)
            .limit(limit)
        )
    )
    return ModelPage(items=_models_out(session, rows), total=total)


@router.get("/{model_id}", response_model=ModelOut, responses=error_responses(404))
def get_model(model_id: ModelId, session: SessionDep) -> ModelOut:
    """One model with its segments (artefact hash, verifying-key hash, verifier)."""
    model = session.get(Model, model_id.lower())
    if model is None:
        raise HTTPException(404, f"no model {model_id} in the index")
    return _models_out(session, [model])[0]
