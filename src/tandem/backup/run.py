"""One backup run: scan the folder, upload what changed, record a snapshot, apply retention.

The sync engine's scanner walks the folder with the last snapshot's scan as its previous tree,
so a file whose (inode, size, mtime, ctime) is unchanged is not even opened; a file it does
read is uploaded while it is read (its hasher is an upload: chunks the server already holds
are skipped through /chunks/missing, so a run killed with kill -9 resumes without re-sending).
Upload only: a file gone from the folder is only absent from the new snapshot.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tandem.backup import document
from tandem.backup.document import Item, Manifest
from tandem.backup.estimate import bytes_to_read
from tandem.backup.local import Backup, BackupHome, LastRun
from tandem.backup.retention import kept
from tandem.client.account import Session
from tandem.client.api import ApiError, ClientError
from tandem.client.transfer import FileChangedError, Transfers, TransferStats, UploadResult
from tandem.core.encoding import b64encode
from tandem.sync.ignore import IgnoreRules
from tandem.sync.model import LocalTree, content_id
from tandem.sync.scanner import FileChangedWhileReading, Hasher, ScanResult, scan

#: Pauses before scanning files that changed while read once more (bounded: then reported).
RETRY_DELAYS = (0.1, 0.5, 2.0)
_CHANGED = "changed while reading"


class BackupCancelled(ClientError):
    """The run was asked to stop (the daemon is shutting down); no snapshot was recorded."""


@dataclass
class Counters:
    """What the run has read so far (a progress line reads these from another thread)."""

    files_read: int = 0
    bytes_read: int = 0
    #: What the run will read in all, once a walk beside it has counted (`estimate.py`).
    bytes_to_read: int | None = None
    transfers: TransferStats = field(default_factory=TransferStats)


@dataclass
class RunReport:
    snapshot: str
    files: int
    size: int
    files_read: int
    bytes_read: int
    chunks_sent: int
    bytes_sent: int
    #: Paths that could not be read as they are now, with the reason (the snapshot holds
    #: their previous version if an earlier one had it, else nothing).
    problems: dict[str, str]
    dropped: int


def run_backup(session: Session, local: BackupHome, backup: Backup,
               counters: Counters | None = None, cancel: threading.Event | None = None,
               clock: Callable[[], float] = time.time) -> RunReport:
    """Run `backup` once (one run per backup at a time) and record how it went."""
    counters = counters or Counters()
    with local.locked(backup):
        started = clock()
        try:
            report = _Run(session, local, backup, counters, cancel, clock).run(started)
        except BackupCancelled:
            raise  # not a run: still due, so the next start runs it
        except Exception as exc:
            local.save_last_run(backup.id, LastRun(started, clock(), error=str(exc)))
            raise
        local.save_last_run(backup.id, LastRun(started, clock(), report.snapshot,
                                               len(report.problems)))
        return report


class _Run:
    def __init__(self, session: Session, local: BackupHome, backup: Backup, counters: Counters,
                 cancel: threading.Event | None, clock: Callable[[], float]) -> None:
        self.session = session
        self.local = local
        self.backup = backup
        self.counters = counters
        self.cancel = cancel
        self.clock = clock
        self.root = Path(backup.folder)

    def run(self, started: float) -> RunReport:
        if not self.root.is_dir():
            raise ClientError(f"{self.root} is not a folder (is it mounted?): nothing backed up")
        rules = IgnoreRules.load(self.root)
        previous, manifests = self.local.load_cache(self.backup.id)
        try:
            return self._attempt(rules, previous, manifests, started)
        except ApiError as exc:
            if exc.code != "missing_chunks" or not previous:
                raise
        # The cache trusted chunks the server no longer has: read and send everything again.
        self.local.drop_cache(self.backup.id)
        return self._attempt(rules, {}, {}, started)

    def _attempt(self, rules: IgnoreRules, previous: LocalTree, manifests: dict[str, Manifest],
                 started: float) -> RunReport:
        # An entry whose manifest is unknown cannot go into a snapshot: read it again.
        previous = {p: e for p, e in previous.items() if e.kind == "folder" or e.content in manifests}
        with Transfers(self.session.api, self.session.keys) as transfers:
            transfers.stats = self.counters.transfers
            batch = transfers.upload_batch()
            with self._estimating(rules, previous):
                result = self._scan(rules, previous, self._hasher(batch.add_file, manifests))
            items = _items(result.tree, manifests)
            doc = document.encode({"source": self.backup.folder,
                                   "device": self.session.device.device_name}, items)
            temp = self.local.temp_dir(self.backup.id) / "document"
            temp.write_bytes(doc)
            try:
                doc_manifest = batch.add_file(temp).manifest
            finally:
                temp.unlink(missing_ok=True)
            batch.finish()
        files = [i for i in items if i.kind == "file"]
        snapshot_id = secrets.token_hex(16)
        self.session.api.create_snapshot(self.backup.id, {
            "id": snapshot_id, "taken_at_ns": int(started * 1e9),
            "size": sum(i.size for i in files), "files": len(files), "document": doc_manifest,
            "chunks": sorted({c for i in files for c, _ in i.manifest}),
            # Sealed, so the server never sees the path; any device of the account opens it.
            "label": b64encode(self.session.keys.encrypt_label(self.backup.id, self.backup.folder)),
        })
        self.local.save_cache(self.backup.id, {i.path: result.tree[i.path] for i in items},
                              manifests)
        problems = dict(result.problems)
        dropped = self._apply_retention(problems)
        stats = self.counters.transfers
        return RunReport(snapshot_id, len(files), sum(i.size for i in files),
                         self.counters.files_read, self.counters.bytes_read, stats.chunks_sent,
                         stats.bytes_sent, problems, dropped)

    def _hasher(self, add_file: Callable[[Path], UploadResult],
                manifests: dict[str, Manifest]) -> Hasher:
        """The scanner's hasher, as an upload: the content id of what was read and sent."""

        def upload(path: Path) -> str:
            if self.cancel is not None and self.cancel.is_set():
                raise BackupCancelled(f"the backup of {self.root} was stopped")
            try:
                result = add_file(path)
            except FileChangedError as exc:
                raise FileChangedWhileReading(str(exc)) from None
            manifest = tuple(result.manifest)
            content = content_id(manifest)
            manifests[content] = manifest
            self.counters.files_read += 1
            self.counters.bytes_read += result.size
            return content

        return upload

    @contextmanager
    def _estimating(self, rules: IgnoreRules, previous: LocalTree) -> Iterator[None]:
        """Count what the run will read, in a thread beside it (for the time left)."""
        stop = threading.Event()

        def count() -> None:
            self.counters.bytes_to_read = bytes_to_read(str(self.root), previous, rules, stop)

        counter = threading.Thread(target=count, daemon=True, name="tandem-backup-estimate")
        counter.start()
        try:
            yield
        finally:
            stop.set()
            counter.join(timeout=5)

    def _scan(self, rules: IgnoreRules, previous: LocalTree, hasher: Hasher) -> ScanResult:
        """Scan; files that changed while read are scanned again after a pause, a few times."""
        result = scan(self.root, previous, hasher, rules)
        for delay in RETRY_DELAYS:
            changing = [p for p, why in result.problems.items() if why.startswith(_CHANGED)]
            if not changing:
                break
            time.sleep(delay)
            again = scan(self.root, result.tree, hasher, rules, subtrees=changing)
            problems = {p: why for p, why in result.problems.items() if p not in changing}
            result = ScanResult(again.tree, {**problems, **again.problems}, result.ignored)
        return result

    def _apply_retention(self, problems: dict[str, str]) -> int:
        """Delete the snapshots the policy no longer keeps (their chunks go at the server's
        next GC). A failure here leaves extra snapshots, never fewer: it is only reported."""
        try:
            snapshots = self.session.api.snapshots(self.backup.id)
            keep = kept({s["id"]: s["taken_at_ns"] for s in snapshots}, int(self.clock() * 1e9),
                        self.backup.policy)
            doomed = [s["id"] for s in snapshots if s["id"] not in keep]
            for snapshot_id in doomed:
                self.session.api.delete_snapshot(snapshot_id)
        except ClientError as exc:
            problems["(retention)"] = f"old snapshots not pruned: {exc}"
            return 0
        return len(doomed)


def _items(tree: LocalTree, manifests: dict[str, Manifest]) -> list[Item]:
    """The snapshot's entries: folders, and files whose content was read (now or before)."""
    items = []
    for path, entry in tree.items():
        if entry.kind == "folder":
            items.append(Item(path, "folder"))
        elif entry.content is not None and entry.content in manifests:
            items.append(Item(path, "file", entry.size, entry.mtime_ns, manifests[entry.content]))
    return items


def describe(report: RunReport) -> str:
    return (f"Snapshot {report.snapshot[:8]} saved: {report.files} file(s), {report.size} bytes;"
            f" {report.files_read} file(s) read, {report.chunks_sent} chunk(s)"
            f" ({report.bytes_sent} bytes) sent" + (f", {report.dropped} old snapshot(s) pruned"
                                                    if report.dropped else "") + ".")

