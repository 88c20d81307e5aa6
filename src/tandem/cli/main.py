"""The `tandem` entry point: one click group, a module per command family."""

from __future__ import annotations

import click

from tandem import __version__
from tandem.cli.serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tandem")
def cli() -> None:
    """Tandem: an end-to-end encrypted cloud drive with two-way sync."""


cli.add_command(serve)


def main() -> None:
    cli()
