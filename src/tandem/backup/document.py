"""A snapshot's tree as bytes (the document stored, encrypted, in the chunk store) and back.

One JSON header line, then one line per folder or file sorted by path: `[path]` for a folder,
`[path, size, mtime_ns, [[chunk id, size], ...]]` for a file. The bytes depend only on the
tree, so an unchanged tree gives the same document, the same chunks, and nothing to send.
Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from tandem.core.wire import CHUNK_ID_RE
from tandem.sync.model import is_within, parent_of

FORMAT = "tandem-backup/1"
Manifest = tuple[tuple[str, int], ...]


class DocumentError(ValueError):
    """The document does not decode to a valid tree (damaged, or not a snapshot document)."""


@dataclass(frozen=True)
class Item:
    path: str
    kind: Literal["file", "folder"]
    size: int = 0
    mtime_ns: int = 0
    manifest: Manifest = ()


def encode(header: dict[str, Any], items: Iterable[Item]) -> bytes:
    lines = [json.dumps({"format": FORMAT, **header}, sort_keys=True, separators=(",", ":"))]
    for item in sorted(items, key=lambda i: i.path):
        row: list[Any] = ([item.path] if item.kind == "folder"
                          else [item.path, item.size, item.mtime_ns, item.manifest])
        lines.append(json.dumps(row, separators=(",", ":"), ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8")


def decode(data: bytes) -> tuple[dict[str, Any], list[Item]]:
    """The header and the items, each checked: a damaged document is refused, not half-read."""
    try:
        first, *rows = data.decode("utf-8").splitlines()
        header = json.loads(first)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise DocumentError("not a Tandem snapshot document")
        return header, [_item(json.loads(row)) for row in rows]
    except (ValueError, TypeError) as exc:
        raise DocumentError(f"damaged snapshot document: {exc}") from None


def _item(row: Any) -> Item:
    if not isinstance(row, list) or not row or not isinstance(row[0], str):
        raise DocumentError("an entry is not a list starting with its path")
    path = check_path(row[0])
    if len(row) == 1:
        return Item(path, "folder")
    _, size, mtime_ns, raw = row
    manifest = tuple((str(c), int(s)) for c, s in raw)
    if (not isinstance(size, int) or not isinstance(mtime_ns, int) or size < 0
            or sum(s for _, s in manifest) != size
            or not all(CHUNK_ID_RE.match(c) and s > 0 for c, s in manifest)):
        raise DocumentError(f"the entry of {path!r} does not add up")
    return Item(path, "file", size, mtime_ns, manifest)


def check_path(path: str) -> str:
    """A relative '/'-separated path with no empty, '.' or '..' part and no NUL: restoring it
    under a destination can never land outside it."""
    parts = path.split("/")
    if not path or "\x00" in path or any(p in ("", ".", "..") for p in parts):
        raise DocumentError(f"not a safe relative path: {path!r}")
    return path


def select(items: list[Item], subpath: str) -> list[tuple[Item, str]] | None:
    """The items to restore for `subpath` ('' = everything), each with its path under the
    destination: the subpath's own name and what lies under it. None if it is not there."""
    if subpath and not any(item.path == subpath for item in items):
        return None
    base = parent_of(subpath)
    cut = len(base) + 1 if base else 0
    return [(item, item.path[cut:]) for item in items if is_within(item.path, subpath)]
