"""The `tandem` entry point: one click group, a module per command family.

Commands are imported when used: `tandem sync --once` should not pay for the server, rich
progress bars or backups (half a second of imports on a small machine, on every invocation).
"""

from __future__ import annotations

import importlib

import click

from tandem import __version__
from tandem.memory import tune_malloc

#: command name -> (module under tandem.cli, attribute), in the order `--help` lists them
COMMANDS = {
    "serve": ("serve", "serve"),
    "migrate": ("migrate", "migrate"),
    "signup": ("account", "signup"),
    "login": ("account", "login"),
    "logout": ("account", "logout"),
    "devices": ("account", "devices"),
    "sync": ("sync", "sync"),
    "status": ("status", "status"),
    "free": ("ondemand", "free"),
    "offline": ("ondemand", "offline"),
    "open": ("ondemand", "open_file"),
    "versions": ("history", "versions"),
    "restore": ("history", "restore"),
    "trash": ("history", "trash"),
    "backup": ("backup", "backup"),
    "check": ("check", "check_command"),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(f"tandem.cli.{module}"), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tandem")
def cli() -> None:
    """Tandem: an end-to-end encrypted cloud drive with two-way sync."""


def main() -> None:
    tune_malloc()
    cli()
