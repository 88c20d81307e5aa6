"""`tandem sync`: keep a folder and the cloud identical."""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import click

from tandem.backup.daemon import start_scheduler
from tandem.cli.common import friendly_errors, home
from tandem.cli.progress import SyncProgress
from tandem.client.account import Session
from tandem.client.home import Home
from tandem.sync.control import ControlError, ControlServer, Handler, RequestError
from tandem.sync.emblems import Emblems, EmblemUpdater
from tandem.sync.engine import Engine, MassDeletePaused, PassReport
from tandem.sync.ignore import IgnoreFileError
from tandem.sync.scanner import RootUnavailable
from tandem.sync.state import StateDB
from tandem.sync.status import serve_status

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
            _run_forever(engine, root)
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


def _run_forever(engine: Engine, root: Path) -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"Syncing {root} with {engine.session.device.server_url} (Ctrl-C to stop).")
    # File-manager emblems follow the states (where gio can set them; else nothing happens).
    emblems = EmblemUpdater(Emblems(root), engine.state, engine.live).start()
    control = _start_control(engine, emblems.poke)
    start_scheduler(engine.session, stop, lambda message: click.echo(message, err=True))
    try:
        engine.run_forever(stop, on_status=lambda message: click.echo(message, err=True))
    finally:
        if control is not None:
            control.stop()
        emblems.stop()


def _start_control(engine: Engine, changed: Callable[[], None]) -> ControlServer | None:
    """The control socket `tandem status` asks while this daemon runs (and the live status it
    reports). Another daemon answering there stops this one; a socket that cannot be made
    only costs the live view. `changed` is told after each free or offline."""
    try:
        control = serve_status(engine.session.home.path, engine.state, engine.session, engine.live)
        control.register("free", _on_demand_handler(engine.free, changed))
        control.register("offline", _on_demand_handler(engine.make_offline, changed))
        return control
    except ControlError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        click.echo(f"warning: no control socket ({exc}); `tandem status` reads the state"
                   " DB instead", err=True)
        return None


def _on_demand_handler(action: Callable[[list[str]], dict[str, str]],
                       changed: Callable[[], None]) -> Handler:
    """`{"op": "free" | "offline", "paths": [...]}`, run between this daemon's passes."""

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        paths = request.get("paths")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise RequestError("invalid_request", '"paths" is a list of relative paths')
        try:
            return {"problems": action(paths)}
        finally:
            changed()

    return handle
