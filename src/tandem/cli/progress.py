"""Progress on a terminal (quiet otherwise): a sync pass's files, bytes, rate and time left; a
line any long command renders (backup, restore, migrate)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.text import Text

from tandem.cli.sizes import human_size
from tandem.client.transfer import TransferStats
from tandem.sync import planner

_TRANSFERS = (planner.Upload, planner.Download)


def rate_and_eta(done: int, total: int | None, start: float) -> str:
    """`at R/s` and, once a total is known and bytes move, `, about N s left` (or min)."""
    rate = done / max(time.monotonic() - start, 1e-6)
    text = f"at {human_size(rate)}/s"
    if total is not None and rate > 0 and total > done:
        left = (total - done) / rate
        text += f", about {left:.0f} s left" if left < 120 else f", about {left / 60:.0f} min left"
    return text


@contextmanager
def live_line(render: Callable[[], str]) -> Iterator[None]:
    """A progress line on stderr, refreshed 4 times a second, only when stdout is a terminal."""
    if not sys.stdout.isatty():
        yield
        return
    live = Live(Text(""), console=Console(stderr=True), transient=True, refresh_per_second=4)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.25):
            live.update(Text(render()))

    thread = threading.Thread(target=tick, daemon=True, name="tandem-progress")
    live.start()
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=1)
        live.stop()


class SyncProgress:
    """A live line fed by the engine's plans and its transfer counters."""

    def __init__(self, stats: TransferStats) -> None:
        self.stats = stats
        self.files = 0
        self.total_bytes = 0
        self.start = time.monotonic()
        self.base = 0
        self._live = Live(Text(""), console=Console(stderr=True), transient=True,
                          refresh_per_second=4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True, name="tandem-progress")

    def on_round(self, plan: planner.Plan) -> None:
        self.files = sum(1 for op in plan.ops if isinstance(op, _TRANSFERS))
        self.total_bytes = sum(op.local.size if isinstance(op, planner.Upload) else op.remote.size
                               for op in plan.ops if isinstance(op, _TRANSFERS))
        self.base = self.stats.bytes_sent + self.stats.bytes_received
        self.start = time.monotonic()

    def _line(self) -> Text:
        moved = self.stats.bytes_sent + self.stats.bytes_received - self.base
        return Text(f"Syncing {self.files} file(s): {human_size(moved)} of {human_size(self.total_bytes)}"
                    f" {rate_and_eta(moved, self.total_bytes, self.start)}")

    def _tick(self) -> None:
        while not self._stop.wait(0.25):
            self._live.update(self._line())

    def __enter__(self) -> SyncProgress:
        self._live.start()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self._live.stop()
