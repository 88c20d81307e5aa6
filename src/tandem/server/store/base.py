"""The metadata store's contract: records, errors and the operations every backend provides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class StoreError(Exception):
    """A refused request, carrying the HTTP status and a stable machine-readable code.

    `detail` adds what a client needs to re-plan (the current revision, the clashing node, the
    missing chunks); `op_index` names the failing operation of a batch.
    """

    def __init__(self, status: int, code: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail


#: Seconds a client is told to wait (Retry-After) when the account's storage lock is busy.
BUSY_RETRY_AFTER = 5


def busy() -> StoreError:
    """An upload or collection waited its bound for the account's storage lock (a collection
    or uploads held it): refused, so no request hangs; the client retries."""
    return StoreError(503, "busy", "this account's storage is busy (garbage collection or"
                      f" uploads): try again in {BUSY_RETRY_AFTER} s", retry_after=BUSY_RETRY_AFTER)


def not_found(what: str = "node") -> StoreError:
    # Another account's id answers exactly like a missing one (DESIGN.md promise 8).
    return StoreError(404, "not_found", f"{what} not found")


@dataclass
class Account:
    id: int
    email: str
    salt: bytes
    kdf: str
    auth_hash: bytes
    wrapped_key: bytes
    recovery_wrapped_key: bytes
    quota_bytes: int | None
    used_bytes: int
    cursor: int


@dataclass
class Device:
    id: str
    account_id: int
    name: str
    created_at: int
    last_seen_at: int
    revoked_at: int | None


@dataclass
class Node:
    """One file or folder as the server holds it: the name is ciphertext, never plaintext."""

    id: str
    parent_id: str | None
    name: bytes | None
    kind: str
    state: str
    size: int
    mtime_ns: int
    rev: int
    version: int | None
    manifest: list[tuple[str, int]] | None = None
    trash_root: str | None = None
    trashed_at: int | None = None


@dataclass
class Version:
    number: int
    size: int
    mtime_ns: int
    created_at: int
    device_id: str | None
    manifest: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Snapshot:
    """One backup run: `document` is the manifest of its encrypted tree document; the server
    also keeps the ids of every chunk it references (not returned) so GC keeps them."""

    id: str
    backup_id: str
    device_id: str | None
    taken_at_ns: int
    created_at: int
    size: int
    files: int
    document: list[tuple[str, int]] = field(default_factory=list)
    #: The backup's source folder sealed by the client (opaque here); None from older clients.
    label: bytes | None = None


@dataclass
class BackupSummary:
    """One backup of an account as a new device finds it: which device made it (its newest
    snapshot's), how many snapshots and the newest, and the newest label one carries."""

    id: str
    device_id: str | None
    device_name: str | None
    snapshots: int
    newest_taken_at_ns: int
    newest_snapshot_id: str
    label: bytes | None = None


@dataclass(frozen=True)
class ChunkLocation:
    """Where a chunk's ciphertext is: `size` bytes at `offset` in pack `pack`, or, for a chunk
    recorded before packs (`pack` None), the whole blob stored under its own id."""

    pack: str | None
    offset: int
    size: int


@dataclass
class Collected:
    """What one garbage collection dropped: chunk records, and the blobs to delete now (chunks
    stored under their own id, packs no live chunk points to any more)."""

    chunks: list[str] = field(default_factory=list)
    own_blobs: list[str] = field(default_factory=list)
    packs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PackedChunk:
    """A live chunk inside a pack, as GC's repacking sees it."""

    pack: str
    chunk_id: str
    offset: int
    size: int


@dataclass(frozen=True)
class Retention:
    """How long history is kept: versions (age or count), trash, and unreferenced chunks."""

    version_days: int = 30
    version_count: int = 100
    trash_days: int = 30
    #: An uploaded chunk no commit references yet is kept this long, so an upload in flight
    #: is never collected before its commit arrives.
    chunk_grace_seconds: int = 3600


class MetadataStore(Protocol):
    """Everything the API needs from metadata storage. Implementations must be thread-safe:
    the API calls them from a thread pool."""

    # accounts and devices
    def create_account(self, email: str, salt: bytes, kdf: str, auth_hash: bytes,
                       wrapped_key: bytes, recovery_wrapped_key: bytes, now: int) -> int: ...
    def account_by_email(self, email: str) -> Account | None: ...
    def account(self, account_id: int) -> Account: ...
    def add_device(self, account_id: int, device_id: str, name: str, token_hash: bytes,
                   now: int) -> None: ...
    def device_for_token(self, token_hash: bytes) -> Device | None: ...
    def devices(self, account_id: int) -> list[Device]: ...
    def revoke_device(self, account_id: int, device_id: str, now: int) -> None: ...

    # the tree and its journal
    def list_tree(self, account_id: int, after_id: str, limit: int) -> tuple[list[Node], int]: ...
    def node(self, account_id: int, node_id: str) -> Node: ...
    def apply_batch(self, account_id: int, device_id: str, ops: list[dict[str, Any]],
                    now: int) -> tuple[list[dict[str, Any]], int]: ...
    def changes(self, account_id: int, cursor: int, limit: int) -> tuple[list[Node], int, bool]: ...
    def cursor(self, account_id: int) -> int: ...

    # history
    def versions(self, account_id: int, node_id: str) -> list[Version]: ...
    def restore_version(self, account_id: int, device_id: str, node_id: str, number: int,
                        if_rev: int | None, now: int) -> Node: ...
    def trash(self, account_id: int) -> list[Node]: ...
    def restore_trash(self, account_id: int, node_id: str, parent_id: str | None,
                      name: bytes | None, now: int) -> list[Node]: ...
    def empty_trash(self, account_id: int, node_id: str | None, now: int) -> int: ...

    # chunks
    def missing_chunks(self, account_id: int, chunk_ids: list[str]) -> list[str]: ...
    def record_chunks(self, account_id: int, chunks: list[tuple[str, int]], now: int) -> int: ...
    def reserve_space(self, account_id: int, size: int) -> None: ...
    def chunk_size(self, account_id: int, chunk_id: str) -> int | None: ...
    def record_pack(self, account_id: int, pack_id: str, pack_size: int,
                    chunks: list[tuple[str, int, int]], now: int) -> int: ...
    def chunk_locations(self, account_id: int, chunk_ids: list[str]) -> dict[str, ChunkLocation]: ...
    def collect_garbage(self, account_id: int, now: int) -> Collected: ...
    def sparse_packs(self, account_id: int) -> list[str]: ...
    def packed_chunks(self, account_id: int, pack_ids: list[str]) -> list[PackedChunk]: ...
    def move_chunks(self, account_id: int, new_pack: str, new_size: int,
                    moves: list[tuple[PackedChunk, int]], now: int) -> bool: ...
    def unreferenced_blobs(self, account_id: int, chunk_ids: list[str],
                           pack_ids: list[str]) -> tuple[list[str], list[str]]: ...
    def account_ids(self) -> list[int]: ...

    # backups
    def create_snapshot(self, account_id: int, device_id: str, snapshot: Snapshot,
                        chunk_ids: list[str]) -> Snapshot: ...
    def snapshots(self, account_id: int, backup_id: str) -> list[Snapshot]: ...
    def backups(self, account_id: int) -> list[BackupSummary]: ...
    def snapshot(self, account_id: int, snapshot_id: str) -> Snapshot: ...
    def delete_snapshot(self, account_id: int, snapshot_id: str) -> None: ...

    def close(self) -> None: ...
