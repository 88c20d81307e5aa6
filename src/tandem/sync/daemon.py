"""The engine run continuously (`tandem sync` without `--once`): passes as changes happen.

Three things wake a pass: the watcher's hints (debounced subtrees), the journal's long-poll
(another device committed), and a full rescan every 10 minutes. A pass that ends with work
left (a file that changed as it was acted on) is retried on its own after a short, growing
delay, without holding back the passes that other changes start meanwhile. Trouble with the
server (unreachable, a revoked token, a paused mass delete) backs off and looks at everything
again afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tandem.client.api import ClientError
from tandem.sync.control import Handler, RequestError
from tandem.sync.engine import Engine, MassDeletePaused
from tandem.sync.ignore import IGNORE_FILE, IgnoreFileError
from tandem.sync.scanner import RootUnavailable

FULL_RESCAN_SECONDS = 600.0
LONG_POLL_SECONDS = 25.0
#: Retry delays, doubling from the first to the last: after trouble, and for unfinished work.
TROUBLE_DELAYS = (1.0, 30.0)
UNFINISHED_DELAYS = (0.5, 30.0)


def _delay(bounds: tuple[float, float], count: int) -> float:
    return min(bounds[1], bounds[0] * 2 ** max(0, count - 1))


def run_forever(engine: Engine, stop: threading.Event,
                on_status: Callable[[str], None] | None = None,
                on_idle: Callable[[], None] | None = None) -> None:
    """Sync as changes happen until `stop` is set. `on_idle` is called whenever there is
    nothing to do (every few tens of ms: it must be cheap when it has nothing to do)."""
    from tandem.sync.watcher import Watcher  # watchdog: only daemons pay for its import

    say = on_status or (lambda _message: None)
    remote_changed = threading.Event()
    watcher = Watcher(engine.root, engine.rules())
    # (a lambda: the watcher may be replaced, the poller wakes whichever one is current)
    poller = threading.Thread(target=_poll, args=(engine, stop, remote_changed,
                                                  lambda: watcher.wake()),
                              daemon=True, name="tandem-poll")
    poller.start()
    pending: list[str] | None = None  # subtrees to look at; None: everything
    unfinished: list[str] = []  # left by the last pass, retried at `unfinished_at`
    next_full = time.monotonic() + FULL_RESCAN_SECONDS
    retry_at = unfinished_at = 0.0
    failures = stalls = 0
    try:
        while not stop.is_set():
            due = watcher.wait(0.05)
            if due is not None and IGNORE_FILE in due:
                watcher.stop()  # new rules: watch with them, and look at everything again
                watcher = Watcher(engine.root, engine.rules())
                due = [""]
            now = time.monotonic()
            if now >= next_full:
                due, next_full = [""], now + FULL_RESCAN_SECONDS
            if unfinished and now >= unfinished_at:
                due, unfinished = [*(due or []), *unfinished], []
            if due is not None:
                pending = None if pending is None or "" in due else sorted({*pending, *due})
            if (pending == [] and not remote_changed.is_set()) or now < retry_at:
                if on_idle is not None:
                    on_idle()
                continue
            remote_changed.clear()
            if pending is not None and unfinished:  # a pass runs anyway: take them along
                pending, unfinished = sorted({*pending, *unfinished}), []
            try:
                report = engine.sync_once(pending)
            except (ClientError, MassDeletePaused, IgnoreFileError) as exc:
                failures += 1
                retry_at = time.monotonic() + _delay(TROUBLE_DELAYS, failures)
                say(str(exc))
                pending = None  # after trouble, look at everything again
                continue
            pending, failures = [], 0
            if report.unfinished:
                stalls += 1
                unfinished = report.unfinished
                unfinished_at = time.monotonic() + _delay(UNFINISHED_DELAYS, stalls)
            else:
                stalls = 0
    finally:
        watcher.stop()
        stop.set()
        poller.join(timeout=1)  # a daemon thread: a long-poll in flight is not waited out


def _poll(engine: Engine, stop: threading.Event, changed: threading.Event,
          wake: Callable[[], None]) -> None:
    """Long-poll the journal; wake the loop as soon as another device commits (`wake` ends
    its wait on the watcher at once)."""
    failures = 0
    while not stop.is_set():
        cursor = engine.state.cursor
        try:
            page = engine.session.api.changes(cursor, wait=LONG_POLL_SECONDS, limit=1)
            failures = 0
        except ClientError:
            failures += 1
            stop.wait(min(30.0, 0.5 * 2**failures))
            continue
        if page["changes"]:
            changed.set()
            wake()
            deadline = time.monotonic() + 5
            while engine.state.cursor == cursor and not stop.is_set() and time.monotonic() < deadline:
                stop.wait(0.02)


def pass_handler(engine: Engine) -> Handler:
    """`{"op": "sync", "folder": DIR or null, "allow_mass_delete": bool}`: a full pass now, as
    `tandem sync --once` asks of a running daemon (the one sync process of its TANDEM_HOME),
    answered when it is done with what it did. It waits for a pass in progress to end; its
    trees are the daemon's, already in memory, so nothing is loaded again."""

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        folder = request.get("folder")
        if folder is not None and (not isinstance(folder, str) or Path(folder) != engine.root):
            raise RequestError("other_folder", f"the running `tandem sync` syncs {engine.root}:"
                                               f" stop it to sync {folder}")
        stats = engine.transfers.stats
        with engine.busy:
            sent, received = stats.bytes_sent, stats.bytes_received
            allowed = engine.allow_mass_delete
            engine.allow_mass_delete = allowed or request.get("allow_mass_delete") is True
            try:
                report = engine.sync_once()
            except (ClientError, MassDeletePaused, RootUnavailable, IgnoreFileError) as exc:
                raise RequestError("sync_failed", str(exc)) from None
            finally:
                engine.allow_mass_delete = allowed
            return {"done": report.done, "bytes_sent": stats.bytes_sent - sent,
                    "bytes_received": stats.bytes_received - received,
                    "conflicts": report.conflicts, "problems": report.problems}

    return handle
