"""`tandem sync`: keep a folder and the cloud identical."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from tandem.cli.common import friendly_errors, home
from tandem.client.home import Home
from tandem.sync.control import ask
from tandem.sync.state import StateDB

if TYPE_CHECKING:
    from tandem.sync.engine import Engine

DEFAULT_FOLDER = Path("~/Tandem")
#: A pass through the running daemon may be a long one (an initial sync): it answers when done.
_DAEMON_TIMEOUT = 24 * 3600.0


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


def _report(done: int, sent: int, received: int, conflicts: list[str],
            problems: dict[str, str]) -> None:
    """The pass's summary line, then each problem on stderr (exit 1 if there are any)."""
    parts = [f"{done} change{'s' if done != 1 else ''} applied", f"{sent} bytes sent",
             f"{received} bytes received"]
    if conflicts:
        parts.append(f"{len(conflicts)} conflict(s) kept as conflicted copies")
    if problems:
        parts.append(f"{len(problems)} problem(s)")
    click.echo("Sync done: " + ", ".join(parts) + ".")
    for path, problem in sorted(problems.items()):
        click.echo(f"  {path}: {problem}", err=True)
    if problems:
        raise SystemExit(1)


@click.command()
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The sync folder (remembered; default ~/Tandem).")
@click.option("--once", is_flag=True,
              help="One full pass both ways, then exit (through the running daemon, if any).")
@click.option("--allow-mass-delete", is_flag=True,
              help="Let a pass delete more than half of the synced files.")
@friendly_errors
def sync(folder: Path | None, once: bool, allow_mass_delete: bool) -> None:
    """Keep a folder identical to the cloud, both ways."""
    where = home()
    if once:
        reply = ask(where.path, {"op": "sync", "allow_mass_delete": allow_mass_delete,
                                 "folder": None if folder is None else os.fspath(
                                     folder.expanduser().resolve())}, timeout=_DAEMON_TIMEOUT)
        if reply is not None:  # the running daemon made the pass
            _report_daemon_pass(reply)
            return
    from tandem.client.account import Session
    from tandem.sync.engine import Engine, MassDeletePaused
    from tandem.sync.ignore import IgnoreFileError
    from tandem.sync.scanner import RootUnavailable

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
    except (RootUnavailable, MassDeletePaused, IgnoreFileError) as exc:
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
    stats = engine.transfers.stats
    _report(report.done, stats.bytes_sent, stats.bytes_received, report.conflicts,
            report.problems)


def _report_daemon_pass(reply: dict[str, Any]) -> None:
    """`tandem sync --once` while a daemon runs: it asked the daemon for a full pass (one sync
    process per TANDEM_HOME), and reports it as its own."""
    if "error" in reply:
        raise click.ClickException(str(reply["error"].get("message", reply["error"])))
    _report(int(reply.get("done", 0)), int(reply.get("bytes_sent", 0)),
            int(reply.get("bytes_received", 0)), list(reply.get("conflicts", [])),
            dict(reply.get("problems", {})))
