"""The progress line's rate and time left (shared by sync, backup, restore and migrate)."""

from __future__ import annotations

import time

import pytest

from tandem.cli.progress import rate_and_eta
from tandem.cli.sizes import human_size


@pytest.mark.parametrize(("count", "text"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 * 1024 * 1024, "5.0 MiB"),
    (3 * 1024**3, "3.0 GiB"), (5000 * 1024**3, "5000.0 GiB"),
])
def test_human_sizes(count: int, text: str) -> None:
    assert human_size(count) == text


@pytest.mark.parametrize(("done", "total", "expected"), [
    (0, 100, "at 0 B/s"),  # nothing moved yet: no time left to tell
    (20 * 1024**2, None, "at 2.0 MiB/s"),  # the total is not counted yet
    (20 * 1024**2, 20 * 1024**2, "at 2.0 MiB/s"),  # done
    (20 * 1024**2, 80 * 1024**2, "at 2.0 MiB/s, about 30 s left"),
    (20 * 1024**2, 2060 * 1024**2, "at 2.0 MiB/s, about 17 min left"),
])
def test_rate_and_time_left(done: int, total: int | None, expected: str) -> None:
    ten_seconds_ago = time.monotonic() - 10  # (a little more by the time it is read)
    assert rate_and_eta(done, total, ten_seconds_ago) == expected
