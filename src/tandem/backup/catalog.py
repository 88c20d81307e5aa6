"""Every device's backups as this device sees them, and the one a restore means.

Users back up so that they can lose the computer: a new device linked to the account must
find the lost one's backups. The server lists them (`GET /backups`) with each backup's folder
as a label the client sealed; snapshots from before labels carry none, so their folder is read
from the newest snapshot's document header instead. Reading another device's backup adds
nothing to this device's config: it is never run here as this device's own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tandem.backup import document
from tandem.backup.local import BackupError
from tandem.backup.overview import when
from tandem.client.api import ApiError
from tandem.client.transfer import Transfers
from tandem.core.crypto import DecryptionError
from tandem.core.encoding import b64decode

#: Candidates an error line names before it says how many more there are.
_NAMED = 6


@dataclass(frozen=True)
class AccountBackup:
    """One backup of the account: `folder` as the device that made it had it (None when
    neither its label nor its document could be read)."""

    id: str
    folder: str | None
    device_id: str | None
    device_name: str | None
    this_device: bool
    snapshots: int
    newest_taken_at_ns: int

    def describe(self, folder: bool = True) -> str:
        where = "this device" if self.this_device else (self.device_name or "a removed device")
        device = f", device {self.device_id[:8]}" if self.device_id else ""
        named = f"{self.folder or '(folder unknown)'} " if folder else ""
        return (f"{named}on {where} ({self.snapshots} snapshot(s),"
                f" newest {when(self.newest_taken_at_ns / 1e9)}{device})")


def account_backups(transfers: Transfers, this_device_id: str) -> list[AccountBackup]:
    """The account's backups with their folders opened: this device's first, then by device
    and folder."""
    found = [AccountBackup(raw["id"], _folder(transfers, raw), raw["device_id"],
                           raw["device_name"], raw["device_id"] == this_device_id,
                           raw["snapshots"], raw["newest_taken_at_ns"])
             for raw in transfers.api.backups()]
    return sorted(found, key=lambda b: (not b.this_device, b.device_name or "", b.folder or "",
                                        b.id))


def _folder(transfers: Transfers, raw: dict[str, Any]) -> str | None:
    if raw["label"] is not None:
        try:
            return transfers.keys.decrypt_label(raw["id"], b64decode(raw["label"]))
        except (DecryptionError, ValueError):
            pass  # a damaged or foreign label: the document still names the folder
    try:
        snapshot = transfers.api.snapshot(raw["newest_snapshot_id"])
        data = b"".join(transfers.iter_content([(c, int(s)) for c, s in snapshot["document"]]))
        source = document.decode(data)[0].get("source")
    except (DecryptionError, document.DocumentError):
        return None
    except ApiError as exc:
        if exc.code != "not_found":  # else pruned since the listing: nothing left to read
            raise
        return None
    return source if isinstance(source, str) else None


def spellings(folder: Path) -> set[str]:
    """The folder paths DIR may mean: as typed (another device's path need not exist here)
    and resolved on this device (its own backups are recorded resolved)."""
    return {os.path.normpath(folder), str(folder.expanduser().resolve())}


def find(backups: list[AccountBackup], folder: Path, device: str | None, wanted: str | None,
         snapshot_ids: Callable[[str], list[str]]) -> AccountBackup:
    """The backup `restore DIR [--device NAME] [--snapshot ID]` means: among the backups of
    DIR (on that device), those holding the snapshot asked for; this device's if it has one,
    else the only one. Anything else is refused with the candidates."""
    devices = None if device is None else _devices(backups, device)
    if devices == set():
        names = sorted({b.device_name or b.device_id or "?" for b in backups})
        raise BackupError(f"no device called {device!r} has backups"
                          + (f" (devices with backups: {', '.join(names)})" if names else ""))
    paths = spellings(folder)
    matching = [b for b in backups if b.folder in paths and (devices is None or b.device_id in devices)]
    on = f" on {device}" if device is not None else ""
    if not matching:
        raise BackupError(f"no backup of {folder}{on}: " + (_named(backups) if backups else
                          "this account has no backup with a snapshot"))
    if wanted is not None and wanted != "latest":
        prefix = wanted.lower()
        matching = [b for b in matching
                    if prefix and any(s.startswith(prefix) for s in snapshot_ids(b.id))]
        if not matching:
            raise BackupError(f"{wanted!r} is not a snapshot of a backup of {folder}{on}: see"
                              " `tandem backup list --all-devices`")
    if len(matching) > 1:
        mine = [b for b in matching if b.this_device]
        if len(mine) == 1:
            return mine[0]
        raise BackupError(f"{folder} has {len(matching)} backups: {_named(matching, False)}; choose"
                          " one with --device NAME or --snapshot ID")
    return matching[0]


def _devices(backups: list[AccountBackup], name: str) -> set[str | None]:
    """The devices --device NAME means: those called NAME, else those whose id starts with it
    (as `tandem devices revoke` reads a name)."""
    called = {b.device_id for b in backups if b.device_name == name}
    return called or {b.device_id for b in backups
                      if name and b.device_id and b.device_id.startswith(name.lower())}


def _named(backups: list[AccountBackup], folders: bool = True) -> str:
    more = len(backups) - _NAMED
    return "; ".join(b.describe(folders) for b in backups[:_NAMED]) + (f"; and {more} more"
                                                                      if more > 0 else "")
