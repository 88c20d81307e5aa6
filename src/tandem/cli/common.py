"""What every command shares: the home folder, passwords, and turning errors into one line."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from tandem.client.errors import ClientError
from tandem.client.home import Home

F = TypeVar("F", bound=Callable[..., Any])


def home() -> Home:
    return Home()


def friendly_errors(command: F) -> F:
    """Expected failures become `Error: <one line>` and exit code 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ClientError as exc:
            raise click.ClickException(str(exc)) from None
        except PermissionError as exc:
            raise click.ClickException(f"permission denied: {exc.filename or exc}") from None
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from None
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def read_password(from_stdin: bool, confirm: bool) -> str:
    """--password-stdin, then TANDEM_PASSWORD, then a prompt without echo."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif "TANDEM_PASSWORD" in os.environ:
        password = os.environ["TANDEM_PASSWORD"]
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    if not password:
        raise click.ClickException("the password must not be empty")
    return password


def print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True))


password_stdin_option = click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")

__all__ = ["friendly_errors", "home", "password_stdin_option", "print_json", "read_password"]
