"""`tandem free`, `tandem offline`, `tandem open`: files on demand from the command line.

With a `tandem sync` daemon running they go through its control socket, so they never race
its passes; without one they take the same lock the daemon would hold and act directly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from tandem.cli.common import friendly_errors, home
from tandem.cli.sync import acquire_lock, open_state
from tandem.client.account import Session
from tandem.desktop.install import ensure_desktop_integration
from tandem.sync.control import ask
from tandem.sync.engine import Engine
from tandem.sync.model import normalize
from tandem.sync.state import StateDB

#: A free or offline of a big folder may take long: the daemon answers when it is done.
_DAEMON_TIMEOUT = 24 * 3600.0


def tree_paths(folder: Path, state: StateDB, paths: tuple[Path, ...]) -> list[str]:
    """Paths as the trees know them (relative, NFC); a placeholder stands for its file."""
    by_placeholder = {r.placeholder: p for p, r in state.placeholders().items()}
    found = []
    for path in paths:
        absolute = Path(os.path.abspath(path))
        if not absolute.is_relative_to(folder):
            raise click.ClickException(f"{path} is not inside the sync folder {folder}")
        relative = "/".join(normalize(part) for part in absolute.relative_to(folder).parts)
        found.append(by_placeholder.get(relative, relative))
    return found


def _run(op: str, paths: tuple[Path, ...]) -> tuple[Path, list[str], dict[str, str]]:
    where = home()
    state = open_state(where)
    try:
        remembered = state.get("folder")
        if not remembered:
            raise click.ClickException("no sync folder yet: run `tandem sync` first")
        folder = Path(remembered)
        wanted = tree_paths(folder, state, paths)
        reply = ask(where.path, {"op": op, "paths": wanted}, timeout=_DAEMON_TIMEOUT)
        if reply is not None:
            if "error" in reply:
                raise click.ClickException(str(reply["error"].get("message", reply["error"])))
            return folder, wanted, dict(reply.get("problems", {}))
        session = Session.open(where)
        lock = acquire_lock(where)
        engine = Engine(session, folder, state)
        try:
            problems = engine.free(wanted) if op == "free" else engine.make_offline(wanted)
        finally:
            engine.close()
            session.close()
            lock.close()
        return folder, wanted, problems
    finally:
        state.close()


def _report(done: str, wanted: list[str], problems: dict[str, str]) -> None:
    for path, problem in sorted(problems.items()):
        click.echo(f"tandem: {path or '.'}: {problem}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"{done}: {', '.join(p or '.' for p in wanted)}")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@friendly_errors
def free(paths: tuple[Path, ...]) -> None:
    """Free up space: keep PATHs in the cloud only, with a placeholder in the folder."""
    _, wanted, problems = _run("free", paths)
    _report("Online-only now", wanted, problems)
    ensure_desktop_integration(os.environ, shutil.which("tandem") or sys.argv[0])


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@friendly_errors
def offline(paths: tuple[Path, ...]) -> None:
    """Make PATHs available offline: download them and keep them (folders: new files too)."""
    _, wanted, problems = _run("offline", paths)
    _report("Available offline", wanted, problems)


@click.command(name="open")
@click.argument("path", type=click.Path(path_type=Path))
@friendly_errors
def open_file(path: Path) -> None:
    """Make a placeholder available offline, then open it with the default application."""
    folder, wanted, problems = _run("offline", (path,))
    _report("Available offline", wanted, problems)
    target = folder / wanted[0]
    opener = shutil.which("xdg-open")
    if opener is None:
        click.echo(f"No desktop opener (xdg-open) here: the file is at {target}")
        return
    subprocess.Popen([opener, os.fspath(target)], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

