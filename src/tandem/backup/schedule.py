"""Schedules as durations (`--every 6h`), and when a backup is next due. Pure."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)([smhdw])")
#: Shorter intervals would only mean back-to-back runs (the daemon checks once a minute).
MIN_EVERY = 60


def parse_duration(text: str) -> int:
    """'90m', '6h', '1d12h', '2w' -> seconds; a bare number is hours. ValueError otherwise."""
    spec = text.strip().lower()
    if spec.isdigit():
        spec += "h"
    parts = _PART.findall(spec)
    if not parts or "".join(n + u for n, u in parts) != spec:
        raise ValueError(f"not a duration: {text!r} (try 30m, 6h, 1d or 1w)")
    seconds = sum(int(number) * _UNITS[unit] for number, unit in parts)
    if seconds < MIN_EVERY:
        raise ValueError(f"a schedule must be at least {MIN_EVERY} seconds, not {text!r}")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest spelling parse_duration reads back: 21600 -> '6h', 5400 -> '1h30m'."""
    out = []
    for unit in ("w", "d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNITS[unit])
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


def next_run(every: int | None, last_started: float | None, added: float) -> float | None:
    """When a scheduled backup is next due (None: run by hand only). Never run: due since it
    was added, so a schedule missed while nothing ran is caught up at the next start."""
    if every is None:
        return None
    return added if last_started is None else last_started + every


def is_due(every: int | None, last_started: float | None, added: float, now: float) -> bool:
    due = next_run(every, last_started, added)
    return due is not None and due <= now
