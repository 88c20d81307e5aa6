"""Files on demand, on disk: writing, moving and removing placeholders, freeing a file's space
and bringing it back.

The order of every step keeps the promises through a crash at any point: a placeholder is
durable on disk before its record says it stands for a file (a missing placeholder would
read as "the user deleted the file"), the content of a file comes back complete before its
placeholder goes, and a file is removed for `free` only after its placeholder and record are
durable and only if it is still exactly the synced version. An interrupted free or offline
leaves both the file and its placeholder: `ondemand.overlay` then lets the real file win.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import replace
from pathlib import Path

from tandem.client.transfer import NEW_FILE_MODE, Transfers
from tandem.fileio import sync_folder, write_temp_file
from tandem.sync.localfs import FolderPaths, PreconditionFailed
from tandem.sync.model import LocalEntry, RemoteEntry, SyncedEntry, join, name_of, parent_of
from tandem.sync.ondemand import Overlay, unchanged
from tandem.sync.placeholder import HEADER, placeholder_name, render_placeholder
from tandem.sync.state import Placeholder, StateDB


class OnDemandError(Exception):
    """A free or offline that cannot be done for one path; nothing was changed for it."""


def placeholder_path(path: str) -> str:
    return join(parent_of(path), placeholder_name(name_of(path)))


class Placeholders:
    def __init__(self, paths: FolderPaths, state: StateDB, transfers: Transfers,
                 temp_dir: Path) -> None:
        self.paths = paths
        self.root = paths.root
        self.state = state
        self.transfers = transfers
        self.temp_dir = temp_dir

    # ---- what the executor does to online-only files --------------------------------------

    def place(self, path: str, remote: RemoteEntry, record: Placeholder | None) -> None:
        """Write the placeholder for `path`, or rewrite it where it is after a change in the
        cloud (a rewrite replaces it atomically, so it never disappears). A placeholder
        deleted here while the file changed in the cloud is written anew (edit beats delete)."""
        if record is not None and not os.path.lexists(self.root / record.placeholder):
            record = None
        if record is not None:
            self._check_unchanged(record)
            self._write_recorded(path, record.placeholder, remote)
            return
        target = placeholder_path(path)
        if os.path.lexists(self.root / target):
            raise OSError(errno.EEXIST, f"a file named {name_of(target)} is in the way of"
                          " the placeholder", str(self.root / target))
        self._write_new(path, target, remote)

    def move(self, path: str, to: str, remote: RemoteEntry, record: Placeholder) -> None:
        """The file moved in the cloud: its placeholder is renamed to match (the same inode,
        so a crash at any point leaves it recognisable by `ondemand.overlay`), then its text,
        which names the file, is rewritten as after a cloud edit."""
        self._check_unchanged(record)
        source, target = self.root / record.placeholder, placeholder_path(to)
        self.paths.check_inside(self.root / target)
        if os.path.lexists(self.root / target):
            raise PreconditionFailed(path)
        (self.root / target).parent.mkdir(parents=True, exist_ok=True)
        os.rename(source, self.root / target)
        sync_folder((self.root / target).parent)
        with self.state.transaction():
            self.state.forget_local([record.placeholder])
            self.state.move_synced(path, to, remote.rev)
            self.state.put_placeholder(to, replace(record, placeholder=target))
        self._write_recorded(to, target, remote)

    def delete(self, path: str, record: Placeholder) -> None:
        """The file was deleted in the cloud: its placeholder goes."""
        self._check_unchanged(record)
        (self.root / record.placeholder).unlink()
        with self.state.transaction():
            self.state.forget_local([record.placeholder])
            self.state.forget_synced([path])
            self.state.drop_placeholder(path)

    def apply(self, view: Overlay) -> list[str]:
        """Apply an overlay's fixups; returns the folders to scan again."""
        for path, record in view.moved.items():
            self.state.put_placeholder(path, record)
        for record in view.remove_files.values():
            disk = self.root / record.placeholder
            self.paths.check_inside(disk)
            if unchanged(_stat_entry(disk), record):
                disk.unlink(missing_ok=True)
        for path in view.dropped:
            self.state.drop_placeholder(path)
        for path, record in view.unsettled.items():
            self._settle(path, record)
        records = self.state.placeholders()
        for placeholder, path in view.materialize.items():
            record = records.get(path)
            source, target = self.root / placeholder, self.root / path
            self.paths.check_inside(source)
            self.paths.check_inside(target)
            now = _stat_entry(source)
            if record is None or now is None or now.kind != "file" or unchanged(now, record):
                continue  # gone, or as written after all (the scan was older than the record)
            if _reads_as_placeholder(source):
                # Its text edited or saved again: still a placeholder, never uploaded.
                self.state.put_placeholder(path, Placeholder(placeholder, now.inode, now.size,
                                                             now.mtime_ns))
                continue
            # Real bytes written over the placeholder: they become the file, under its name,
            # so the next plan uploads them as a new version.
            if not os.path.lexists(target):
                os.rename(source, target)
            self.state.drop_placeholder(path)
        return sorted({parent_of(r.placeholder) for r in view.remove_files.values()}
                      | {parent_of(p) for p in view.materialize}
                      | {parent_of(r.placeholder) for r in view.unsettled.values()})

    def _settle(self, path: str, record: Placeholder) -> None:
        """A placeholder whose writing was interrupted: kept if it is placeholder text and its
        file is not here (the cloud file stays online-only), removed if the real file is
        here, forgotten if anything else stands there."""
        disk = self.root / record.placeholder
        self.paths.check_inside(disk)
        now = _stat_entry(disk)
        if now is None or now.kind != "file" or not _reads_as_placeholder(disk):
            self.state.drop_placeholder(path)
        elif os.path.lexists(self.root / path):
            disk.unlink()
            self.state.drop_placeholder(path)
        else:
            self.state.put_placeholder(path, Placeholder(record.placeholder, now.inode, now.size,
                                                         now.mtime_ns))

    # ---- free and offline (the user's commands) -------------------------------------------

    def free(self, path: str, disk: Path, scanned: LocalEntry | None, base: SyncedEntry | None,
             remote: RemoteEntry | None) -> None:
        """Replace a synced file by its placeholder. Refused, with nothing changed, unless the
        file on disk is exactly the version the cloud holds."""
        if base is None or base.kind != "file" or remote is None or remote.kind != "file":
            raise OnDemandError("not a synced file")
        if "(conflicted copy, " in name_of(path):
            raise OnDemandError("a conflicted copy: keep or delete it first")
        self.paths.check_inside(disk)
        if not (scanned is not None and scanned.content == base.content == remote.content
                and _same_stat(disk, scanned)):
            raise OnDemandError("has changes not uploaded yet: sync first")
        target = placeholder_path(path)
        if os.path.lexists(self.root / target):
            raise OnDemandError(f"a file named {name_of(target)} is in the way")
        self._write_new(path, target, remote)
        if not _same_stat(disk, scanned):  # written to at the last moment: keep it, undo
            (self.root / target).unlink(missing_ok=True)
            with self.state.transaction():
                self.state.drop_placeholder(path)
                self.state.record_synced([(path, base)])
            raise OnDemandError("changed while being freed: sync first")
        disk.unlink()
        sync_folder(disk.parent)
        self.state.forget_local([path])

    def offline(self, path: str, record: Placeholder, remote: RemoteEntry | None) -> None:
        """Bring an online-only file's content back: downloaded and verified into a temp file,
        linked in under its name (never over anything), then the placeholder goes."""
        if remote is None or remote.kind != "file":
            raise OnDemandError("no longer in the cloud")
        self._check_unchanged(record)
        disk = self.root / path
        self.paths.check_inside(disk)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        temp = write_temp_file(self.temp_dir, b"", NEW_FILE_MODE)
        try:
            with open(temp, "wb") as handle:
                for piece in self.transfers.iter_content(list(remote.manifest)):
                    handle.write(piece)
                handle.flush()
                os.fsync(handle.fileno())
            os.utime(temp, ns=(remote.mtime_ns, remote.mtime_ns))
            self._check_unchanged(record)
            known_at = time.time_ns()
            try:
                os.link(temp, disk)  # fails if anything took the name meanwhile
            except FileExistsError:
                raise OnDemandError(f"a file named {name_of(path)} is in the way") from None
        finally:
            temp.unlink(missing_ok=True)
        sync_folder(disk.parent)
        st = os.lstat(disk)
        with self.state.transaction():
            self.state.drop_placeholder(path)
            self.state.record_synced([(path, SyncedEntry(remote.node_id, "file", remote.rev,
                                                         remote.content, st.st_ino, st.st_size,
                                                         st.st_mtime_ns))])
            self.state.put_local([(path, LocalEntry("file", st.st_size, st.st_mtime_ns,
                                                    st.st_ctime_ns, st.st_ino, remote.content,
                                                    None, known_at))])
        if unchanged(_stat_entry(self.root / record.placeholder), record):
            (self.root / record.placeholder).unlink()
            self.state.forget_local([record.placeholder])

    # ---- helpers --------------------------------------------------------------------------

    def _write_recorded(self, path: str, target: str, remote: RemoteEntry) -> None:
        """Write the placeholder, then record it and the file's synced entry (its inode)."""
        new = self._write(path, target, remote)
        with self.state.transaction():
            self.state.put_placeholder(path, new)
            self.state.record_synced([(path, SyncedEntry(remote.node_id, "file", remote.rev,
                                                         remote.content, new.inode, remote.size,
                                                         remote.mtime_ns))])

    def _write_new(self, path: str, target: str, remote: RemoteEntry) -> None:
        """A new placeholder, recorded as intended (stat unknown: inode 0) before it is
        written: a crash before it is recorded for real leaves a file `ondemand.overlay` still
        knows as a placeholder, so its text is never taken for a user's file. A write that
        fails before the placeholder exists (disk full, permission denied) forgets the
        intent, so the file does not read as online-only meanwhile."""
        self.state.put_placeholder(path, Placeholder(target, 0, 0, 0))
        try:
            self._write_recorded(path, target, remote)
        except OSError:
            if not os.path.lexists(self.root / target):
                self.state.drop_placeholder(path)
            raise

    def _check_unchanged(self, record: Placeholder) -> None:
        disk = self.root / record.placeholder
        self.paths.check_inside(disk)
        if not unchanged(_stat_entry(disk), record):
            raise PreconditionFailed(record.placeholder)

    def _write(self, path: str, target: str, remote: RemoteEntry) -> Placeholder:
        """The placeholder text for the file `path` at `target`, durably (file and folder
        entry) before any record points at it. The text names the file itself (a shortened
        placeholder name would not take `tandem offline`); its mtime is the file's, as a file
        manager should show it."""
        disk = self.root / target
        self.paths.check_inside(disk)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        text = render_placeholder(name_of(path), remote.size, remote.mtime_ns,
                                  os.fspath(self.root / path))
        temp = write_temp_file(self.temp_dir, text, NEW_FILE_MODE, remote.mtime_ns)
        try:
            fd = os.open(temp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            disk.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, disk)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        sync_folder(disk.parent)
        st = os.lstat(disk)
        # The local tree knows it as written, so no stale scan mistakes it for an edit.
        self.state.put_local([(target, LocalEntry("file", st.st_size, st.st_mtime_ns,
                                                  st.st_ctime_ns, st.st_ino))])
        return Placeholder(target, st.st_ino, st.st_size, st.st_mtime_ns)


def _reads_as_placeholder(disk: Path) -> bool:
    """Whether a file holds placeholder text (however edited), which is never content."""
    try:
        with open(disk, "rb") as handle:
            return handle.read(len(HEADER)) == HEADER
    except OSError:
        return True  # unreadable: certainly not uploaded now


def _same_stat(disk: Path, entry: LocalEntry) -> bool:
    try:
        st = os.lstat(disk)
    except FileNotFoundError:
        return False
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) == (
        entry.inode, entry.size, entry.mtime_ns, entry.ctime_ns)


def _stat_entry(disk: Path) -> LocalEntry | None:
    """A file's stat as a scanned entry, for `unchanged` (None if nothing is there)."""
    try:
        st = os.lstat(disk)
    except FileNotFoundError:
        return None
    return LocalEntry("file" if stat.S_ISREG(st.st_mode) else "folder", st.st_size,
                      st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
