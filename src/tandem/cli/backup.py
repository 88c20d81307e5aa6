"""`tandem backup`: folders copied to the cloud upload-only, as snapshots, and restored.

Deleting the originals after a backup deletes nothing in the cloud: a snapshot only ever
records what was there. Any device of the account lists and restores every device's backups
(`list --all-devices`, `restore --device`), so losing the computer loses nothing. Progress
shows on a terminal; errors are one line and exit 1.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import click

from tandem.backup import catalog
from tandem.backup.document import check_path
from tandem.backup.local import Backup, BackupError, BackupHome
from tandem.backup.overview import overview, when
from tandem.backup.restore import RestoreProgress, choose, restore
from tandem.backup.run import Counters, describe, run_backup
from tandem.backup.schedule import format_duration, parse_duration
from tandem.cli.common import friendly_errors, home, print_json
from tandem.cli.progress import live_line as _live
from tandem.cli.progress import rate_and_eta
from tandem.cli.sizes import human_size
from tandem.client.account import Session
from tandem.client.api import ClientError
from tandem.client.transfer import Transfers
from tandem.sync.ignore import IgnoreFileError
from tandem.sync.model import normalize


def _every(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    try:
        return None if value is None else parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group()
def backup() -> None:
    """Back folders up to the cloud (upload only, as snapshots), and restore them."""


@backup.command("add")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--every", callback=_every, metavar="DURATION",
              help="Run while `tandem sync` runs, e.g. 1h, 6h, 1d (default: by hand).")
@click.option("--keep-within", type=click.IntRange(min=0), default=None, metavar="DAYS",
              help="Keep every snapshot younger than this (default 7).")
@click.option("--keep-daily", type=click.IntRange(min=0), default=None, metavar="DAYS",
              help="Keep the newest snapshot of each day younger than this (default 30).")
@click.option("--keep-monthly", type=click.IntRange(min=0), default=None, metavar="MONTHS",
              help="Keep the newest snapshot of each of the last MONTHS months (default: all).")
@friendly_errors
def add(folder: Path, every: int | None, keep_within: int | None, keep_daily: int | None,
        keep_monthly: int | None) -> None:
    """Back FOLDER up from this device (again, if it was removed)."""
    where = home()
    if where.linked() is None:
        raise ClientError("this device is not linked: run `tandem signup` or `tandem login` first")
    local = BackupHome(where)
    backups = local.all()
    resolved = str(folder.expanduser().resolve())
    entry = next((b for b in backups if b.folder == resolved), None)
    if entry is None:
        entry = Backup(resolved)
        backups.append(entry)
    entry.removed = False
    entry.every = every if every is not None else entry.every
    keep = {"within_days": keep_within, "daily_days": keep_daily, "monthly": keep_monthly}
    entry.keep = {**entry.keep, **{k: v for k, v in keep.items() if v is not None}}
    local.save_all(backups)
    schedule = (f"every {format_duration(entry.every)} while `tandem sync` runs" if entry.every
                else "by hand (`tandem backup run`)")
    policy = entry.policy
    monthly = "every month" if policy.monthly is None else f"{policy.monthly} month(s)"
    click.echo(f"Backing up {resolved} {schedule}; keeping all snapshots of {policy.within_days}"
               f" day(s), one a day for {policy.daily_days} days, one a month for {monthly}.")


@backup.command("run")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@friendly_errors
def run(folder: Path | None) -> None:
    """Back up FOLDER now (default: every folder backed up from this device)."""
    where = home()
    local = BackupHome(where)
    chosen = [local.get(folder)] if folder else [b for b in local.all() if not b.removed]
    if not chosen:
        raise BackupError("nothing to back up: add a folder with `tandem backup add DIR`")
    session = Session.open(where)
    failed = 0
    try:
        for entry in chosen:
            failed += not _run_one(session, local, entry)
    finally:
        session.close()
    if failed:
        raise SystemExit(1)


def _run_one(session: Session, local: BackupHome, entry: Backup) -> bool:
    """One folder's run; True if it saved a complete snapshot."""
    counters = Counters()
    start = time.monotonic()

    def line() -> str:
        total = counters.bytes_to_read
        of = f" of {human_size(total)}" if total is not None else ""
        return (f"Backing up {entry.folder}: {counters.files_read} file(s),"
                f" {human_size(counters.bytes_read)}{of} read"
                f" {rate_and_eta(counters.bytes_read, total, start)},"
                f" {human_size(counters.transfers.bytes_sent)} sent")

    try:
        with _live(line):
            report = run_backup(session, local, entry, counters)
    except (ClientError, OSError, IgnoreFileError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        click.echo(f"Error: backup of {entry.folder} failed: {detail}", err=True)
        return False
    click.echo(f"{entry.folder}: {describe(report)}")
    for path, problem in sorted(report.problems.items()):
        click.echo(f"  {path}: {problem}", err=True)
    if report.problems:
        click.echo(f"Error: {len(report.problems)} path(s) of {entry.folder} not backed up as"
                   " they are now (see above); the snapshot holds the rest", err=True)
    return not report.problems


@backup.command("list")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--all-devices", is_flag=True,
              help="Every device's backups (FOLDER as that device had it), to restore here.")
@friendly_errors
def list_(folder: Path | None, as_json: bool, all_devices: bool) -> None:
    """Show backed-up folders, their schedules and snapshots."""
    if all_devices:
        _list_all_devices(folder, as_json)
        return
    where = home()
    local = BackupHome(where)
    wanted = {local.get(folder).folder} if folder else None
    rows = [row for row in overview(where) if wanted is None or row["folder"] in wanted]
    by_folder = {b.folder: b for b in local.all()}
    session = Session.open(where)
    try:
        for row in rows:
            row["id"] = by_folder[row["folder"]].id
            row["snapshots"] = [_snapshot_row(s) for s in session.api.snapshots(row["id"])]
    finally:
        session.close()
    if as_json:
        print_json({"backups": rows})
        return
    if not rows:
        click.echo("No backups from this device: add one with `tandem backup add DIR`"
                   " (other devices' backups: `tandem backup list --all-devices`).")
    for row in rows:
        schedule = f"every {format_duration(row['every'])}" if row["every"] else "by hand"
        state = "removed, snapshots kept" if row["removed"] else (
            f"{schedule}, last run {when(row['last_run'])}"
            + (f", next {when(row['next_run'])}" if row["next_run"] else ""))
        click.echo(f"{row['folder']} ({state})")
        for snap in row["snapshots"]:
            click.echo(f"  {snap['id'][:8]}  {snap['time']}  {snap['files']:>7} file(s)"
                       f"  {human_size(snap['size'])}")


def _list_all_devices(folder: Path | None, as_json: bool) -> None:
    """Every backup of the account with a snapshot, whichever device made it."""
    session = Session.open(home())
    try:
        with Transfers(session.api, session.keys) as transfers:
            found = catalog.account_backups(transfers, session.device.device_id)
            if folder is not None:
                paths = catalog.spellings(folder)
                found = [b for b in found if b.folder in paths]
                if not found:
                    raise BackupError(f"no device has a backup of {folder}: see"
                                      " `tandem backup list --all-devices`")
            rows = [{"id": b.id, "folder": b.folder, "device_id": b.device_id,
                     "device_name": b.device_name, "this_device": b.this_device,
                     "newest_taken_at_ns": b.newest_taken_at_ns,
                     "snapshots": [_snapshot_row(s) for s in session.api.snapshots(b.id)]}
                    for b in found]
    finally:
        session.close()
    if as_json:
        print_json({"backups": rows})
        return
    if not rows:
        click.echo("No backups on any device of this account.")
    for row, entry in zip(rows, found, strict=True):
        click.echo(entry.describe())
        for snap in row["snapshots"]:
            click.echo(f"  {snap['id'][:8]}  {snap['time']}  {snap['files']:>7} file(s)"
                       f"  {human_size(snap['size'])}")


def _snapshot_row(raw: dict[str, Any]) -> dict[str, Any]:
    taken = raw["taken_at_ns"] / 1e9
    return {"id": raw["id"], "taken_at_ns": raw["taken_at_ns"],
            "time": dt.datetime.fromtimestamp(taken).strftime("%Y-%m-%d %H:%M:%S"),
            "files": raw["files"], "size": raw["size"], "device_id": raw["device_id"]}


@backup.command("remove")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@friendly_errors
def remove(folder: Path) -> None:
    """Stop backing FOLDER up; its snapshots stay in the cloud, restorable."""
    local = BackupHome(home())
    entry = local.get(folder)
    backups = local.all()
    for item in backups:
        item.removed = item.removed or item.id == entry.id
    local.save_all(backups)
    local.drop_cache(entry.id)
    click.echo(f"Stopped backing up {entry.folder}; its snapshots stay in the cloud"
               " (`tandem backup restore` still reads them).")


@backup.command("restore")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--snapshot", "snapshot_id", default=None, metavar="ID",
              help="The snapshot (an id prefix, or 'latest'); default: the newest holding --path.")
@click.option("--path", "subpath", default=None, metavar="SUBPATH",
              help="Restore only this file or folder of FOLDER.")
@click.option("--to", "dest", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The folder to restore into.")
@click.option("--overwrite", is_flag=True, help="Replace files that exist at the destination.")
@click.option("--device", default=None, metavar="NAME",
              help="The device that backed FOLDER up (its name or id prefix); default: this"
              " device's backup of FOLDER, else the only device's that has one.")
@friendly_errors
def restore_command(folder: Path, snapshot_id: str | None, subpath: str | None, dest: Path,
                    overwrite: bool, device: str | None) -> None:
    """Restore FOLDER (or --path inside it) from a snapshot into --to; FOLDER as the device
    that backed it up had it."""
    where = home()
    own = BackupHome(where).find(folder) if device is None else None
    session = Session.open(where)
    try:
        with Transfers(session.api, session.keys) as transfers:
            if own is not None and snapshot_id in (None, "latest"):
                backup_id, source_folder, origin = own.id, own.folder, ""
            else:
                # Another device's backup, or a snapshot this device's backup may not hold.
                found = catalog.find(
                    catalog.account_backups(transfers, session.device.device_id), folder,
                    device, snapshot_id, lambda b: [s["id"] for s in session.api.snapshots(b)])
                backup_id, source_folder = found.id, str(found.folder)
                origin = "" if found.this_device else f" of {found.folder} on {found.device_name}"
            relative = _relative(source_folder, subpath) if subpath else ""
            snapshot, selection = choose(transfers, backup_id, source_folder, snapshot_id, relative)
            progress = RestoreProgress()
            start = time.monotonic()

            def line() -> str:
                return (f"Restoring: {progress.files} file(s), {human_size(progress.bytes_done)}"
                        f" of {human_size(progress.bytes_total)}"
                        f" {rate_and_eta(progress.bytes_done, progress.bytes_total, start)}")

            with _live(line):
                restore(transfers, selection, dest, overwrite, progress)
    finally:
        session.close()
    taken = dt.datetime.fromtimestamp(snapshot["taken_at_ns"] / 1e9).strftime("%Y-%m-%d %H:%M")
    click.echo(f"Restored {progress.files} file(s), {progress.bytes_total} bytes, from snapshot"
               f" {snapshot['id'][:8]} ({taken}){origin} to {dest}.")


def _relative(folder: str, subpath: str) -> str:
    """--path as a path inside the backed-up folder: relative to it, or absolute within it."""
    absolute = Path(os.path.abspath(Path(folder, subpath)))
    if not absolute.is_relative_to(folder):
        raise BackupError(f"{subpath} is not inside {folder}")
    relative = "/".join(normalize(part) for part in absolute.relative_to(folder).parts)
    return check_path(relative) if relative else ""

