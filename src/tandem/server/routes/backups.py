"""Backup snapshots: upload-only copies of a device's folders, kept apart from the synced tree.

A client picks the backup id (random, per backed-up folder and device) and the snapshot id
(random, so a retried create is recognised). What a snapshot holds is an encrypted document
in the chunk store; the server sees its manifest and the chunk ids it references, nothing more.
Any device of the account lists every device's backups (`GET /backups`) and restores them:
a backup's folder travels as a label the client sealed, which the server only keeps.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field, StringConstraints

from tandem.core import crypto
from tandem.core.encoding import b64decode, b64encode
from tandem.server.deps import Services, current_device, now, services
from tandem.server.models import ChunkId, ChunkSize, Strict
from tandem.server.store.base import BackupSummary, Device, Snapshot

router = APIRouter(tags=["backups"])

RandomId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
#: A snapshot's document is chunked like a file: 100,000 chunks is about 100 GiB of document.
DocumentManifest = Annotated[list[tuple[ChunkId, ChunkSize]], Field(min_length=1, max_length=100_000)]
#: The JSON body cap (32 MiB) allows about 480,000 ids; this bound keeps validation cheap.
ReferencedIds = Annotated[list[ChunkId], Field(max_length=1_000_000)]
Count = Annotated[int, Field(ge=0, le=1 << 62)]
_LABEL_BYTES = (1 + crypto.NONCE_BYTES + crypto.TAG_BYTES,
                1 + crypto.NONCE_BYTES + crypto.MAX_LABEL_TEXT + crypto.TAG_BYTES)
#: Unpadded base64 of a sealed label (`AccountKeys.encrypt_label`); never 4n+1 characters.
Label = Annotated[str, StringConstraints(pattern=r"^(?:[A-Za-z0-9_-]{4})*[A-Za-z0-9_-]{2,4}$",
                                         min_length=(_LABEL_BYTES[0] * 4 + 2) // 3,
                                         max_length=(_LABEL_BYTES[1] * 4 + 2) // 3)]


class CreateSnapshotRequest(Strict):
    id: RandomId
    taken_at_ns: Annotated[int, Field(ge=0, le=1 << 62)]
    size: Count
    files: Count
    document: DocumentManifest
    chunks: ReferencedIds = Field(description="Every chunk id the snapshot's files reference")
    label: Label | None = Field(None, description="The backup's source folder, sealed by the"
                                " client (base64); what other devices list it by")


class SnapshotModel(BaseModel):
    id: str
    backup_id: str
    device_id: str | None
    taken_at_ns: int
    created_at: int
    size: int
    files: int
    document: list[tuple[str, int]]
    label: str | None

    @classmethod
    def of(cls, snapshot: Snapshot) -> SnapshotModel:
        label = b64encode(snapshot.label) if snapshot.label is not None else None
        return cls(**{**vars(snapshot), "label": label})


class SnapshotsResponse(BaseModel):
    snapshots: list[SnapshotModel]


class BackupModel(BaseModel):
    id: str
    device_id: str | None = Field(description="The device that took the newest snapshot")
    device_name: str | None
    snapshots: int
    newest_taken_at_ns: int
    newest_snapshot_id: str
    label: str | None = Field(description="The newest label a snapshot carries (base64, sealed"
                              " by the client); null if none does")

    @classmethod
    def of(cls, summary: BackupSummary) -> BackupModel:
        label = b64encode(summary.label) if summary.label is not None else None
        return cls(**{**vars(summary), "label": label})


class BackupsResponse(BaseModel):
    backups: list[BackupModel]


@router.post("/backups/{backup_id}/snapshots", response_model=SnapshotModel, status_code=201)
def create_snapshot(backup_id: RandomId, body: CreateSnapshotRequest,
                    device: Device = Depends(current_device),
                    parts: Services = Depends(services)) -> SnapshotModel:
    """Record a snapshot; every chunk it references must already be stored (409
    `missing_chunks` lists those that are not)."""
    snapshot = Snapshot(id=body.id, backup_id=backup_id, device_id=device.id,
                        taken_at_ns=body.taken_at_ns, created_at=now(), size=body.size,
                        files=body.files, document=list(body.document),
                        label=b64decode(body.label) if body.label is not None else None)
    stored = parts.store.create_snapshot(device.account_id, device.id, snapshot, body.chunks)
    return SnapshotModel.of(stored)


@router.get("/backups", response_model=BackupsResponse)
def list_backups(device: Device = Depends(current_device),
                 parts: Services = Depends(services)) -> BackupsResponse:
    """Every backup of the account, whichever device made it (by id): a new device finds a
    lost one's backups here."""
    return BackupsResponse(backups=[BackupModel.of(b) for b in parts.store.backups(device.account_id)])


@router.get("/backups/{backup_id}/snapshots", response_model=SnapshotsResponse)
def list_snapshots(backup_id: RandomId, device: Device = Depends(current_device),
                   parts: Services = Depends(services)) -> SnapshotsResponse:
    """A backup's snapshots, oldest first."""
    found = parts.store.snapshots(device.account_id, backup_id)
    return SnapshotsResponse(snapshots=[SnapshotModel.of(s) for s in found])


@router.get("/snapshots/{snapshot_id}", response_model=SnapshotModel)
def get_snapshot(snapshot_id: RandomId, device: Device = Depends(current_device),
                 parts: Services = Depends(services)) -> SnapshotModel:
    return SnapshotModel.of(parts.store.snapshot(device.account_id, snapshot_id))


@router.delete("/snapshots/{snapshot_id}", status_code=204)
def delete_snapshot(snapshot_id: RandomId, device: Device = Depends(current_device),
                    parts: Services = Depends(services)) -> Response:
    """Forget a snapshot (retention); chunks nothing else references go at the next GC."""
    parts.store.delete_snapshot(device.account_id, snapshot_id)
    return Response(status_code=204)
