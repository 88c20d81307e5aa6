"""What a running `tandem sync` is doing right now: its activity, the files in flight and the
transfer rate. The daemon owns one `LiveStatus`; the engine reports into it, the control socket
(`control.py`, `status.py`) reads `snapshot()` for `tandem status`.

Pure logic and thread-safe: the engine, its transfer workers and the control thread share it.
The clock is injected (monotonic seconds) so the rate can be tested without waiting.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ACTIVITIES = ("idle", "scanning", "syncing")
#: The rate is the bytes moved over the last RATE_WINDOW seconds (less while younger).
RATE_WINDOW = 5.0
#: Bytes moved within one bucket are added up, so memory stays flat whatever the chunk rate.
_BUCKET = 0.25


class LiveStatus:
    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 window: float = RATE_WINDOW) -> None:
        if window <= 0:
            raise ValueError("the rate window must be positive")
        self._clock = clock
        self._window = window
        self._lock = threading.Lock()
        self._started = clock()
        self._activity = "idle"
        self._since = self._started
        self._transfers: dict[str, list[int]] = {}  # path -> [bytes done, bytes total]
        self._generation = 0  # counts changes of activity and of the set of files in flight
        self._moved: deque[tuple[float, int]] = deque()  # (bucket start, bytes)

    # ---- what the engine calls ------------------------------------------------------------

    def set_activity(self, activity: str) -> None:
        if activity not in ACTIVITIES:
            raise ValueError(f"unknown activity {activity!r} (one of {', '.join(ACTIVITIES)})")
        with self._lock:
            if activity != self._activity:
                self._activity = activity
                self._since = self._clock()
                self._generation += 1

    @contextmanager
    def activity(self, activity: str) -> Iterator[None]:
        """`with live.activity("scanning"): ...`: the previous activity comes back after."""
        with self._lock:
            previous = self._activity
        self.set_activity(activity)
        try:
            yield
        finally:
            self.set_activity(previous)

    def start_transfer(self, path: str, total: int) -> None:
        """`path` (relative, as in the trees) starts moving `total` bytes; a restart resets it."""
        with self._lock:
            self._transfers[path] = [0, max(0, total)]
            self._generation += 1

    def advance(self, path: str, count: int) -> None:
        """`count` more bytes of `path` moved. They count towards the rate even when the path
        is not (or no longer) in flight; done never goes past total (total grows instead)."""
        if count <= 0:
            return
        with self._lock:
            now = self._clock()
            if self._moved and now - self._moved[-1][0] < _BUCKET:
                start, moved = self._moved[-1]
                self._moved[-1] = (start, moved + count)
            else:
                self._moved.append((now, count))
            self._forget_before(now - self._window)
            item = self._transfers.get(path)
            if item is not None:
                item[0] += count
                item[1] = max(item[1], item[0])

    def finish_transfer(self, path: str) -> None:
        """`path` is done (or failed): no longer in flight. Unknown paths are ignored."""
        with self._lock:
            if self._transfers.pop(path, None) is not None:
                self._generation += 1

    # ---- what `tandem status` reads -------------------------------------------------------

    def rate(self) -> float:
        """Bytes per second over the last window (over the time since start while younger)."""
        with self._lock:
            return self._rate(self._clock())

    def generation(self) -> int:
        """A number that changes whenever the activity or the set of files in flight does:
        a watcher polling it (the emblems) misses no pass however short."""
        with self._lock:
            return self._generation

    def transfers(self) -> dict[str, tuple[int, int]]:
        """Path -> (bytes done, bytes total) of what is in flight."""
        with self._lock:
            return {path: (done, total) for path, (done, total) in self._transfers.items()}

    def snapshot(self) -> dict[str, Any]:
        """Everything above as one JSON-ready dict."""
        with self._lock:
            now = self._clock()
            transfers = {path: {"bytes_done": done, "bytes_total": total}
                         for path, (done, total) in sorted(self._transfers.items())}
            return {
                "activity": self._activity,
                "activity_seconds": round(max(0.0, now - self._since), 3),
                "files_in_flight": len(transfers),
                "bytes_done": sum(t["bytes_done"] for t in transfers.values()),
                "bytes_total": sum(t["bytes_total"] for t in transfers.values()),
                "rate": round(self._rate(now), 1),
                "transfers": transfers,
            }

    # ---- inside the lock ------------------------------------------------------------------

    def _forget_before(self, horizon: float) -> None:
        while self._moved and self._moved[0][0] <= horizon:
            self._moved.popleft()

    def _rate(self, now: float) -> float:
        self._forget_before(now - self._window)
        span = min(self._window, now - self._started)
        if span <= 0:
            return 0.0
        return sum(count for _, count in self._moved) / max(span, _BUCKET)


def in_flight(snapshot: dict[str, Any], path: str) -> tuple[int, int] | None:
    """(bytes done, bytes total) in flight at `path` or under it ('' is the whole folder),
    from a `snapshot()`; None when nothing there is moving."""
    transfers: dict[str, dict[str, int]] = snapshot.get("transfers") or {}
    found = [item for where, item in transfers.items()
             if not path or where == path or where.startswith(path + "/")]
    if not found:
        return None
    return sum(i["bytes_done"] for i in found), sum(i["bytes_total"] for i in found)
