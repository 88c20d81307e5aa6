"""What `tandem status` and `tandem backup list` show of the backups: each folder's schedule,
last run and next run. Reads only the local backup settings, so a status stays quick."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tandem.backup.local import BackupHome
from tandem.backup.schedule import format_duration, next_run
from tandem.client.home import Home


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
