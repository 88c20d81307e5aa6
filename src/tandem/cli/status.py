"""`tandem status`: what is synced, what is waiting, what went wrong.

When `tandem sync` runs as a daemon it answers on its control socket (live: what it is doing
now, files in flight, rate) and nothing here touches the state DB it is writing. Otherwise the
state DB is read as the last sync left it. Either way the planner is run on the stored trees
(`tandem.sync.status.status_overview`), so "pending" means exactly what the next pass would do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tandem.cli.common import friendly_errors, home, print_json
from tandem.cli.sizes import human_size
from tandem.client.home import Home
from tandem.sync.control import ask

if TYPE_CHECKING:
    from tandem.client.account import Session
    from tandem.sync.state import StateDB


def _from_daemon(reply: dict[str, Any] | None) -> dict[str, Any] | None:
    """A daemon's answer, or None to read the state DB instead (no daemon, or it failed)."""
    return reply if reply is not None and "error" not in reply else None


def _relative(folder: Path, path: Path) -> str:
    from tandem.sync.model import normalize  # (blake3: only for the paths asked about)

    absolute = Path(os.path.abspath(path))
    if not absolute.is_relative_to(folder):
        raise click.ClickException(f"{path} is not inside the sync folder {folder}")
    return "/".join(normalize(p) for p in absolute.relative_to(folder).parts)


def _path_report(where: Home, paths: tuple[Path, ...]) -> dict[str, dict[str, Any]]:
    folder_reply = _from_daemon(ask(where.path, {"op": "status", "paths": []}))
    if folder_reply is not None:
        folder = Path(folder_reply["folder"] or ".")
        relative = {str(path): _relative(folder, path) for path in paths}
        reply = _from_daemon(ask(where.path, {"op": "status", "paths": sorted(set(relative.values()))}))
        if reply is not None:
            return {text: reply["paths"][rel] for text, rel in relative.items()}
    from tandem.sync.status import path_state, status_overview

    with _stored(where) as (state, session):
        info = status_overview(state, session)
        folder = Path(info["folder"] or ".")
        return {str(path): path_state(info, _relative(folder, path)) for path in paths}


def _overview(where: Home) -> dict[str, Any]:
    reply = _from_daemon(ask(where.path, {"op": "status"}))
    if reply is not None:
        return reply
    from tandem.sync.status import public, status_overview

    with _stored(where) as (state, session):
        return {**public(status_overview(state, session)), "daemon": False}


@contextmanager
def _stored(where: Home) -> Iterator[tuple[StateDB, Session]]:
    """The state DB and the session, for when no daemon answers (imported only then: with a
    daemon running, a status asks it and loads neither the client library nor the DB)."""
    from tandem.client.account import Session
    from tandem.sync.state import StateDB

    session = Session.open(where)
    try:
        state = StateDB(where.path / "state.db")
        try:
            yield state, session
        finally:
            state.close()
    finally:
        session.close()


def _now_line(live: dict[str, Any]) -> str:
    text = str(live["activity"])
    if live["files_in_flight"]:
        text += (f", {live['files_in_flight']} file(s) in flight"
                 f" ({human_size(live['bytes_done'])} of {human_size(live['bytes_total'])})")
    if live["rate"] or live["files_in_flight"]:
        text += f", {human_size(live['rate'])}/s"
    return text


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@friendly_errors
def status(paths: tuple[Path, ...], as_json: bool) -> None:
    """Show the connection, the sync folder and what is pending, or the state of PATHs."""
    where = home()
    if paths:
        report = _path_report(where, paths)
        if as_json:
            print_json({"paths": report})
            return
        for path_text, item in report.items():
            if item["state"] == "syncing":
                detail = f"{item['bytes_done']} of {item['bytes_total']} bytes"
            else:
                detail = item.get("reason") or item.get("direction") or ""
            click.echo(f"{item['state']:<12} {path_text}" + (f"  ({detail})" if detail else ""))
        return
    backups = where.backups_folder.exists()
    if backups:  # (backups' settings cost a tenth of a quick status to import: only if any)
        from tandem.backup.overview import overview, status_lines
    info = {**_overview(where), "backups": overview(where) if backups else []}
    if as_json:
        print_json(info)
        return
    click.echo(f"Server:     {info['server']} (this device: {info['device']})")
    click.echo(f"Folder:     {info['folder'] or '-'}")
    click.echo(f"Connection: {info['connection']}")
    if info.get("live"):
        click.echo(f"Now:        {_now_line(info['live'])}")
    click.echo(f"Pending:    {info['pending_uploads']} upload(s), {info['pending_downloads']}"
               f" download(s), {info['bytes_to_upload'] + info['bytes_to_download']} bytes to go")
    click.echo(f"Conflicts:  {len(info['conflicts'])}")
    click.echo(f"Errors:     {len(info['errors'])}")
    for path_text, problem in sorted(info["errors"].items()):
        click.echo(f"  {path_text}: {problem}")
    if info["waiting_for_user"]:
        paused = info["waiting_for_user"]
        click.echo(f"Waiting:    a sync would delete {paused['deletions']} of {paused['total']}"
                   " files; check, then run `tandem sync --allow-mass-delete`")
    for line in status_lines(where) if backups else []:
        click.echo(line)
