"""`tandem sync` without `--once`: the daemon's loop with its companions (the control socket
that `status`, `free` and `offline` talk to, file-manager emblems, due backups). Imported only
when a daemon starts, so one-shot commands do not pay for it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tandem.backup.daemon import start_scheduler
from tandem.sync import daemon
from tandem.sync.check_io import repair_handler
from tandem.sync.control import ControlError, ControlServer, Handler, RequestError
from tandem.sync.emblems import Emblems, EmblemUpdater
from tandem.sync.engine import Engine
from tandem.sync.status import Overview, serve_status


def run_forever(engine: Engine, root: Path) -> None:
    """Sync as changes happen until SIGINT or SIGTERM."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"Syncing {root} with {engine.session.device.server_url} (Ctrl-C to stop).")
    # File-manager emblems follow the states (where gio can set them; else nothing happens).
    emblems = EmblemUpdater(Emblems(root), engine.state, engine.live).start()
    # What `tandem status` shows, kept current while idle so that asking costs nothing.
    overview = Overview(engine.state, engine.session, engine.mirror, engine.busy)
    control = _start_control(engine, overview, emblems.poke)
    start_scheduler(engine.session, stop, lambda message: click.echo(message, err=True))
    try:
        daemon.run_forever(engine, stop, on_status=lambda message: click.echo(message, err=True),
                           on_idle=overview.warm)
    finally:
        if control is not None:
            control.stop()
        emblems.stop()


def _start_control(engine: Engine, overview: Overview,
                   changed: Callable[[], None]) -> ControlServer | None:
    """The control socket `tandem status` asks while this daemon runs (and the live status it
    reports). Another daemon answering there stops this one; a socket that cannot be made
    only costs the live view. `changed` is told after each free or offline."""
    try:
        control = serve_status(engine.session.home.path, engine.state, engine.session, engine.live,
                               overview)
        control.register("free", _on_demand_handler(engine.free, changed))
        control.register("offline", _on_demand_handler(engine.make_offline, changed))
        control.register("repair", repair_handler(engine))
        control.register("sync", daemon.pass_handler(engine))
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
