"""Versions and trash: nothing a user deletes or overwrites is gone until retention says so."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Path
from starlette.concurrency import run_in_threadpool

from tandem.core.crypto import b64decode
from tandem.server.deps import Services, current_device, now, services
from tandem.server.models import (
    CollectedResponse,
    EmptyTrashRequest,
    NodeId,
    NodeModel,
    PurgedResponse,
    RestoreTrashRequest,
    RestoreVersionRequest,
    TrashResponse,
    VersionModel,
    VersionsResponse,
    node_json,
)
from tandem.server.packs import collect_account
from tandem.server.store.base import Device

router = APIRouter(tags=["history"])


@router.get("/nodes/{node_id}/versions", response_model=VersionsResponse)
def list_versions(node_id: NodeId, device: Device = Depends(current_device),
                  parts: Services = Depends(services)) -> VersionsResponse:
    """Kept revisions of a file, newest first (default: 30 days, at most 100)."""
    versions = parts.store.versions(device.account_id, node_id)
    return VersionsResponse(versions=[VersionModel.of(v) for v in versions])


@router.post("/nodes/{node_id}/versions/{number}/restore", response_model=NodeModel)
def restore_version(
    node_id: NodeId,
    number: int = Path(ge=1, le=1 << 62),
    body: RestoreVersionRequest = Body(default_factory=RestoreVersionRequest),
    device: Device = Depends(current_device),
    parts: Services = Depends(services),
) -> dict[str, Any]:
    """Make an old version current again, as a new version (the history keeps growing)."""
    node = parts.store.restore_version(device.account_id, device.id, node_id, number,
                                       body.if_rev, now())
    return node_json(node)


@router.get("/trash", response_model=TrashResponse)
def list_trash(device: Device = Depends(current_device),
               parts: Services = Depends(services)) -> dict[str, Any]:
    return {"nodes": [node_json(n) for n in parts.store.trash(device.account_id)]}


@router.post("/trash/{node_id}/restore", response_model=TrashResponse)
def restore_trash(node_id: NodeId,
                  body: RestoreTrashRequest = Body(default_factory=RestoreTrashRequest),
                  device: Device = Depends(current_device),
                  parts: Services = Depends(services)) -> dict[str, Any]:
    """Bring a deleted node (and what was deleted with it) back. If its folder is gone,
    give `parent_id` and the name encrypted for that folder."""
    name = b64decode(body.name) if body.name else None
    nodes = parts.store.restore_trash(device.account_id, node_id, body.parent_id, name, now())
    return {"nodes": [node_json(n) for n in nodes]}


@router.post("/trash/empty", response_model=PurgedResponse)
async def empty_trash(body: EmptyTrashRequest = Body(default_factory=EmptyTrashRequest),
                      device: Device = Depends(current_device),
                      parts: Services = Depends(services)) -> PurgedResponse:
    """Delete trashed nodes for good (all, or one with `id`); their chunks are then collected."""
    purged = await run_in_threadpool(parts.store.empty_trash, device.account_id, body.id, now())
    await run_in_threadpool(collect_account, parts, device.account_id)
    return PurgedResponse(purged=purged)


@router.post("/gc", response_model=CollectedResponse)
def collect(device: Device = Depends(current_device),
            parts: Services = Depends(services)) -> CollectedResponse:
    """Apply retention and collect this account's unreferenced chunks now."""
    return CollectedResponse(collected=collect_account(parts, device.account_id))
