"""The tree: paged listing, one node, the atomic batch, and the long-polled change journal."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from tandem.core import wire
from tandem.core.crypto import b64decode
from tandem.server.deps import Services, current_device, now, services
from tandem.server.models import (
    BatchRequest,
    BatchResponse,
    ChangesResponse,
    CreateOp,
    MoveOp,
    NodeId,
    NodeModel,
    TreePage,
    UpdateOp,
    node_json,
)
from tandem.server.store.base import Device

router = APIRouter(tags=["tree"])


@router.get("/tree", response_model=TreePage)
def list_tree(
    after: Annotated[str, Query(max_length=64)] = "",
    limit: Annotated[int, Query(ge=1, le=wire.MAX_PAGE)] = 1000,
    device: Device = Depends(current_device),
    parts: Services = Depends(services),
) -> dict[str, Any]:
    """One page of the live tree ordered by id. Keep the first page's cursor, read every page,
    then follow `/changes` from that cursor: the result is a consistent tree."""
    nodes, cursor = parts.store.list_tree(device.account_id, after, limit)
    next_after = nodes[-1].id if len(nodes) == limit else None
    return {"nodes": [node_json(n) for n in nodes], "cursor": cursor, "next_after": next_after}


@router.get("/nodes/{node_id}", response_model=NodeModel)
def get_node(node_id: NodeId, device: Device = Depends(current_device),
             parts: Services = Depends(services)) -> dict[str, Any]:
    return node_json(parts.store.node(device.account_id, node_id))


def _op_dict(op: Any) -> dict[str, Any]:
    data: dict[str, Any] = op.model_dump()
    if isinstance(op, CreateOp | MoveOp):
        data["name"] = b64decode(op.name)
    if isinstance(op, CreateOp | UpdateOp):
        data["manifest"] = [tuple(entry) for entry in op.manifest or []]
    return data


@router.post("/tree/batch", response_model=BatchResponse)
def apply_batch(body: BatchRequest, device: Device = Depends(current_device),
                parts: Services = Depends(services)) -> dict[str, Any]:
    """Apply up to 10,000 operations in one transaction: all of them, or none and a 4xx
    naming the failing `op_index`. `update`, `move` and `delete` carry `if_rev`; a stale one
    is a 409 `rev_conflict` with the current revision."""
    ops = [_op_dict(op) for op in body.ops]
    results, cursor = parts.store.apply_batch(device.account_id, device.id, ops, now())
    return {"results": results, "cursor": cursor}


@router.get("/changes", response_model=ChangesResponse)
async def changes(
    cursor: Annotated[int, Query(ge=0, le=1 << 62)],
    wait: Annotated[float, Query(ge=0, le=wire.MAX_LONG_POLL_SECONDS)] = 0,
    limit: Annotated[int, Query(ge=1, le=wire.MAX_PAGE)] = 1000,
    device: Device = Depends(current_device),
    parts: Services = Depends(services),
) -> dict[str, Any]:
    """Nodes changed after `cursor`, oldest first (each in its latest state; deletions as
    `trashed` or `purged`). With `wait`, answers as soon as something changes, or after
    `wait` seconds with no changes. 410 when the cursor is too old: relist the tree."""
    async with parts.notifier.subscribe(device.account_id) as subscription:
        nodes, new_cursor, has_more = await run_in_threadpool(
            parts.store.changes, device.account_id, cursor, limit)
        if not nodes and wait > 0 and await subscription.wait(wait):
            nodes, new_cursor, has_more = await run_in_threadpool(
                parts.store.changes, device.account_id, cursor, limit)
    return {"changes": [node_json(n) for n in nodes], "cursor": new_cursor, "has_more": has_more}
