"""`tandem sync`: keep a folder and the cloud identical."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import IO

import click

from tandem.cli.common import friendly_errors, home
from tandem.client.account import Session
from tandem.client.home import Home
from tandem.sync.engine import Engine, MassDeletePaused, PassReport
from tandem.sync.ignore import IgnoreFileError
from tandem.sync.scanner import RootUnavailable
from tandem.sync.state import StateDB

DEFAULT_FOLDER = Path("~/Tandem")


def acquire_lock(where: Home) -> IO[str]:
    """One sync process per TANDEM_HOME: an exclusive lock held while it runs."""
    where.ensure()
    handle = open(where.path / "sync.lock", "a+")  # noqa: SIM115 (held for the process' life)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        other = handle.read().strip() or "?"
        handle.close()
        raise click.ClickException(
            f"another `tandem sync` is already running for {where.path} (pid {other})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def open_state(where: Home) -> StateDB:
    return StateDB(where.path / "state.db")


def choose_folder(state: StateDB, folder: Path | None) -> Path:
    """--folder is remembered; a different folder than last time starts a fresh merge."""
    remembered = state.get("folder")
    chosen = (folder or (Path(remembered) if remembered else DEFAULT_FOLDER)).expanduser().resolve()
    if remembered and Path(remembered) != chosen:
        state.forget_synced_subtree("")
        state.save_local(state.local_tree(), {})
        state.put("folder_marker", "")
    if not remembered and not chosen.exists() and folder is None:
        chosen.mkdir(parents=True)  # the default folder is made on first use, as Dropbox does
    state.put("folder", str(chosen))
    return chosen


def _summary(report: PassReport, engine: Engine) -> str:
    stats = engine.transfers.stats
    parts = [f"{report.done} change{'s' if report.done != 1 else ''} applied",
             f"{stats.bytes_sent} bytes sent", f"{stats.bytes_received} bytes received"]
    if report.conflicts:
        parts.append(f"{len(report.conflicts)} conflict(s) kept as conflicted copies")
    if report.problems:
        parts.append(f"{len(report.problems)} problem(s)")
    return "Sync done: " + ", ".join(parts) + "."


@click.command()
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The sync folder (remembered; default ~/Tandem).")
@click.option("--once", is_flag=True, help="One full pass both ways, then exit.")
@click.option("--allow-mass-delete", is_flag=True,
              help="Let a pass delete more than half of the synced files.")
@friendly_errors
def sync(folder: Path | None, once: bool, allow_mass_delete: bool) -> None:
    """Keep a folder identical to the cloud, both ways."""
    where = home()
    session = Session.open(where)
    lock = acquire_lock(where)
    state = open_state(where)
    root = choose_folder(state, folder)
    engine = Engine(session, root, state, allow_mass_delete)
    try:
        if once:
            _run_once(engine)
        else:
            from tandem.cli.daemon import run_forever  # (its watcher, socket and threads)

            run_forever(engine, root)
    except RootUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    except (MassDeletePaused, IgnoreFileError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.close()
        state.close()
        session.close()
        lock.close()


def _run_once(engine: Engine) -> None:
    if sys.stdout.isatty():
        from tandem.cli.progress import SyncProgress  # rich: only on a terminal

        progress = SyncProgress(engine.transfers.stats)
        engine.on_round = progress.on_round
        with progress:
            report = engine.sync_once()
    else:
        report = engine.sync_once()
    click.echo(_summary(report, engine))
    for path, problem in sorted(report.problems.items()):
        click.echo(f"  {path}: {problem}", err=True)
    if report.problems:
        raise SystemExit(1)
