"""`tandem status`: what is synced, what is waiting, what went wrong.

Read from the state DB as the last sync (or the running one) left it: the planner is run on
the stored trees, so "pending" means exactly what the next pass would do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from tandem.cli.common import friendly_errors, home, print_json
from tandem.client.account import Session
from tandem.sync import planner
from tandem.sync.model import normalize
from tandem.sync.remote import RemoteMirror
from tandem.sync.state import StateDB

_UPLOADS = (planner.Upload, planner.CreateRemoteFolder, planner.DeleteRemote, planner.MoveRemote)
_DOWNLOADS = (planner.Download, planner.CreateLocalFolder, planner.DeleteLocal, planner.MoveLocal,
              planner.SetLocalTime)


def _overview(state: StateDB, session: Session) -> dict[str, Any]:
    mirror = RemoteMirror(session.api, session.keys, state)
    remote, _ = mirror.tree()
    plan = planner.plan(state.synced_tree(), state.local_tree(), remote)
    pending: dict[str, str] = {}
    for op in plan.ops:
        if isinstance(op, _UPLOADS):
            pending[op.path] = "upload"
        elif isinstance(op, _DOWNLOADS):
            pending[op.path] = "download"
        elif isinstance(op, planner.ConflictCopy):
            pending[op.path] = "conflict"
    to_send = sum(op.local.size for op in plan.ops if isinstance(op, planner.Upload))
    to_fetch = sum(op.remote.size for op in plan.ops if isinstance(op, planner.Download))
    paused = state.get("mass_delete") or ""
    return {
        "server": session.device.server_url,
        "device": session.device.device_name,
        "folder": state.get("folder"),
        "connection": state.get("connection", "unknown (no sync has run yet)"),
        "pending_uploads": sum(1 for v in pending.values() if v == "upload"),
        "pending_downloads": sum(1 for v in pending.values() if v == "download"),
        "bytes_to_upload": to_send,
        "bytes_to_download": to_fetch,
        "conflicts": sorted(p for p in state.synced_tree() if "(conflicted copy, " in p),
        "errors": state.problems(),
        "waiting_for_user": json.loads(paused) if paused else None,
        "_pending": pending,
    }


def _path_state(info: dict[str, Any], state: StateDB, relative: str) -> dict[str, str]:
    if relative in info["errors"]:
        return {"state": "error", "reason": info["errors"][relative]}
    if relative in info["_pending"]:
        kind = info["_pending"][relative]
        return {"state": "conflict" if kind == "conflict" else "pending", "direction": kind}
    if "(conflicted copy, " in relative:
        return {"state": "conflict"}
    if relative in state.synced_tree():
        return {"state": "synced"}
    return {"state": "ignored", "reason": "not in the synced folder's tree (ignored or not synced yet)"}


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@friendly_errors
def status(paths: tuple[Path, ...], as_json: bool) -> None:
    """Show the connection, the sync folder and what is pending, or the state of PATHs."""
    where = home()
    session = Session.open(where)
    state = StateDB(where.path / "state.db")
    try:
        info = _overview(state, session)
        if paths:
            folder = Path(info["folder"] or ".")
            report = {}
            for path in paths:
                absolute = Path(os.path.abspath(path))
                if not absolute.is_relative_to(folder):
                    raise click.ClickException(f"{path} is not inside the sync folder {folder}")
                relative = "/".join(normalize(p) for p in absolute.relative_to(folder).parts)
                report[str(path)] = _path_state(info, state, relative)
            if as_json:
                print_json({"paths": report})
            else:
                for path_text, item in report.items():
                    detail = item.get("reason") or item.get("direction") or ""
                    click.echo(f"{item['state']:<12} {path_text}" + (f"  ({detail})" if detail else ""))
            return
        public = {k: v for k, v in info.items() if not k.startswith("_")}
        if as_json:
            print_json(public)
            return
        click.echo(f"Server:     {public['server']} (this device: {public['device']})")
        click.echo(f"Folder:     {public['folder'] or '-'}")
        click.echo(f"Connection: {public['connection']}")
        click.echo(f"Pending:    {public['pending_uploads']} upload(s), {public['pending_downloads']}"
                   f" download(s), {public['bytes_to_upload'] + public['bytes_to_download']} bytes to go")
        click.echo(f"Conflicts:  {len(public['conflicts'])}")
        click.echo(f"Errors:     {len(public['errors'])}")
        for path_text, problem in sorted(public["errors"].items()):
            click.echo(f"  {path_text}: {problem}")
        if public["waiting_for_user"]:
            paused = public["waiting_for_user"]
            click.echo(f"Waiting:    a sync would delete {paused['deletions']} of {paused['total']}"
                       " files; check, then run `tandem sync --allow-mass-delete`")
    finally:
        state.close()
        session.close()
