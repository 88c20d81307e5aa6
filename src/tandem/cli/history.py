"""`tandem versions`, `tandem restore` and `tandem trash`: the cloud's history, by path.

These commands read the tree from the state DB (as the last sync left it) and bring it up to
date from the journal in memory, so they never race a running `tandem sync` for its state.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import click

from tandem.cli.common import friendly_errors, home, print_json
from tandem.client.account import Session
from tandem.client.api import ApiError
from tandem.client.transfer import Transfers
from tandem.core.crypto import DecryptionError, b64decode, b64encode
from tandem.core.wire import ROOT_ID
from tandem.sync.model import RemoteTree, join, normalize
from tandem.sync.remote import RemoteMirror
from tandem.sync.state import StateDB


class _Cloud:
    """The session, the sync folder and an up-to-date view of the remote tree."""

    def __init__(self) -> None:
        where = home()
        self.session = Session.open(where)
        saved = StateDB(where.path / "state.db")
        folder = saved.get("folder")
        self.folder = Path(folder) if folder else None
        scratch = StateDB(Path(":memory:"))
        scratch.update_remote(saved.remote_nodes().values(), (), saved.cursor)
        saved.close()
        self.mirror = RemoteMirror(self.session.api, self.session.keys, scratch)
        self.mirror.refresh()
        self.tree, _ = self.mirror.tree()

    def close(self) -> None:
        self.session.close()

    def relative(self, path: Path) -> str:
        """PATH as a path in the tree; refused when it is outside the sync folder."""
        if self.folder is None:
            raise click.ClickException("no sync folder yet: run `tandem sync --folder DIR` first")
        absolute = Path(os.path.abspath(path))
        try:
            relative = absolute.relative_to(self.folder)
        except ValueError:
            raise click.ClickException(f"{path} is not inside the sync folder {self.folder}") from None
        if not relative.parts:
            raise click.ClickException("give a file or folder inside the sync folder")
        return "/".join(normalize(part) for part in relative.parts)

    def path_of_parent(self, parent_id: str | None) -> str | None:
        if parent_id == ROOT_ID:
            return ""
        return next((p for p, e in self.tree.items() if e.node_id == parent_id), None)

    def trashed(self) -> list[tuple[str, dict[str, Any]]]:
        """Trash entries with their paths (a folder deleted with its parent shows as such)."""
        entries = []
        for raw in self.session.api.trash():
            try:
                name = normalize(self.session.keys.decrypt_name(raw["parent_id"], b64decode(raw["name"])))
            except (DecryptionError, ValueError, TypeError):
                name = f"<undecryptable {raw['id'][:8]}>"
            parent = self.path_of_parent(raw["parent_id"])
            entries.append((join(parent, name) if parent is not None else f"(deleted folder)/{name}",
                            raw))
        return entries


def _when(seconds: int | None) -> str:
    return dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M") if seconds else "-"


def _find_live(tree: RemoteTree, path: str) -> str | None:
    entry = tree.get(path)
    return entry.node_id if entry is not None else None


def _download_to(cloud: _Cloud, manifest: list[Any], mtime_ns: int, destination: Path) -> None:
    if destination.exists():
        raise click.ClickException(f"{destination} exists: choose another --to")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with Transfers(cloud.session.api, cloud.session.keys) as transfers:
        transfers.download([(c, int(s)) for c, s in manifest], destination, mtime_ns=mtime_ns)


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@friendly_errors
def versions(path: Path, as_json: bool) -> None:
    """List the kept versions of a file, newest first."""
    cloud = _Cloud()
    try:
        relative = cloud.relative(path)
        node_id = _find_live(cloud.tree, relative)
        if node_id is None:
            raise click.ClickException(f"{relative} is not in the cloud (see `tandem trash`)")
        listed = cloud.session.api.versions(node_id)
    finally:
        cloud.close()
    if as_json:
        print_json({"path": relative, "versions": [
            {k: v for k, v in item.items() if k != "manifest"} for item in listed]})
        return
    for index, item in enumerate(listed):
        current = "  (current)" if index == 0 else ""
        click.echo(f"{item['number']:>5}  {_when(item['created_at'])}  {item['size']:>12} bytes{current}")


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--version", "number", type=click.IntRange(min=1), default=None,
              help="Which version (see `tandem versions PATH`).")
@click.option("--to", "destination", type=click.Path(path_type=Path), default=None,
              help="Write the file here instead of changing the cloud.")
@friendly_errors
def restore(path: Path, number: int | None, destination: Path | None) -> None:
    """Bring back a deleted file or folder, or an older version of a file."""
    cloud = _Cloud()
    try:
        relative = cloud.relative(path)
        node_id = _find_live(cloud.tree, relative)
        if node_id is None:
            _restore_deleted(cloud, relative, number, destination)
        elif destination is not None:
            chosen = _version(cloud, node_id, number)
            _download_to(cloud, chosen["manifest"], chosen["mtime_ns"], destination)
            click.echo(f"Wrote version {chosen['number']} of {relative} to {destination}.")
        elif number is None:
            raise click.ClickException(f"{relative} exists: give --version N (see `tandem versions`)")
        else:
            _restore_version(cloud, node_id, number, cloud.tree[relative].rev)
            click.echo(f"Restored version {number} of {relative}; it syncs to your devices.")
    finally:
        cloud.close()


def _restore_version(cloud: _Cloud, node_id: str, number: int, rev: int) -> None:
    """Make version `number` current, based on revision `rev` (promise 6: a change made
    meanwhile elsewhere is not overwritten). A retry whose first attempt landed (its answer
    lost) is refused as stale: then the current content being that version is success."""
    try:
        cloud.session.api.restore_version(node_id, number, if_rev=rev)
    except ApiError as exc:
        if exc.code != "rev_conflict":
            raise
        if _version(cloud, node_id, None)["manifest"] != _version(cloud, node_id, number)["manifest"]:
            raise click.ClickException("the file changed in the cloud meanwhile: see `tandem"
                                       " versions` and try again") from None


def _version(cloud: _Cloud, node_id: str, number: int | None) -> dict[str, Any]:
    listed = cloud.session.api.versions(node_id)
    chosen = listed[0] if number is None else next((v for v in listed if v["number"] == number), None)
    if chosen is None:
        raise click.ClickException(f"no version {number}: see `tandem versions`")
    return chosen


def _restore_deleted(cloud: _Cloud, relative: str, number: int | None,
                     destination: Path | None) -> None:
    matches = [(p, raw) for p, raw in cloud.trashed() if p == relative or relative.startswith(p + "/")]
    if not matches:
        raise click.ClickException(f"{relative} is neither in the cloud nor in the trash")
    trashed_path, raw = max(matches, key=lambda item: item[1]["trashed_at"] or 0)
    if destination is not None:
        if trashed_path != relative or raw["kind"] != "file":
            raise click.ClickException("--to restores one deleted file; restore its folder instead")
        chosen = _version(cloud, raw["id"], number)
        _download_to(cloud, chosen["manifest"], chosen["mtime_ns"], destination)
        click.echo(f"Wrote {relative} (version {chosen['number']}) to {destination}.")
        return
    _restore_from_trash(cloud, trashed_path, raw)
    if number is not None:
        cloud.session.api.restore_version(raw["id"], number)
    click.echo(f"Restored {trashed_path}; it syncs to your devices.")


def _restore_from_trash(cloud: _Cloud, path: str, raw: dict[str, Any]) -> None:
    try:
        cloud.session.api.restore_trash(raw["id"])
    except ApiError as exc:
        if exc.code not in ("parent_gone", "name_conflict"):
            raise
        # Its folder is gone or the name is taken: restore at the top of the folder instead.
        name = path.rpartition("/")[2]
        if exc.code == "name_conflict" or name in {p for p in cloud.tree if "/" not in p}:
            stem, dot, suffix = name.rpartition(".")
            name = f"{stem or name} (restored){dot if stem else ''}{suffix if stem else ''}"
        cloud.session.api.restore_trash(
            raw["id"], ROOT_ID, b64encode(cloud.session.keys.encrypt_name(ROOT_ID, name)))


@click.command()
@click.argument("action", type=click.Choice(["list", "restore", "empty"]), default="list")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (list).")
@friendly_errors
def trash(action: str, path: Path | None, as_json: bool) -> None:
    """List the trash, restore PATH from it, or empty it for good."""
    cloud = _Cloud()
    try:
        if action == "list":
            entries = cloud.trashed()
            if as_json:
                print_json({"trash": [{"path": p, "id": raw["id"], "kind": raw["kind"],
                                       "size": raw["size"], "deleted_at": raw["trashed_at"]}
                                      for p, raw in entries]})
            for trashed_path, raw in entries if not as_json else ():
                click.echo(f"{_when(raw['trashed_at'])}  {raw['kind']:<6} {trashed_path}")
        elif action == "restore":
            if path is None:
                raise click.UsageError("`tandem trash restore PATH` needs a PATH")
            _restore_deleted(cloud, cloud.relative(path), None, None)
        else:
            if sys.stdin.isatty() and not click.confirm("Delete everything in the trash for good?"):
                raise SystemExit(1)
            click.echo(f"Emptied the trash ({cloud.session.api.empty_trash()} item(s) deleted for good).")
    finally:
        cloud.close()
