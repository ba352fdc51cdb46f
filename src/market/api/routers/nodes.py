"""Nodes: stake, models served and their prices, jobs served, earnings, slashes."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, HTTPException, Path, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from market.api.deps import SessionDep
from market.api.schemas import (
    ADDRESS_PATTERN,
    HASH_PATTERN,
    NodeModelOut,
    NodeOut,
    NodePage,
    error_responses,
)
from market.db.models import Node, NodeModel

router = APIRouter(prefix="/nodes", tags=["nodes"])

NodeAddress = Annotated[str, Path(pattern=ADDRESS_PATTERN, description="the node's address")]


def node_out(node: Node, models: list[NodeModel]) -> NodeOut:
    return NodeOut(
        address=node.address,
        registered=node.registered,
        stake=str(node.stake),
        locked=str(node.locked),
        unbonding=str(node.unbonding),
        unbonding_ready_at=node.unbonding_ready_at,
        jobs_claimed=node.jobs_claimed,
        jobs_served=node.jobs_served,
        earnings=str(node.earnings),
        slashes=node.slashes,
        slashed_total=str(node.slashed_total),
        registered_block=node.registered_block,
        registered_at=node.registered_at,
        models=[NodeModelOut(model_id=m.model_id, price=str(m.price)) for m in models],
    )


def _models_of(session: Session, addresses: list[str]) -> dict[str, list[NodeModel]]:
    by_node: dict[str, list[NodeModel]] = defaultdict(list)
    if addresses:
        rows = session.scalars(
            select(NodeModel)
            .where(NodeModel.node.in_(addresses))
            .order_by(NodeModel.node, NodeModel.model_id)
        )
        for m in rows:
            by_node[m.node].append(m)
    return by_node


@router.get("", response_model=NodePage)
def list_nodes(
    session: SessionDep,
    model: Annotated[
        str | None, Query(pattern=HASH_PATTERN, description="only nodes serving this model")
    ] = None,
    registered: Annotated[bool | None, Query(description="only (un)registered nodes")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> NodePage:
    """Nodes, by address."""
    q = select(Node)
    if model is not None:
        q = q.where(
            Node.address.in_(select(NodeModel.node).where(NodeModel.model_id == model.lower()))
        )
    if registered is not None:
        q = q.where(Node.registered == registered)
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    nodes = list(session.scalars(q.order_by(Node.address).offset(offset).limit(limit)))
    models = _models_of(session, [n.address for n in nodes])
    return NodePage(items=[node_out(n, models[n.address]) for n in nodes], total=total)


@router.get("/{address}", response_model=NodeOut, responses=error_responses(404))
def get_node(address: NodeAddress, session: SessionDep) -> NodeOut:
    """One node."""
    node = session.get(Node, to_checksum_address(address))
    if node is None:
        raise HTTPException(404, f"no node {address} in the index")
    return node_out(node, _models_of(session, [node.address])[node.address])
