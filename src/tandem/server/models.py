"""The API's request and response shapes (they also make the OpenAPI document).

Bytes travel as unpadded URL-safe base64; chunk ids as hex; times as integers (seconds for
server events, nanoseconds for file mtimes). Every field has a bound, so a hostile request
is a 400, never a 500 or an unbounded allocation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tandem.core import wire
from tandem.core.chunking import MAX_CHUNK
from tandem.core.crypto import b64encode
from tandem.server.store.base import Device, Node, Version

NodeId = Annotated[str, StringConstraints(pattern=wire.NODE_ID_PATTERN)]
NewNodeId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
ChunkId = Annotated[str, StringConstraints(pattern=wire.CHUNK_ID_PATTERN)]
B64 = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]*$", max_length=4096)]
#: Unpadded base64 is never 1 more than a multiple of 4 characters long (that would not decode).
NameCiphertext = Annotated[str, StringConstraints(pattern=r"^(?:[A-Za-z0-9_-]{4})*[A-Za-z0-9_-]{2,4}$",
                                                  min_length=23,
                                                  max_length=(wire.MAX_NAME_CIPHERTEXT * 4 + 2) // 3)]
Size = Annotated[int, Field(ge=0, le=wire.MAX_FILE_SIZE)]
MtimeNs = Annotated[int, Field(ge=-(1 << 62), le=1 << 62)]
Rev = Annotated[int, Field(ge=0, le=1 << 62)]
ChunkSize = Annotated[int, Field(ge=1, le=MAX_CHUNK)]
Manifest = Annotated[list[tuple[ChunkId, ChunkSize]], Field(max_length=2_000_000)]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,189}$",
                                         max_length=254)]
DeviceName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KdfModel(Strict):
    alg: Literal["argon2id"]
    time_cost: Annotated[int, Field(ge=1, le=16)]
    memory_kib: Annotated[int, Field(ge=8, le=1024 * 1024)]
    parallelism: Annotated[int, Field(ge=1, le=16)]


class PreloginRequest(Strict):
    email: Email


class PreloginResponse(BaseModel):
    salt: str
    kdf: KdfModel


class SignupRequest(Strict):
    email: Email
    auth_secret: B64
    salt: B64
    kdf: KdfModel
    wrapped_key: B64
    recovery_wrapped_key: B64
    device_name: DeviceName


class LoginRequest(Strict):
    email: Email
    auth_secret: B64
    device_name: DeviceName


class SessionResponse(BaseModel):
    token: str
    device_id: str
    wrapped_key: str
    salt: str
    kdf: KdfModel


class DeviceModel(BaseModel):
    id: str
    name: str
    created_at: int
    last_seen_at: int
    revoked_at: int | None
    current: bool

    @classmethod
    def of(cls, device: Device, current_id: str) -> DeviceModel:
        return cls(id=device.id, name=device.name, created_at=device.created_at,
                   last_seen_at=device.last_seen_at, revoked_at=device.revoked_at,
                   current=device.id == current_id)


class DevicesResponse(BaseModel):
    devices: list[DeviceModel]


class AccountResponse(BaseModel):
    email: str
    used_bytes: int
    quota_bytes: int | None
    cursor: int


class NodeModel(BaseModel):
    id: str
    parent_id: str | None
    name: str | None
    kind: Literal["file", "folder"]
    state: Literal["live", "trashed", "purged"]
    size: int
    mtime_ns: int
    rev: int
    version: int | None
    manifest: list[tuple[str, int]] | None
    trashed_at: int | None = None


def node_json(node: Node) -> dict[str, Any]:
    """A node as JSON, built by hand: listings hold thousands and this is the hot path."""
    return {
        "id": node.id, "parent_id": node.parent_id,
        "name": b64encode(node.name) if node.name is not None else None,
        "kind": node.kind, "state": node.state, "size": node.size, "mtime_ns": node.mtime_ns,
        "rev": node.rev, "version": node.version,
        "manifest": node.manifest if node.state != "purged" else None,
        "trashed_at": node.trashed_at,
    }


class TreePage(BaseModel):
    nodes: list[NodeModel]
    cursor: int = Field(description="Follow with /changes from this cursor after the last page")
    next_after: str | None = Field(description="Pass as `after` for the next page; null at the end")


class ChangesResponse(BaseModel):
    changes: list[NodeModel]
    cursor: int
    has_more: bool


class CreateOp(Strict):
    op: Literal["create"]
    id: NewNodeId
    parent_id: NodeId
    name: NameCiphertext
    kind: Literal["file", "folder"]
    size: Size = 0
    mtime_ns: MtimeNs = 0
    manifest: Manifest | None = None


class UpdateOp(Strict):
    op: Literal["update"]
    id: NewNodeId
    if_rev: Rev
    size: Size
    mtime_ns: MtimeNs
    manifest: Manifest


class MoveOp(Strict):
    op: Literal["move"]
    id: NodeId
    if_rev: Rev
    parent_id: NodeId
    name: NameCiphertext


class DeleteOp(Strict):
    op: Literal["delete"]
    id: NodeId
    if_rev: Rev


Op = Annotated[CreateOp | UpdateOp | MoveOp | DeleteOp, Field(discriminator="op")]


class BatchRequest(Strict):
    ops: Annotated[list[Op], Field(min_length=1, max_length=wire.MAX_BATCH_OPS)]


class OpResult(BaseModel):
    id: str
    rev: int


class BatchResponse(BaseModel):
    results: list[OpResult]
    cursor: int


class VersionModel(BaseModel):
    number: int
    size: int
    mtime_ns: int
    created_at: int
    device_id: str | None
    manifest: list[tuple[str, int]]

    @classmethod
    def of(cls, version: Version) -> VersionModel:
        return cls(number=version.number, size=version.size, mtime_ns=version.mtime_ns,
                   created_at=version.created_at, device_id=version.device_id,
                   manifest=version.manifest)


class VersionsResponse(BaseModel):
    versions: list[VersionModel]


class RestoreVersionRequest(Strict):
    if_rev: Rev | None = None


class TrashResponse(BaseModel):
    nodes: list[NodeModel]


class RestoreTrashRequest(Strict):
    parent_id: NodeId | None = None
    name: NameCiphertext | None = None


class EmptyTrashRequest(Strict):
    id: NodeId | None = None


class PurgedResponse(BaseModel):
    purged: int


class ChunkIdsRequest(Strict):
    ids: Annotated[list[ChunkId], Field(max_length=wire.MAX_IDS_PER_QUERY)]


class MissingResponse(BaseModel):
    missing: list[str]


class StoredResponse(BaseModel):
    stored: int
    already_present: int


class CollectedResponse(BaseModel):
    collected: int
