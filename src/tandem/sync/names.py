"""Names the engine makes: conflicted copies, as Dropbox names them."""

from __future__ import annotations

import time

from tandem.core.wire import MAX_NAME_BYTES


def conflict_name(name: str, device: str, moment: time.struct_time, attempt: int = 1) -> str:
    """`report (conflicted copy, laptop, 2026-11-24 1530).pdf`; a second one in the same
    minute gets ` 2`, and so on. Dotfiles and names without a suffix keep their whole name."""
    stem, dot, suffix = name.rpartition(".")
    if not stem:  # ".bashrc" or "README": no extension to keep
        stem, dot, suffix = name, "", ""
    device = device.replace("/", "-").replace("\x00", "")[:40]
    label = f"conflicted copy, {device}, {time.strftime('%Y-%m-%d %H%M', moment)}"
    counter = f" {attempt}" if attempt > 1 else ""
    tail = f" ({label}{counter}){dot}{suffix}"
    while len((stem + tail).encode("utf-8")) > MAX_NAME_BYTES and stem:
        stem = stem[:-1]  # keep the name within what filesystems take
    return stem + tail
