"""Placeholders of online-only files: their names and their text. Pure, no I/O.

A file freed to "online only" is replaced in the sync folder by a small text file named like it
plus `.tandem`, so the folder still shows what exists and a double-click brings it back.
The real name, size and content id live in the state DB; the placeholder is only for people.
"""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import UTC, datetime, timedelta

SUFFIX = ".tandem"
MAX_NAME_BYTES = 255  # what ext4, APFS and NTFS (in UTF-16 units) take for one name
HEADER = b"Tandem online-only file\n"

_HASH_HEX = 10  # 40 bits: two long names with one prefix collide with odds ~1e-12
_MAX_EXT_BYTES = 16  # ".pdf", ".docx", ".tar.gz"'s ".gz"; longer ones are not extensions
_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def placeholder_name(name: str) -> str:
    """The placeholder's file name for `name`: `name + ".tandem"` when that fits in 255 bytes.

    Otherwise (the name is already near the limit) it is shortened, deterministically:
    `<longest prefix of name that fits>~<first 10 hex of SHA-256(UTF-8 name)><ext>.tandem`,
    where `<ext>` is the name's last extension with its dot if it is at most 16 bytes (a
    dotfile or a longer one keeps none), and the prefix is cut between characters, never
    inside a UTF-8 sequence. The hash keeps two long names that share their first 200 bytes
    apart; the extension keeps the file's type visible. Nothing needs to undo this: the state
    DB keeps the real name.
    """
    if len(name.encode("utf-8")) + len(SUFFIX) <= MAX_NAME_BYTES:
        return name + SUFFIX
    stem, dot, ext = name.rpartition(".")
    kept_ext = dot + ext if stem and len((dot + ext).encode("utf-8")) <= _MAX_EXT_BYTES else ""
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASH_HEX]
    tail = f"~{digest}{kept_ext}{SUFFIX}"
    return _utf8_prefix(name, MAX_NAME_BYTES - len(tail.encode("utf-8"))) + tail


def _utf8_prefix(text: str, budget: int) -> str:
    """The longest prefix of `text` whose UTF-8 encoding takes at most `budget` bytes."""
    used = 0
    for index, char in enumerate(text):
        used += len(char.encode("utf-8"))
        if used > budget:
            return text[:index]
    return text


def human_size(size: int) -> str:
    """`0 B`, `1023 B`, `1.0 KiB`, `64.0 MiB`, `1.5 GiB`: binary units, one decimal.

    A value that would round up to 1024.0 moves to the next unit (`1.0 MiB`, not `1024.0 KiB`).
    """
    if size < 0:
        raise ValueError(f"negative size: {size}")
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in _UNITS[:-1]:
        if float(f"{value:.1f}") < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"


def utc_time(mtime_ns: int) -> str:
    """`2026-11-25 03:40:12 UTC`, computed in integers (no float rounding, no local time zone)."""
    try:
        moment = _EPOCH + timedelta(seconds=mtime_ns // 1_000_000_000)
    except OverflowError:  # outside years 1..9999: a broken clock, not worth failing over
        return "unknown"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _printable(text: str) -> str:
    """Control characters (a newline in a name is legal) escaped, so each field stays one line."""
    return "".join(
        char.encode("unicode_escape").decode("ascii") if unicodedata.category(char) == "Cc" else char
        for char in text
    )


def _shell_double_quoted(text: str) -> str:
    """`"text"` as a POSIX shell reads it, so the shown command can be pasted as is."""
    escaped = "".join("\\" + char if char in '"\\$`' else char for char in text)
    return f'"{escaped}"'


def render_placeholder(name: str, size: int, mtime_ns: int, folder_path: str) -> bytes:
    """The placeholder's UTF-8 text: what the file is and how to get it back.

    `folder_path` is the file's path inside the sync folder, as `tandem offline` takes it.
    Deterministic (only its arguments, never the current time), so rewriting an unchanged
    placeholder changes no byte. The first line is `HEADER`, which tells placeholders apart.
    """
    exact = "1 byte" if size == 1 else f"{size:,} bytes"
    lines = [
        HEADER.decode("utf-8").rstrip("\n"),
        "",
        f"Name:     {_printable(name)}",
        f"Size:     {human_size(size)} ({exact})",
        f"Modified: {utc_time(mtime_ns)}",
        "",
        "This file is kept online only, to save space on this device.",
        "To get it back, double-click this placeholder (it runs `tandem open`), or run:",
        f"    tandem offline {_printable(_shell_double_quoted(folder_path))}",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")
