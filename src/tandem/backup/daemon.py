"""Scheduled backups inside `tandem sync` (what `tandem status` shows of them: `overview.py`).

A thread looks once a minute (and at start, so a schedule missed while nothing ran is caught
up) for backups that are due, and runs them one after another with the daemon's session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tandem.backup.local import BackupHome
from tandem.backup.run import describe, run_backup
from tandem.backup.schedule import is_due
from tandem.client.account import Session
from tandem.client.api import ClientError
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
