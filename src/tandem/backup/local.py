"""What a device keeps about its backups, in TANDEM_HOME/backups: the configured folders
(`config.json`), and per backup its last run (`ID/state.json`), the scan of its last snapshot
(`ID/cache.json`, so an unchanged file is never read again) and a lock (one run at a time).

Every file is replaced atomically; a damaged cache is only a cache: it is dropped.
"""

from __future__ import annotations

import fcntl
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tandem.backup.retention import Policy
from tandem.client.errors import ClientError
from tandem.client.home import Home
from tandem.fileio import write_atomically
from tandem.sync.model import LocalEntry, LocalTree

if TYPE_CHECKING:  # (the wire format is not needed to read a backup's settings)
    from tandem.backup.document import Manifest


class BackupError(ClientError):
    """A backup command the user must correct (unknown folder, one already running...)."""


@dataclass
class Backup:
    """One backed-up folder of this device. A removed one is no longer run but its snapshots
    stay restorable (and `backup add` takes it up again)."""

    folder: str
    id: str = field(default_factory=lambda: secrets.token_hex(16))
    every: int | None = None
    keep: dict[str, int | None] = field(default_factory=lambda: Policy().as_dict())
    added_at: float = field(default_factory=time.time)
    removed: bool = False

    @property
    def policy(self) -> Policy:
        return Policy.from_dict(self.keep)


@dataclass
class LastRun:
    started: float | None = None
    finished: float | None = None
    snapshot: str | None = None
    problems: int = 0
    error: str | None = None


class BackupHome:
    def __init__(self, home: Home) -> None:
        self.root = home.backups_folder

    def _config_file(self) -> Path:
        return self.root / "config.json"

    def all(self) -> list[Backup]:
        try:
            data = json.loads(self._config_file().read_text())
            return [Backup(**raw) for raw in data["backups"]]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"{self._config_file()} is damaged: {exc}") from None

    def save_all(self, backups: list[Backup]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        document = {"backups": [asdict(b) for b in backups]}
        write_atomically(self._config_file(), json.dumps(document, indent=2).encode())

    def find(self, folder: Path) -> Backup | None:
        wanted = str(folder.expanduser().resolve())
        return next((b for b in self.all() if b.folder == wanted), None)

    def get(self, folder: Path) -> Backup:
        found = self.find(folder)
        if found is None:
            raise BackupError(f"{folder} is not backed up from this device: see `tandem backup"
                              " list` (`--all-devices` for every device's), or `tandem backup add DIR`")
        return found

    def _dir(self, backup_id: str) -> Path:
        path = self.root / backup_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def temp_dir(self, backup_id: str) -> Path:
        return self._dir(backup_id)

    # ---- last run -----------------------------------------------------------------------

    def last_run(self, backup_id: str) -> LastRun:
        try:
            return LastRun(**json.loads((self.root / backup_id / "state.json").read_text()))
        except (OSError, ValueError, TypeError):
            return LastRun()

    def save_last_run(self, backup_id: str, run: LastRun) -> None:
        write_atomically(self._dir(backup_id) / "state.json", json.dumps(asdict(run)).encode())

    # ---- scan cache ---------------------------------------------------------------------

    def load_cache(self, backup_id: str) -> tuple[LocalTree, dict[str, Manifest]]:
        """The last snapshot's scan (entries with inode and ctime) and the manifests of its
        contents; empty if missing or damaged (every file is then read again)."""
        try:
            data = json.loads((self.root / backup_id / "cache.json").read_text())
            tree = {row[0]: LocalEntry(*row[1:]) for row in data["entries"]}
            manifests = {content: tuple((c, s) for c, s in rows)
                         for content, rows in data["manifests"].items()}
            return tree, manifests
        except (OSError, ValueError, KeyError, TypeError):
            return {}, {}

    def save_cache(self, backup_id: str, tree: LocalTree, manifests: dict[str, Manifest]) -> None:
        entries: list[list[Any]] = [[path, *_fields(entry)] for path, entry in tree.items()]
        used = {e.content for e in tree.values() if e.content is not None}
        document = {"entries": entries,
                    "manifests": {c: m for c, m in manifests.items() if c in used}}
        write_atomically(self._dir(backup_id) / "cache.json",
                         json.dumps(document, separators=(",", ":")).encode())

    def drop_cache(self, backup_id: str) -> None:
        (self.root / backup_id / "cache.json").unlink(missing_ok=True)

    @contextmanager
    def locked(self, backup: Backup) -> Iterator[None]:
        """One run of a backup at a time (the daemon's schedule and `backup run`)."""
        with open(self._dir(backup.id) / "lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BackupError(f"a backup of {backup.folder} is already running") from None
            yield


def _fields(entry: LocalEntry) -> list[Any]:
    return [entry.kind, entry.size, entry.mtime_ns, entry.ctime_ns, entry.inode, entry.content,
            entry.disk_name, entry.hashed_at_ns]
