"""The `tandem` entry point: one click group, a module per command family."""

from __future__ import annotations

import click

from tandem import __version__
from tandem.cli.account import devices, login, logout, signup
from tandem.cli.backup import backup
from tandem.cli.history import restore, trash, versions
from tandem.cli.ondemand import free, offline, open_file
from tandem.cli.serve import serve
from tandem.cli.status import status
from tandem.cli.sync import sync
from tandem.client.memory import pin_mmap_threshold


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tandem")
def cli() -> None:
    """Tandem: an end-to-end encrypted cloud drive with two-way sync."""


for command in (serve, signup, login, logout, devices, sync, status, free, offline, open_file,
                versions, restore, trash, backup):
    cli.add_command(command)


def main() -> None:
    pin_mmap_threshold()
    cli()
