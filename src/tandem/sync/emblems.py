"""File-manager emblems: each synced path shows its state in Nautilus, Nemo or Caja, as the
icons of Dropbox or OneDrive do, through GIO metadata (`metadata::emblems`, kept by the gvfs
metadata daemon).

The emblems are freedesktop icon names every common theme has: `emblem-default` (a check
mark: synced), `emblem-synchronizing` (moving now), `emblem-web` (online only: the content is
in the cloud) and `emblem-important` (an error; `tandem status PATH` says which). Pending,
conflicted and ignored paths carry none.

`emblem_states` and `changes` are pure. `Emblems` applies what changed with the `gio` command
(one process per path: `gio set` takes one location, and PyGObject is not a dependency), on a
thread of its own, so it never blocks or fails a sync: without `gio`, or where the attribute is
unsupported (no gvfs metadata daemon, no session bus), it turns itself off silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from tandem.sync.live import LiveStatus
from tandem.sync.model import parent_of
from tandem.sync.state import StateDB

SYNCED = "emblem-default"
SYNCING = "emblem-synchronizing"
ONLINE_ONLY = "emblem-web"
ERROR = "emblem-important"
ATTRIBUTE = "metadata::emblems"
#: How often the updater looks at the live status for transfers starting or ending.
POLL_SECONDS = 0.5
#: One `gio set` taking longer than this is given up (a hung session bus must not pile up).
GIO_TIMEOUT = 5.0


def emblem_states(synced: Iterable[str], online: Mapping[str, str], problems: Iterable[str],
                  moving: Iterable[str]) -> dict[str, str]:
    """Path on disk (relative) -> emblem. `synced`: the merge base's paths; `online`: each
    online-only file's path -> its placeholder's; `problems`: paths with an error; `moving`:
    paths in flight. An online-only file's emblem goes on its placeholder; a folder with
    something moving inside is syncing too. Syncing wins over error, error over the rest."""
    states = {path: SYNCED for path in synced if path}
    for path, placeholder in online.items():
        states.pop(path, None)
        states[placeholder] = ONLINE_ONLY
    for path in problems:
        if path:
            states[path] = ERROR
    for path in moving:
        while path:
            states[path] = SYNCING
            path = parent_of(path)
    return states


def changes(applied: Mapping[str, str], wanted: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """(emblems to set, paths to clear) to go from `applied` to `wanted`."""
    to_set = {path: emblem for path, emblem in wanted.items() if applied.get(path) != emblem}
    return to_set, sorted(path for path in applied if path not in wanted)


class Emblems:
    """Sets and clears emblems under `root` with `gio`, remembering what it set."""

    def __init__(self, root: Path, gio: str | None = None) -> None:
        self.root = root
        self.gio = gio if gio is not None else shutil.which("gio")
        self.applied: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        return self.gio is not None

    def update(self, wanted: Mapping[str, str], stopping: threading.Event | None = None) -> None:
        """Bring the emblems to `wanted` (until `stopping` is set). Paths gone from disk are
        skipped (metadata of a missing file cannot be set); the first refusal of the
        attribute turns emblems off."""
        to_set, to_clear = changes(self.applied, wanted)
        for path in to_clear:
            self.applied.pop(path, None)
            if self.enabled and os.path.lexists(self.root / path):
                self._gio(["-d"], path, [])
        for path, emblem in sorted(to_set.items()):
            if not self.enabled or (stopping is not None and stopping.is_set()):
                return
            if os.path.lexists(self.root / path) and self._gio(["-t", "stringv"], path, [emblem]):
                self.applied[path] = emblem

    def _gio(self, flags: list[str], path: str, values: list[str]) -> bool:
        """One `gio set`; False if it failed. A refusal of the attribute itself (no metadata
        daemon or bus) turns emblems off for good; a single file's failure does not."""
        if self.gio is None:
            return False
        command = [self.gio, "set", *flags, os.fspath(self.root / path), ATTRIBUTE, *values]
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=GIO_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired):
            self.gio = None
            return False
        if done.returncode != 0 and b"not supported" in done.stderr:
            self.gio = None
        return done.returncode == 0


class EmblemUpdater:
    """The daemon's emblem thread: recomputes the states when the live status changes (a
    pass starts or ends, a transfer starts or ends) or `poke()` says something changed (a
    free or offline), at most every POLL_SECONDS, and applies the difference. Any failure
    costs only the emblems."""

    def __init__(self, emblems: Emblems, state: StateDB, live: LiveStatus) -> None:
        self.emblems = emblems
        self.state = state
        self.live = live
        self._poked = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tandem-emblems")

    def start(self) -> EmblemUpdater:
        if self.emblems.enabled:
            self._thread.start()
        return self

    def poke(self) -> None:
        self._poked.set()

    def stop(self) -> None:
        self._stop.set()
        self._poked.set()
        if self._thread.is_alive():
            self._thread.join(timeout=GIO_TIMEOUT + 1)

    def _run(self) -> None:
        seen = -1
        while not self._stop.is_set() and self.emblems.enabled:
            generation = self.live.generation()
            if generation != seen or self._poked.is_set():
                self._poked.clear()
                seen = generation
                try:
                    self.emblems.update(self._wanted(self.live.transfers()), self._stop)
                except Exception:  # emblems are decoration: never stop the sync for them
                    self.emblems.gio = None
            self._poked.wait(POLL_SECONDS)

    def _wanted(self, moving: Iterable[str]) -> dict[str, str]:
        with self.state.transaction():  # the trees as of one moment
            synced = self.state.synced_tree()
            records = self.state.placeholders()
            problems = self.state.problems()
        return emblem_states(synced, {p: r.placeholder for p, r in records.items()}, problems,
                             moving)
