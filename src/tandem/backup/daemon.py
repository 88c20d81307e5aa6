"""Scheduled backups inside `tandem sync`, and the lines `tandem status` shows about them.

A thread looks once a minute (and at start, so a schedule missed while nothing ran is caught
up) for backups that are due, and runs them one after another with the daemon's session.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

from tandem.backup.local import BackupHome
from tandem.backup.run import describe, run_backup
from tandem.backup.schedule import format_duration, is_due, next_run
from tandem.client.account import Session
from tandem.client.api import ClientError
from tandem.client.home import Home
from tandem.sync.ignore import IgnoreFileError

CHECK_SECONDS = 60.0


def start_scheduler(session: Session, stop: threading.Event,
                    say: Callable[[str], None]) -> threading.Thread:
    """Run due backups until `stop` is set (a run in progress stops at its next file)."""
    thread = threading.Thread(target=_loop, args=(session, stop, say), daemon=True,
                              name="tandem-backups")
    thread.start()
    return thread


def _loop(session: Session, stop: threading.Event, say: Callable[[str], None]) -> None:
    local = BackupHome(session.home)
    while not stop.is_set():
        try:
            due = [b for b in local.all() if not b.removed
                   and is_due(b.every, local.last_run(b.id).started, b.added_at, time.time())]
        except ClientError as exc:
            say(f"backups: {exc}")
            due = []
        for backup in due:
            if stop.is_set():
                break
            try:
                say(f"Backup of {backup.folder}: " + describe(run_backup(session, local, backup,
                                                                         cancel=stop)))
            except (ClientError, OSError, IgnoreFileError) as exc:
                say(f"Backup of {backup.folder} failed: {exc}")
        stop.wait(CHECK_SECONDS)


def overview(home: Home) -> list[dict[str, Any]]:
    """Each backup's schedule, last run and next run (times in seconds, None if none)."""
    local = BackupHome(home)
    rows = []
    for backup in local.all():
        last = local.last_run(backup.id)
        rows.append({"folder": backup.folder, "every": backup.every, "removed": backup.removed,
                     "last_run": last.started, "last_snapshot": last.snapshot,
                     "last_problems": last.problems, "last_error": last.error,
                     "next_run": None if backup.removed
                     else next_run(backup.every, last.started, backup.added_at)})
    return rows


def when(seconds: float | None) -> str:
    return dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M") if seconds else "never"


def status_lines(home: Home) -> list[str]:
    """`tandem status`'s backup section: one line per backed-up folder (none: no lines)."""
    lines = []
    for row in overview(home):
        if row["removed"]:
            continue
        outcome = ("" if row["last_run"] is None else f" (failed: {row['last_error']})"
                   if row["last_error"] else f" ({row['last_problems']} problem(s))"
                   if row["last_problems"] else " (ok)")
        schedule = (f"next {when(row['next_run'])}, every {format_duration(row['every'])}"
                    if row["every"] else "run by hand")
        lines.append(f"  {row['folder']}: last {when(row['last_run'])}{outcome}; {schedule}")
    return ["Backups:", *lines] if lines else []
