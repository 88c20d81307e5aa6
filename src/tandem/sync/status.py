"""What `tandem status` answers: the overview (connection, folder, what the next pass would do,
conflicts, problems) and each path's state.

Both sides compute it the same way, so it lives apart from the socket: the daemon from its own
state DB (thread-safe: StateDB takes its lock on every read, and the trees are read together
inside one transaction, so the engine cannot commit between them) and answers through its
control socket (`control.py`); `tandem status` reads the file itself when no daemon runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tandem.client.account import Session
from tandem.sync import ondemand, planner
from tandem.sync.control import ControlServer, Handler, RequestError, socket_path
from tandem.sync.ignore import IgnoreFileError, IgnoreRules
from tandem.sync.live import LiveStatus, in_flight
from tandem.sync.remote import RemoteMirror
from tandem.sync.state import StateDB

_UPLOADS = (planner.Upload, planner.CreateRemoteFolder, planner.DeleteRemote, planner.MoveRemote)
_DOWNLOADS = (planner.Download, planner.CreateLocalFolder, planner.DeleteLocal, planner.MoveLocal,
              planner.SetLocalTime)


def status_overview(state: StateDB, session: Session,
                    mirror: RemoteMirror | None = None) -> dict[str, Any]:
    """Connection, folder, what the next pass would do, conflicts, problems: the planner run on
    the stored trees. Keys starting with '_' are for `path_state`, not for printing. `mirror`:
    an engine's, with its remote tree already built (the caller makes sure no pass runs)."""
    with state.transaction():  # the three trees as of one moment: the engine waits meanwhile
        mirror = mirror or RemoteMirror(session.api, session.keys, state)
        synced = state.synced_tree()
        local = state.local_tree()
        problems = state.problems()
        folder = state.get("folder")
        connection = state.get("connection", "unknown (no sync has run yet)")
        paused = state.get("mass_delete") or ""
        records = state.placeholders()
    remote, _ = mirror.tree()
    local = ondemand.overlay(local, records, synced).local if records else local
    plan = planner.plan(synced, local, remote)
    pending: dict[str, str] = {}
    for op in plan.ops:
        if isinstance(op, _UPLOADS):
            pending[op.path] = "upload"
        elif isinstance(op, _DOWNLOADS):
            pending[op.path] = "download"
        elif isinstance(op, planner.ConflictCopy):
            pending[op.path] = "conflict"
    return {
        "server": session.device.server_url,
        "device": session.device.device_name,
        "folder": folder,
        "connection": connection,
        "pending_uploads": sum(1 for v in pending.values() if v == "upload"),
        "pending_downloads": sum(1 for v in pending.values() if v == "download"),
        "bytes_to_upload": sum(op.local.size for op in plan.ops if isinstance(op, planner.Upload)),
        "bytes_to_download": sum(op.remote.size for op in plan.ops
                                 if isinstance(op, planner.Download)),
        "conflicts": sorted(p for p in synced if "(conflicted copy, " in p),
        "errors": problems,
        "waiting_for_user": json.loads(paused) if paused else None,
        "online_only": len(records),
        "_pending": pending,
        "_synced": set(synced),
        # An online-only file answers by its path and by its placeholder's.
        "_online": {**{path: path for path in records},
                    **{record.placeholder: path for path, record in records.items()}},
    }


def public(info: dict[str, Any]) -> dict[str, Any]:
    """The overview without its private keys (what is printed and sent)."""
    return {k: v for k, v in info.items() if not k.startswith("_")}


def path_state(info: dict[str, Any], relative: str,
               live: dict[str, Any] | None = None) -> dict[str, Any]:
    """The state of one path (relative to the folder, NFC) from an overview and, when a daemon
    runs, its `LiveStatus.snapshot()`: a path moving now (or a folder with something moving
    inside) is `syncing` with its bytes."""
    moving = in_flight(live, relative) if live is not None else None
    if moving is not None:
        return {"state": "syncing", "bytes_done": moving[0], "bytes_total": moving[1]}
    if relative in info["errors"]:
        return {"state": "error", "reason": info["errors"][relative]}
    if relative in info.get("_online", {}):
        return {"state": "online-only", "file": info["_online"][relative]}
    if relative in info["_pending"]:
        kind = info["_pending"][relative]
        return {"state": "conflict" if kind == "conflict" else "pending", "direction": kind}
    if "(conflicted copy, " in relative:
        return {"state": "conflict"}
    if relative in info["_synced"]:
        return {"state": "synced"}
    folder = info.get("folder")
    if folder:
        disk = Path(folder) / relative
        with contextlib.suppress(OSError, IgnoreFileError):
            if disk.is_symlink():
                return {"state": "ignored", "reason": "symbolic link (not synced)"}
            rule = IgnoreRules.load(Path(folder)).match(relative, disk.is_dir())
            if rule is not None:
                return {"state": "ignored", "reason": rule}
            if disk.exists():  # new since the last scan: the next pass sends it
                return {"state": "pending", "direction": "upload"}
    return {"state": "ignored", "reason": "not in the synced folder's tree"}


class Overview:
    """A daemon's `status_overview`, kept until the state DB is written again: a status between
    passes (the common case) costs nothing. The overview plans the whole tree, tens of ms for
    thousands of files, so the daemon also `warm`s it while idle, spending at most 1/WARM_SHARE
    of a core on it however often the state changes. Thread-safe."""

    WARM_SHARE = 20

    def __init__(self, state: StateDB, session: Session, mirror: RemoteMirror | None = None,
                 passes: threading.RLock | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.state = state
        self.session = session
        #: The engine's mirror, used when `passes` (held by every pass) is free: its remote
        #: tree is built already. While a pass runs, a mirror of our own reads the DB.
        self._mirror = mirror
        self._passes = passes
        self._clock = clock
        self._lock = threading.Lock()
        self._changes: int | None = None
        self._info: dict[str, Any] = {}
        self._cost = 0.0
        self._computed_at = -math.inf

    def get(self) -> dict[str, Any]:
        with self._lock:
            changes = self.state.changes  # read first: a write meanwhile only recomputes again
            if changes != self._changes:
                started = self._clock()
                self._info = self._compute()
                self._changes = changes
                self._computed_at = self._clock()
                self._cost = self._computed_at - started
            return self._info

    def warm(self) -> None:
        """Compute the overview now if it is stale and the share of time allows."""
        stale = self.state.changes != self._changes
        if stale and self._clock() - self._computed_at >= self._cost * self.WARM_SHARE:
            self.get()

    def _compute(self) -> dict[str, Any]:
        if self._mirror is not None and self._passes is not None \
                and self._passes.acquire(blocking=False):
            try:
                return status_overview(self.state, self.session, self._mirror)
            finally:
                self._passes.release()
        return status_overview(self.state, self.session)


def status_handler(state: StateDB, session: Session, live: LiveStatus,
                   overview: Overview | None = None) -> Handler:
    """`{"op": "status"}`: the overview, `live` and `daemon: true`.
    `{"op": "status", "paths": [relative, ...]}`: `folder` and each path's state (an empty list
    costs nothing: how a client learns the folder)."""
    kept = overview or Overview(state, session)

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        paths = request.get("paths")
        snapshot = live.snapshot()
        if paths is None:
            return {**public(kept.get()), "live": snapshot, "daemon": True}
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise RequestError("invalid_request", '"paths" is a list of relative paths')
        if not paths:
            return {"folder": state.get("folder"), "paths": {}, "daemon": True}
        info = kept.get()
        return {"folder": info["folder"], "daemon": True,
                "paths": {p: path_state(info, p, snapshot) for p in paths}}

    return handle


def serve_status(home_path: Path, state: StateDB, session: Session, live: LiveStatus,
                 overview: Overview | None = None) -> ControlServer:
    """A started control server for the daemon of `home_path`, answering `status`."""
    server = ControlServer(socket_path(home_path))
    server.register("status", status_handler(state, session, live, overview))
    server.start()
    return server
