"""What a server process is told at start: where data lives, limits, retention."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tandem.server.store.base import Retention


@dataclass
class ServerConfig:
    data_dir: Path
    #: Metadata store URL; default: SQLite in the data folder.
    database_url: str | None = None
    #: Blob store URL; default: a folder of files in the data folder.
    blobs_url: str | None = None
    #: Quota for new accounts, in bytes of stored (encrypted, deduplicated) chunks. None: none.
    quota_bytes: int | None = None
    retention: Retention = field(default_factory=Retention)
    #: Seconds between background garbage collections (0: only when asked).
    gc_interval: float = 3600.0

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'meta.db').resolve()}"

    def resolved_blobs_url(self) -> str:
        return self.blobs_url or (self.data_dir / "blobs").resolve().as_uri()
