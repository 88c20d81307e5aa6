"""`tandem check`: compare the folder, the state DB and the cloud; report every discrepancy.

Checking changes nothing and may run beside a `tandem sync` daemon. `--repair` re-plans what
was found and runs one pass for it: through the daemon's control socket when one runs (so it
never races a pass), else holding the sync lock; then it checks again.
"""

from __future__ import annotations

from pathlib import Path

import click

from tandem.cli.common import friendly_errors, home, print_json
from tandem.cli.ondemand import tree_paths
from tandem.cli.sync import acquire_lock, open_state
from tandem.client.account import Session
from tandem.client.home import Home
from tandem.sync import check
from tandem.sync.check_io import repair, run_check
from tandem.sync.control import ask
from tandem.sync.engine import Engine, MassDeletePaused
from tandem.sync.ignore import IgnoreFileError
from tandem.sync.scanner import RootUnavailable
from tandem.sync.state import StateDB

#: A repair runs a pass, which may take long: the daemon answers when it is done.
_DAEMON_TIMEOUT = 24 * 3600.0


@click.command(name="check")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--repair", is_flag=True,
              help="Re-plan what is found and run one sync pass for it (deletes nothing).")
@friendly_errors
def check_command(paths: tuple[Path, ...], as_json: bool, repair: bool) -> None:
    """Compare the folder, the local state and the cloud (only PATHs, if given); exit 0 when
    consistent. Local changes not yet uploaded and cloud changes not yet fetched are pending,
    not discrepancies."""
    where = home()
    session = Session.open(where)
    state = open_state(where)
    try:
        remembered = state.get("folder")
        if not remembered:
            raise click.ClickException("no sync folder yet: run `tandem sync` first")
        root = Path(remembered)
        wanted = tree_paths(root, state, paths) if paths else [""]
        try:
            result = run_check(session.api, session.keys, state, root, wanted)
            repaired: dict[str, str] = {}
            if repair and result.findings:
                actions = [(f.path, f.repair) for f in result.findings if f.repair]
                problems = _repair(where, session, state, root, actions)
                repaired = dict(actions)
                result = run_check(session.api, session.keys, state, root, wanted)
                for path, problem in problems.items():
                    click.echo(f"tandem: {path or '.'}: {problem}", err=True)
        except (RootUnavailable, IgnoreFileError, MassDeletePaused) as exc:
            raise click.ClickException(str(exc)) from None
    finally:
        state.close()
        session.close()
    _report(result, repaired, as_json)


def _repair(where: Home, session: Session, state: StateDB, root: Path,
            actions: list[tuple[str, str]]) -> dict[str, str]:
    reply = ask(where.path, {"op": "repair", "actions": [list(a) for a in actions]},
                timeout=_DAEMON_TIMEOUT)
    if reply is not None:
        if "error" in reply:
            raise click.ClickException(str(reply["error"].get("message", reply["error"])))
        return dict(reply.get("problems", {}))
    lock = acquire_lock(where)
    engine = Engine(session, root, state)
    try:
        return repair(engine, actions)
    finally:
        engine.close()
        lock.close()


def _report(result: check.Result, repaired: dict[str, str], as_json: bool) -> None:
    findings = result.findings
    if as_json:
        print_json({"consistent": not findings,
                    "findings": [{"path": f.path, "kind": f.kind, "message": f.message,
                                  "repair": f.repair or None} for f in findings],
                    "pending": result.pending, "repaired": repaired})
    else:
        for path, action in sorted(repaired.items()):
            click.echo(f"repaired ({action}): {path or '.'}")
        for finding in findings:
            hint = "" if finding.repair else " (cannot be repaired from this device)"
            click.echo(f"{finding.path or '.'}: {finding.message}{hint}")
        waiting = len(result.pending)
        if waiting:
            click.echo(f"{waiting} path{'s' if waiting != 1 else ''} waiting for the next sync"
                       " (not discrepancies).")
        if not findings:
            click.echo("Consistent: the folder, the local state and the cloud agree.")
    if findings:
        count = len(findings)
        more = "" if repaired else "; `tandem check --repair` re-plans them"
        click.echo(f"tandem: {count} discrepanc{'ies' if count != 1 else 'y'} found{more}",
                   err=True)
        raise SystemExit(1)

