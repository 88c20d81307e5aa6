"""`tandem signup`, `login`, `logout`, `devices`."""

from __future__ import annotations

import datetime as dt

import click

from tandem.cli.common import friendly_errors, home, password_stdin_option, print_json, read_password
from tandem.client import account

device_name_option = click.option("--device-name", default=None,
                                  help="How this device is listed (default: the host name).")


def _check_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise click.BadParameter("the server URL must start with http:// or https://", param_hint="URL")
    return url


@click.command()
@click.argument("url")
@click.argument("email")
@password_stdin_option
@device_name_option
@friendly_errors
def signup(url: str, email: str, password_stdin: bool, device_name: str | None) -> None:
    """Create an account on the server at URL and link this device to it."""
    password = read_password(password_stdin, confirm=True)
    session, recovery_key = account.signup(home(), _check_url(url), email, password, device_name)
    session.close()
    click.echo(f"Signed up as {email}; this device is linked as {session.device.device_name!r}.")
    click.echo("Your recovery key (shown only once; write it down and keep it safe):")
    click.echo(f"  {recovery_key}")


@click.command()
@click.argument("url")
@click.argument("email")
@password_stdin_option
@device_name_option
@friendly_errors
def login(url: str, email: str, password_stdin: bool, device_name: str | None) -> None:
    """Link this device to an existing account."""
    password = read_password(password_stdin, confirm=False)
    session = account.login(home(), _check_url(url), email, password, device_name)
    session.close()
    click.echo(f"Logged in as {email}; this device is linked as {session.device.device_name!r}.")


@click.command()
@friendly_errors
def logout() -> None:
    """Revoke this device's token and forget its keys."""
    warning = account.logout(home())
    if warning:
        click.echo(f"Warning: {warning}", err=True)
    click.echo("Logged out.")


def _when(timestamp: int | None) -> str:
    if not timestamp:
        return "-"
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
@friendly_errors
def devices(ctx: click.Context, as_json: bool) -> None:
    """List the devices linked to this account (and `devices revoke NAME`)."""
    if ctx.invoked_subcommand is not None:
        return
    session = account.Session.open(home())
    try:
        listed = session.api.devices()
    finally:
        session.close()
    if as_json:
        print_json({"devices": listed})
        return
    for device in listed:
        state = "revoked" if device["revoked_at"] else "active"
        marker = "*" if device["current"] else " "
        click.echo(f"{marker} {device['name']:<24} {state:<8} last seen {_when(device['last_seen_at'])}"
                   f"  ({device['id'][:8]})")


@devices.command("revoke")
@click.argument("name")
@friendly_errors
def revoke(name: str) -> None:
    """Revoke the device called NAME (or whose id starts with NAME): its token stops working."""
    session = account.Session.open(home())
    try:
        active = [d for d in session.api.devices() if not d["revoked_at"]]
        matches = [d for d in active if d["name"] == name] or [
            d for d in active if d["id"].startswith(name)]
        if not matches:
            raise click.ClickException(f"no active device called {name!r}: see `tandem devices`")
        if len(matches) > 1:
            ids = ", ".join(d["id"][:8] for d in matches)
            raise click.ClickException(f"several devices are called {name!r}; give an id instead: {ids}")
        session.api.revoke_device(matches[0]["id"])
    finally:
        session.close()
    click.echo(f"Revoked {matches[0]['name']} ({matches[0]['id'][:8]}).")
