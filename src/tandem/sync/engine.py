"""The controller, which reads as the algorithm: refresh the remote tree, scan, plan, check
the plan is safe, execute, repeat until a plan is empty (STYLE.md: Mutagen's controller).

`sync_once` is one `tandem sync --once`; `run_forever` adds the watcher (local changes, as
hints for partial rescans), the long-poll on the journal (remote changes) and a periodic full
rescan, and keeps going through a lost connection or a revoked token, saying so in the status.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tandem.client.account import Session
from tandem.client.api import ApiError, ClientError
from tandem.client.home import write_private
from tandem.client.transfer import Transfers
from tandem.core.crypto import DecryptionError
from tandem.sync import ondemand, planner
from tandem.sync.executor import STATE_FOLDER, Executor
from tandem.sync.focus import paths_of_nodes, restrict, widen, with_identities
from tandem.sync.ignore import IGNORE_FILE, IgnoreRules
from tandem.sync.live import LiveStatus
from tandem.sync.localfs import PreconditionFailed, describe
from tandem.sync.model import (
    LocalTree,
    RemoteEntry,
    SyncedEntry,
    SyncedTree,
    is_within,
    within_any,
)
from tandem.sync.ondemand_io import OnDemandError
from tandem.sync.remote import RemoteMirror
from tandem.sync.scanner import RootUnavailable, ScanResult, make_hasher, scan
from tandem.sync.sendahead import SendAhead
from tandem.sync.state import StateDB

T = TypeVar("T", SyncedEntry, RemoteEntry)
E = TypeVar("E")
MAX_ROUNDS = 50
#: A plan deleting more than this share of the synced files, and more than MASS_DELETE_MIN,
#: waits for the user (promise 2).
MASS_DELETE_SHARE = 0.5
MASS_DELETE_MIN = 100
#: A random id kept in the folder and in the state DB: a folder without it (or with another
#: one) is not the folder that was synced, whatever its path or inode.
FOLDER_MARKER = "folder-id"


class MassDeletePaused(Exception):
    def __init__(self, deletions: int, total: int) -> None:
        super().__init__(
            f"this sync would delete {deletions} of {total} synced files; nothing was deleted."
            " Check the folder and the cloud, then run `tandem sync --allow-mass-delete`")
        self.deletions = deletions
        self.total = total


@dataclass
class PassReport:
    rounds: int = 0
    done: int = 0
    uploaded_bytes: int = 0
    downloaded_bytes: int = 0
    conflicts: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    #: Paths of the last round's operations when the pass ended with work left (a round
    #: that made no progress, or the rounds ran out): a daemon looks at them again soon.
    unfinished: list[str] = field(default_factory=list)


class Engine:
    def __init__(self, session: Session, root: Path, state: StateDB,
                 allow_mass_delete: bool = False,
                 on_round: Callable[[planner.Plan], None] | None = None) -> None:
        self.session = session
        self.root = root
        self.state = state
        self.allow_mass_delete = allow_mass_delete
        self.on_round = on_round
        self.transfers = Transfers(session.api, session.keys)
        self.mirror = RemoteMirror(session.api, session.keys, state)
        #: What is happening now, for `tandem status` through the daemon's control socket.
        self.live = LiveStatus()
        self.executor = Executor(root, state, self.mirror, self.transfers,
                                 session.device.device_name, live=self.live)
        self.send_ahead = SendAhead(self.transfers, self.live, root)
        recent = self.executor.recent_manifests
        self.hasher = make_hasher(session.keys, recent.remember, self.send_ahead.sink_for,
                                  recent.holds)
        #: Held by a pass, and by a free or offline, so they never run at the same time.
        self.busy = threading.RLock()
        self._rules_cache: IgnoreRules | None = None
        self._rules_stamp: tuple[int, ...] | None = None
        self._ignored_cache: dict[tuple[str, bool], bool] = {}

    def close(self) -> None:
        self.transfers.close()

    # ---- the root -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Check the folder is there and is the one we synced; clear stale temp files."""
        try:
            os.stat(self.root)
        except OSError as exc:
            raise RootUnavailable(f"the sync folder {self.root} is missing or unreadable"
                                  f" ({exc.strerror}): nothing was synced") from None
        if not self.root.is_dir():
            raise RootUnavailable(f"the sync folder {self.root} is not a folder: nothing was synced")
        marker = self.root / STATE_FOLDER / FOLDER_MARKER
        found = marker.read_text().strip() if marker.is_file() and not marker.is_symlink() else None
        known = self.state.get("folder_marker")
        if found is None or found != known:
            if known is not None:
                # Not the folder we synced (recreated empty, or another disk mounted there):
                # merge it afresh. Without a merge base nothing is deleted anywhere.
                self.state.forget_synced_subtree("")
                self.state.save_local(self.state.local_tree(), {})
            found = found or secrets.token_hex(16)
            marker.parent.mkdir(exist_ok=True)
            write_private(marker, found.encode())
            self.state.put("folder_marker", found)
        temp = self.root / STATE_FOLDER / "tmp"
        if temp.is_dir() and not temp.is_symlink():
            shutil.rmtree(temp, ignore_errors=True)

    # ---- one pass -------------------------------------------------------------------------

    def sync_once(self, subtrees: Sequence[str] | None = None) -> PassReport:
        """Rounds of refresh, scan, plan, execute until nothing is left to do (or no round
        makes progress). `subtrees` limits the first scan (daemon hints); later rounds rescan
        only what the previous round touched on disk."""
        with self.busy:
            return self._pass(subtrees)

    def _pass(self, subtrees: Sequence[str] | None) -> PassReport:
        self.prepare()
        try:
            report = self._rounds(subtrees)
        except ClientError as exc:
            self.state.put("connection", _connection_state(exc))
            raise
        finally:
            self.live.set_activity("idle")
        if self.state.get("connection") != "connected":
            self.state.put("connection", "connected")
        return report

    def _rounds(self, subtrees: Sequence[str] | None) -> PassReport:
        report = PassReport()
        # Plan only where something may have changed (None: everything); earlier problems
        # are looked at again, so they are retried and stay reported until solved.
        focus = widen(set(), subtrees) if subtrees is not None else None
        focus = widen(focus, self.state.problems())
        scan_only = None if focus is None else sorted(focus)
        scan_problems: dict[str, str] = {}
        #: Moves that failed (a folder refusing the rename): the pass goes on without their
        #: paths, since a plan holding moves holds nothing else. Their problems stay reported.
        held: dict[str, str] = {}
        for _ in range(MAX_ROUNDS):
            report.rounds += 1
            # Local first: with the server unreachable, the scan still records what waits.
            previous = self.state.local_tree()
            self.live.set_activity("scanning")
            scanned = self._scan(previous, scan_only)
            scan_problems = _rescanned(scan_problems, scan_only, scanned.problems)
            self.state.save_local(previous, scanned.tree)
            self.mirror.refresh()
            remote, remote_problems = self.mirror.tree()
            synced = self.state.synced_tree()
            local, rescan = self._read_placeholders(scanned, synced)
            if rescan is not None:
                scan_only = rescan  # a placeholder became a real file: look again first
                focus = widen(focus, rescan)
                continue
            changed = self.mirror.take_changed()
            focus = None if changed is None else with_identities(widen(
                focus, paths_of_nodes(changed, remote, synced)), synced, local, remote)
            # What this device ignores (by rule, or a symlink or special file standing there)
            # is neither sent, fetched nor deleted, on either side.
            skip = set(scanned.ignored)
            plan = planner.plan(_without(self._unignored(restrict(synced, focus), skip), held),
                                _without(restrict(local, focus), held),
                                _without(self._unignored(restrict(remote, focus), skip), held))
            problems = {**remote_problems, **scan_problems,
                        **{path: problem for path, problem in held.items() if problem}}
            if not plan.ops:
                report.problems = problems
                report.unfinished = []
                break
            self._check_mass_delete(plan, synced)
            if self.on_round is not None:
                self.on_round(plan)
            self.live.set_activity("syncing")
            outcome = self.executor.run(plan, local, remote)
            report.done += outcome.done
            report.uploaded_bytes += outcome.bytes_uploaded
            report.downloaded_bytes += outcome.bytes_downloaded
            report.conflicts.extend(plan.conflicts)
            report.problems = {**problems, **outcome.problems}
            report.unfinished = _touched(plan, outcome.problems, remote_too=True)
            if outcome.done == 0:
                stuck = _failed_moves(plan, outcome.problems)
                if not stuck.keys() - held.keys():
                    break
                held.update(stuck)
                continue
            scan_only = _touched(plan, outcome.problems)
            focus = widen(focus, scan_only)  # a pass's focus only grows
        self.state.set_problems(report.problems, int(time.time()))
        if self.state.get("mass_delete"):
            self.state.put("mass_delete", "")
        return report

    def _scan(self, previous: LocalTree, subtrees: list[str] | None) -> ScanResult:
        """A pass's scan, which sends the chunks of the files it hashes (`sendahead.py`), but
        not while the server is known to be unreachable: a scan then only records what waits."""
        connection = self.state.get("connection")
        if connection is None or connection == "connected":
            self.send_ahead.start()
        try:
            return scan(self.root, previous, self.hasher, self.rules(), subtrees)
        finally:
            self.executor.stored_chunks = self.send_ahead.finish()

    def _read_placeholders(self, scanned: ScanResult,
                           synced: SyncedTree) -> tuple[LocalTree, list[str] | None]:
        """The scanned tree with placeholders read as the files they stand for; after fixups
        that touched the disk, the folders to scan again before any plan (else None)."""
        records = self.state.placeholders()
        if not records:
            return scanned.tree, None
        view = ondemand.overlay(scanned.tree, records, synced, scanned.ignored)
        folders = self.executor.placeholders.apply(view)
        return view.local, (folders if view.needs_disk else None)

    def rules(self) -> IgnoreRules:
        """The ignore rules, read again only when `.tandemignore` changed."""
        try:
            st = os.lstat(self.root / IGNORE_FILE)
            stamp: tuple[int, ...] | None = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except FileNotFoundError:
            stamp = None
        if self._rules_cache is None or stamp != self._rules_stamp:
            self._rules_cache = IgnoreRules.load(self.root)
            self._rules_stamp = stamp
            self._ignored_cache = {}
        return self._rules_cache

    def _unignored(self, tree: dict[str, T], skip: set[str]) -> dict[str, T]:
        """`tree` without the paths ignored here, and what is under them. A rule's answer
        already covers a path's folders and is remembered until the rules change; `skip`
        (what this scan found ignored) is looked up by ancestor. Runs on every path of every
        pass, so the common case (nothing ignored) costs one lookup per path and no copy."""
        rules, cache = self.rules(), self._ignored_cache
        skip_tops = {path.partition("/")[0] for path in skip}  # (most paths are under none)

        def ignored(path: str, entry: T) -> bool:
            key = (path, entry.kind == "folder")
            hit = cache.get(key)
            if hit is None:
                hit = cache[key] = rules.match(path, key[1]) is not None
            return hit or (path.partition("/")[0] in skip_tops and within_any(path, skip))

        if not any(ignored(path, entry) for path, entry in tree.items()):
            return tree
        return {path: entry for path, entry in tree.items() if not ignored(path, entry)}

    def _check_mass_delete(self, plan: planner.Plan, synced: dict[str, object]) -> None:
        if self.allow_mass_delete:
            return
        total = sum(1 for e in synced.values() if getattr(e, "kind", "") == "file")
        deletions = plan.cloud_deletions
        if deletions > MASS_DELETE_MIN and deletions > total * MASS_DELETE_SHARE:
            paused = MassDeletePaused(deletions, total)
            self.state.put("mass_delete", json.dumps({"deletions": deletions, "total": total}))
            raise paused

    # ---- files on demand ------------------------------------------------------------------

    def free(self, paths: Sequence[str]) -> dict[str, str]:
        """Make files (and folders, recursively, and their new files) online-only; returns a
        problem per path refused, each left as it was."""
        return self._on_demand(paths, ondemand.ONLINE_ONLY)

    def make_offline(self, paths: Sequence[str]) -> dict[str, str]:
        """Bring online-only files (and folders, pinned) back with their content."""
        return self._on_demand(paths, ondemand.OFFLINE)

    def _on_demand(self, paths: Sequence[str], policy: str) -> dict[str, str]:
        with self.busy:
            self.prepare()
            previous = self.state.local_tree()
            scanned = scan(self.root, previous, self.hasher, self.rules(), paths)
            self.state.save_local(previous, scanned.tree)
            self.mirror.refresh()
            remote, _ = self.mirror.tree()
            synced = self.state.synced_tree()
            records = self.state.placeholders()
            problems: dict[str, str] = {}
            for path in paths:
                base = synced.get(path)
                if path and (base is None or base.kind == "file"):
                    files = [path]
                else:  # a folder: every file inside, and the files that arrive later
                    self.state.set_folder_policy(path, policy)
                    files = [p for p, e in synced.items() if e.kind == "file" and is_within(p, path)]
                for file in files:
                    try:
                        if policy == ondemand.ONLINE_ONLY and file not in records:
                            self.executor.placeholders.free(
                                file, self.executor.paths.disk(file, scanned.tree),
                                scanned.tree.get(file), synced.get(file), remote.get(file))
                        elif policy == ondemand.OFFLINE and file in records:
                            self.executor.placeholders.offline(file, records[file], remote.get(file))
                    except (OnDemandError, PreconditionFailed) as exc:
                        problems[file] = str(exc) or "changed meanwhile: sync first"
                    except (OSError, ClientError, DecryptionError) as exc:
                        problems[file] = describe(exc)
            return problems


#: Operations whose effects are only on the server or in the state DB: the disk is as scanned.
_REMOTE_ONLY = (planner.Upload, planner.CreateRemoteFolder, planner.DeleteRemote,
                planner.MoveRemote, planner.MoveSynced, planner.RecordSynced, planner.ForgetSynced)


def _touched(plan: planner.Plan, problems: dict[str, str], remote_too: bool = False) -> list[str]:
    """Paths the next round rescans: those a round may have changed on disk (a conflicted
    copy lands beside its original, so its folder), and those that had a problem (a file
    that changed while it was uploaded). The rest of the folder waits for the next pass.
    With `remote_too`, the paths of every operation (what a plan was about)."""
    paths: set[str] = set(problems)
    for op in plan.ops:
        if isinstance(op, _REMOTE_ONLY) and not remote_too:
            continue
        paths.add(op.path)
        target = getattr(op, "to", None)
        if target:
            paths.add(target)
        if isinstance(op, planner.ConflictCopy):
            paths.add(op.path.rpartition("/")[0])
    return sorted(paths)  # the scan keeps the outermost ones


def _failed_moves(plan: planner.Plan, problems: dict[str, str]) -> dict[str, str]:
    """Both paths of each move of the plan that failed (its problem on the first)."""
    return {path: problem for op in plan.ops
            if isinstance(op, planner.MoveLocal | planner.MoveRemote) and op.path in problems
            for path, problem in ((op.to, ""), (op.path, problems[op.path]))}


def _without(tree: dict[str, E], held: dict[str, str]) -> dict[str, E]:
    if not held:
        return tree
    paths = set(held)
    return {path: entry for path, entry in tree.items() if not within_any(path, paths)}


def _rescanned(earlier: dict[str, str], subtrees: Sequence[str] | None,
               found: dict[str, str]) -> dict[str, str]:
    """The problems of a round's scan, with those of earlier rounds' scans that it did not
    look at again (a later round rescans only what it touched: an unreadable file found by
    the first round is still a problem of the pass)."""
    if subtrees is None or "" in subtrees:
        return dict(found)
    looked = set(subtrees)
    return {**{path: problem for path, problem in earlier.items()
               if not within_any(path, looked)}, **found}


def _connection_state(exc: ClientError) -> str:
    if isinstance(exc, ApiError) and exc.status == 401:
        return "this device's token was revoked: run `tandem logout`, then `tandem login`"
    if isinstance(exc, ApiError):
        return f"connected, but the server refused: {exc}"
    return f"offline: {exc}"
