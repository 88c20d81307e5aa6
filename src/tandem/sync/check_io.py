"""`tandem check` at the edges: read the trees (state DB, the folder, the server) for the pure
comparison in `check.py`, and repair what it found.

Reading changes nothing: the state DB is only read (the three trees in one transaction, as
`tandem status` does), the folder is scanned twice without saving (once as the next pass will
see it, trusting sizes and times; once reading every file), and the server is asked for its
tree (`GET /tree`) and for the journal after this device's cursor (what is still to come).

A repair runs under the engine's lock (in the daemon, or in this process holding the sync
lock): it forgets the local record of files to read again, the merge base of entries to merge
again, or the whole cloud mirror (listed again), then runs one pass for those paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tandem.client.api import ApiClient, ApiError, ClientError
from tandem.core.crypto import AccountKeys
from tandem.sync import check, ondemand
from tandem.sync.control import Handler, RequestError
from tandem.sync.engine import FOLDER_MARKER, Engine, MassDeletePaused
from tandem.sync.executor import STATE_FOLDER
from tandem.sync.ignore import IgnoreFileError, IgnoreRules
from tandem.sync.model import LocalTree, SyncedTree, is_within, within_any
from tandem.sync.remote import build_tree, decode_node
from tandem.sync.scanner import RootUnavailable, ScanResult, make_hasher, scan
from tandem.sync.state import Placeholder, RemoteNode, StateDB

_PAGE = 5000
_ACTIONS = (check.REHASH, check.REMERGE, check.RELIST)


def run_check(api: ApiClient, keys: AccountKeys, state: StateDB, root: Path,
              paths: Sequence[str] = ("",)) -> check.Result:
    """Compare the folder, the state and the server; findings and pending paths within
    `paths` (relative, NFC; '' is everything)."""
    result = check.compare(gather(api, keys, state, root))
    result.findings = [f for f in result.findings if any(is_within(f.path, p) for p in paths)]
    result.pending = [p for p in result.pending if any(is_within(p, q) for q in paths)]
    return result


def gather(api: ApiClient, keys: AccountKeys, state: StateDB, root: Path) -> check.Trees:
    with state.transaction():  # the trees as of one moment: a running pass waits meanwhile
        synced = state.synced_tree()
        previous = state.local_tree()
        records = state.placeholders()
        mirror = state.remote_nodes()
        cursor = state.cursor
        marker = state.get("folder_marker")
    if _marker(root) != marker:
        synced, previous = {}, {}  # not the folder that was synced: the next pass merges afresh
    server, in_flux, seen_nodes = _server(api, keys, mirror, cursor)
    rules = IgnoreRules.load(root)
    hasher = make_hasher(keys)
    seen_scan = scan(root, previous, hasher, rules)
    full_scan = scan(root, {}, hasher, rules)
    skip = set(seen_scan.ignored)

    def kept(path: str, is_folder: bool) -> bool:
        return rules.match(path, is_folder) is None and not (skip and within_any(path, skip))

    cloud, cloud_problems = build_tree(server.values())
    seen_remote, _ = build_tree(seen_nodes.values())
    return check.Trees(
        synced={p: e for p, e in synced.items() if kept(p, e.kind == "folder")},
        seen_local=_overlaid(seen_scan.tree, records, synced, skip),
        disk=_overlaid(_readable(full_scan, seen_scan), records, synced, skip),
        seen_remote={p: e for p, e in seen_remote.items() if kept(p, e.kind == "folder")},
        cloud={p: e for p, e in cloud.items() if kept(p, e.kind == "folder")},
        mirror=mirror, server=server, in_flux=in_flux, cloud_problems=cloud_problems,
        placeholders=records)


def _marker(root: Path) -> str | None:
    path = root / STATE_FOLDER / FOLDER_MARKER
    return path.read_text().strip() if path.is_file() and not path.is_symlink() else None


def _server(api: ApiClient, keys: AccountKeys, mirror: dict[str, RemoteNode], cursor: int,
            ) -> tuple[dict[str, RemoteNode], set[str] | None, dict[str, RemoteNode]]:
    """The server's nodes now, the ids changed after `cursor` (None: the next pass lists the
    tree again), and the nodes as the next pass will see them (the mirror, brought up to date).
    The tree is listed first, so a change made meanwhile is in the journal read after it."""
    listed, _ = api.iter_tree(page=_PAGE)
    server = {n.node_id: n for n in (decode_node(keys, raw) for raw in listed)}
    if cursor == 0 and not mirror:
        return server, None, server
    seen, in_flux = dict(mirror), set()
    while True:
        try:
            page = api.changes(cursor, limit=_PAGE)
        except ApiError as exc:
            if exc.code not in ("cursor_expired", "cursor_invalid"):
                raise
            return server, None, server
        for raw in page["changes"]:
            in_flux.add(raw["id"])
            if raw["state"] == "live":
                seen[raw["id"]] = decode_node(keys, raw)
            else:
                seen.pop(raw["id"], None)
        cursor = page["cursor"]
        if not page["has_more"]:
            return server, in_flux, seen


def _readable(full: ScanResult, seen: ScanResult) -> LocalTree:
    """The folder with every file read; what could not be read now is taken as the other scan
    saw it (it cannot be verified, and it is not a discrepancy)."""
    failed = set(full.problems)
    kept = {p: e for p, e in seen.tree.items() if failed and within_any(p, failed)}
    return {**kept, **full.tree}


def _overlaid(tree: LocalTree, records: dict[str, Placeholder], synced: SyncedTree,
              skip: set[str]) -> LocalTree:
    return ondemand.overlay(tree, records, synced, skip).local if records else tree


def repair(engine: Engine, actions: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Re-plan the paths of `actions` ((path, action) pairs from findings), then run one pass
    for them; the problems of that pass. Nothing is deleted here."""
    paths = sorted({path for path, _ in actions if not path.startswith("<")})
    with engine.busy:
        with engine.state.transaction():
            engine.state.forget_local(p for p, a in actions if a == check.REHASH)
            engine.state.forget_synced(p for p, a in actions if a == check.REMERGE)
        if any(a == check.RELIST for _, a in actions):
            engine.mirror.forget()
        return engine.sync_once(paths or [""]).problems


def repair_handler(engine: Engine) -> Handler:
    """`{"op": "repair", "actions": [[path, action], ...]}` -> `{"problems": {...}}`, run
    inside the daemon between its passes."""

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        actions = request.get("actions")
        if not isinstance(actions, list) or not all(
                isinstance(a, list) and len(a) == 2 and isinstance(a[0], str)
                and a[1] in _ACTIONS for a in actions):
            raise RequestError("invalid_request", '"actions" is a list of [path, action]')
        try:
            return {"problems": repair(engine, [(a[0], a[1]) for a in actions])}
        except (ClientError, MassDeletePaused, RootUnavailable, IgnoreFileError) as exc:
            raise RequestError("repair_failed", str(exc)) from None

    return handle
