"""Filesystem events as hints: which subtrees of the sync folder to rescan, and when.

Events are never the truth (STYLE.md, Syncthing's watch aggregator): they name paths that
may have changed, the scanner decides what did. The aggregator debounces bursts and
collapses many paths into their folder, or into a full rescan. Watchers lose events (an
inotify queue overflow, a watch limit, a folder moved in before its watch was set), so the
caller must still run a full scan periodically; a full rescan is also the caller's job after
`.tandemignore` changes, with the rules reloaded.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from tandem.sync.ignore import IgnoreRules
from tandem.sync.model import normalize, parent_of
from tandem.sync.scanner import RootUnavailable


class EventAggregator:
    """Debounce and collapse dirty paths into subtrees to rescan. Pure: the caller passes the
    time, so tests drive it with numbers.

    A batch is due once no event came for `debounce` seconds, or its oldest event is
    `max_delay` old (a file written continuously still gets scanned). More than
    `per_folder_limit` dirty names in one folder become that folder; more than `total_limit`
    dirty paths become their folders, level by level, until they are few enough (so a
    thousand files touched in twenty folders are those folders, not the whole tree); an
    overflow becomes '' (everything).
    """

    def __init__(
        self,
        debounce: float = 0.1,
        max_delay: float = 1.0,
        per_folder_limit: int = 50,
        total_limit: int = 500,
    ) -> None:
        self.debounce = debounce
        self.max_delay = max_delay
        self.per_folder_limit = per_folder_limit
        self.total_limit = total_limit
        self._paths: set[str] = set()
        self._everything = False
        self._first: float | None = None
        self._last = 0.0

    def add(self, path: str, now: float) -> None:
        """A relative NFC path that may have changed ('' for the root itself)."""
        self._touch(now)
        if self._everything:
            return
        self._paths.add(path)
        # Memory stays bounded under an event storm: past the limit, fewer, wider subtrees.
        if len(self._paths) > self.total_limit:
            self._paths = self._coarsen(self._collapse(self._paths))
        if "" in self._paths:
            self._overflow()

    def overflow(self, now: float) -> None:
        """Events were lost: only a full rescan can tell what changed."""
        self._touch(now)
        self._overflow()

    def deadline(self) -> float | None:
        """When the pending batch falls due if no other event comes, or None if none pends."""
        if self._first is None:
            return None
        return min(self._last + self.debounce, self._first + self.max_delay)

    def due(self, now: float) -> list[str] | None:
        """The subtrees to rescan now, sorted, or None if nothing is due yet."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        subtrees = [""] if self._everything else sorted(self._collapse(self._paths))
        self._paths.clear()
        self._everything = False
        self._first = None
        return subtrees

    def _touch(self, now: float) -> None:
        if self._first is None:
            self._first = now
        self._last = now

    def _overflow(self) -> None:
        self._everything = True
        self._paths.clear()

    def _collapse(self, dirty: set[str]) -> set[str]:
        """Crowded folders instead of their children, then only the outermost paths."""
        paths = set(dirty)
        # Deepest first, so a folder standing in for its children counts in its own parent.
        for depth in range(max(p.count("/") for p in paths), -1, -1):
            by_folder: dict[str, set[str]] = {}
            for path in paths:
                if path.count("/") == depth:
                    by_folder.setdefault(parent_of(path), set()).add(path)
            for folder, children in by_folder.items():
                if len(children) > self.per_folder_limit:
                    paths -= children
                    paths.add(folder)
        if "" in paths:
            return {""}
        return {p for p in paths if not _ancestors(p) & paths}


    def _coarsen(self, paths: set[str]) -> set[str]:
        """Each path replaced by its folder, level by level, until at most `total_limit`."""
        while len(paths) > self.total_limit and "" not in paths:
            folders = {parent_of(p) for p in paths}
            paths = {""} if "" in folders else {p for p in folders if not _ancestors(p) & folders}
        return paths


def _ancestors(path: str) -> set[str]:
    found = set()
    folder = parent_of(path)
    while folder:
        found.add(folder)
        folder = parent_of(folder)
    return found


class _OverflowLog(logging.Handler):
    """watchdog reports an inotify queue overflow only as a log record: turn it into a hint."""

    def __init__(self, handler: _Handler) -> None:
        super().__init__(logging.WARNING)
        self.handler = handler

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.handler.overflow()


class _Handler(FileSystemEventHandler):
    """Runs on watchdog's thread: turn each event into relative paths for the aggregator."""

    _KINDS = frozenset({"created", "modified", "deleted", "moved", "attrib"})

    def __init__(self, root: str, rules: IgnoreRules, aggregator: EventAggregator) -> None:
        self.root = root
        self.rules = rules
        self.aggregator = aggregator
        self.changed = threading.Condition()

    def on_any_event(self, event: FileSystemEvent) -> None:
        # A folder's own modified/attrib event only says its listing or metadata changed;
        # the names that changed inside come as events of their own.
        if event.event_type not in self._KINDS or (
            event.is_directory and event.event_type in ("modified", "attrib")
        ):
            return
        paths = [os.fsdecode(event.src_path)]
        if event.event_type == "moved":
            paths.append(os.fsdecode(event.dest_path))
        relative = [r for r in map(self._relative, paths) if r is not None]
        wanted = [r for r in relative if self.rules.match(r, event.is_directory) is None]
        if wanted:
            now = time.monotonic()
            with self.changed:
                for path in wanted:
                    self.aggregator.add(path, now)
                self.changed.notify_all()

    def overflow(self) -> None:
        with self.changed:
            self.aggregator.overflow(time.monotonic())
            self.changed.notify_all()

    def _relative(self, path: str) -> str | None:
        if path == self.root:
            return ""
        if not path.startswith(self.root + os.sep):
            return None  # the far half of a move out of (or into) the sync folder
        return normalize(path[len(self.root) + 1 :].replace(os.sep, "/"))


#: The events that can mean a change. Without a filter watchdog also asks inotify for every
#: open and close: the scan reading 5,000 files, or a download writing them, then cost the
#: watcher's thread more CPU (and GIL) than the work itself. A folder's own modification is
#: left out too (its entries' events say what changed).
_WANTED_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent, DirCreatedEvent, FileDeletedEvent, DirDeletedEvent,
    FileMovedEvent, DirMovedEvent, FileModifiedEvent, FileAttribEvent,
]


class Watcher:
    """Watches the sync folder (recursively, from construction until `stop`) for hints."""

    def __init__(self, root: Path, rules: IgnoreRules, aggregator: EventAggregator | None = None) -> None:
        self._handler = _Handler(os.path.abspath(root), rules, aggregator or EventAggregator())
        self._overflow_log = _OverflowLog(self._handler)
        logging.getLogger("watchdog").addHandler(self._overflow_log)
        self._woken = False
        self._observer = Observer()
        try:
            self._observer.schedule(self._handler, self._handler.root, recursive=True,
                                    event_filter=_WANTED_EVENTS)
            self._observer.start()
        except OSError as exc:
            logging.getLogger("watchdog").removeHandler(self._overflow_log)
            raise RootUnavailable(f"cannot watch the sync folder {root}: {exc.strerror or exc}") from exc

    def wait(self, timeout: float) -> list[str] | None:
        """Block up to `timeout` seconds (or until `wake`) for subtrees to rescan; None if
        none fell due."""
        end = time.monotonic() + timeout
        aggregator = self._handler.aggregator
        with self._handler.changed:
            while True:
                now = time.monotonic()
                due = aggregator.due(now)
                if due is not None or now >= end or self._woken:
                    self._woken = False
                    return due
                deadline = aggregator.deadline()
                self._handler.changed.wait(min(end, deadline if deadline is not None else end) - now)

    def wake(self) -> None:
        """End a `wait` now (or the next one, if none is waiting): another thread has work for
        the waiter, as the long-poll when another device committed."""
        with self._handler.changed:
            self._woken = True
            self._handler.changed.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching; waits at most `timeout` seconds for watchdog's threads."""
        logging.getLogger("watchdog").removeHandler(self._overflow_log)
        self._observer.stop()
        self._observer.join(timeout)

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
