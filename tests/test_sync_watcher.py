"""Watcher events as hints: the aggregator's table, then the real watchdog on a temp folder."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tandem.sync.ignore import IgnoreRules
from tandem.sync.model import is_within
from tandem.sync.scanner import RootUnavailable
from tandem.sync.watcher import EventAggregator, Watcher

OVERFLOW = None


@dataclass
class Case:
    name: str
    events: list[tuple[float, str | None]]  # (time, path or OVERFLOW)
    at: float
    expected: list[str] | None


def _many(template: str, count: int, at: float = 0.0) -> list[tuple[float, str | None]]:
    return [(at, template.format(i)) for i in range(count)]


CASES = [
    Case("nothing pending", [], 10.0, None),
    Case("within the debounce", [(0.0, "a")], 0.05, None),
    Case("after the debounce", [(0.0, "a")], 0.1, ["a"]),
    Case("a burst waits for quiet", [(t / 20, "a") for t in range(18)], 0.9, None),
    Case("a burst falls due at max_delay", [(t / 20, "a") for t in range(40)], 1.0, ["a"]),
    Case("the same path once", [(0.0, "a"), (0.01, "a")], 0.2, ["a"]),
    Case("sorted", [(0.0, "b"), (0.0, "a/x")], 0.2, ["a/x", "b"]),
    Case(
        "inside a dirty folder", [(0.0, "a/b/c"), (0.0, "a"), (0.0, "a/b"), (0.0, "b/c")], 0.2, ["a", "b/c"]
    ),
    Case(
        "a similar name is not inside",
        [(0.0, "a"), (0.0, "ab/c"), (0.0, "a.txt")],
        0.2,
        ["a", "a.txt", "ab/c"],
    ),
    Case(
        "at the folder limit", _many("docs/f{}", 50), 0.2, [f"docs/f{i}" for i in sorted(map(str, range(50)))]
    ),
    Case("over the folder limit", _many("docs/f{}", 51), 0.2, ["docs"]),
    Case(
        "crowded folders crowd their parent",
        [(0.0, f"x/d{d}/f{f}") for d in range(51) for f in range(51)],
        0.2,
        ["x"],
    ),
    Case("over the limit at the top", _many("f{}", 51), 0.2, [""]),
    Case("over the total limit", _many("d{}/f", 501), 0.2, [""]),
    Case("many in one folder is that folder", _many("big/f{}", 600), 0.2, ["big"]),

    Case("the root itself", [(0.0, "a"), (0.0, "")], 0.2, [""]),
    Case("an overflow", [(0.0, "a"), (0.05, OVERFLOW)], 0.2, [""]),
    Case("an overflow waits for the debounce too", [(0.0, OVERFLOW)], 0.05, None),
    Case("events after an overflow keep it", [(0.0, OVERFLOW), (0.01, "a")], 0.2, [""]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_aggregator(case: Case) -> None:
    aggregator = EventAggregator()
    for now, path in case.events:
        if path is OVERFLOW:
            aggregator.overflow(now)
        else:
            aggregator.add(path, now)
    assert aggregator.due(case.at) == case.expected


def test_a_due_batch_is_handed_out_once() -> None:
    aggregator = EventAggregator(debounce=1.0, max_delay=5.0)
    assert aggregator.deadline() is None
    aggregator.add("a", 10.0)
    aggregator.add("b", 10.5)
    assert aggregator.deadline() == 11.5
    assert aggregator.due(11.5) == ["a", "b"]
    assert aggregator.due(20.0) is None and aggregator.deadline() is None
    aggregator.add("c", 30.0)
    assert aggregator.due(31.0) == ["c"]


def test_the_deadline_is_capped_by_max_delay() -> None:
    aggregator = EventAggregator(debounce=1.0, max_delay=2.0)
    for now in (0.0, 0.9, 1.8):
        aggregator.add("a", now)
    assert aggregator.deadline() == 2.0


# ---- the real watchdog ----------------------------------------------------------------------

HANG_BOUND = 10.0


def covered(paths: set[str], subtrees: set[str]) -> bool:
    return all(any(is_within(path, subtree) for subtree in subtrees) for path in paths)


def wait_for(watcher: Watcher, paths: set[str]) -> set[str]:
    """Collect due subtrees until they cover `paths`; fail after HANG_BOUND seconds."""
    seen: set[str] = set()
    end = time.monotonic() + HANG_BOUND
    while not covered(paths, seen):
        assert time.monotonic() < end, f"no rescan of {paths - seen} after {HANG_BOUND}s; got {seen}"
        seen |= set(watcher.wait(0.5) or [])
    return seen


def quiet(watcher: Watcher) -> None:
    """Drain what is left of the last change, so the next one is seen alone."""
    while watcher.wait(0.3) is not None:
        pass


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "sync"
    folder.mkdir()
    return folder


@pytest.fixture
def watcher(root: Path) -> Iterator[Watcher]:
    with Watcher(root, IgnoreRules.load(root)) as watching:
        yield watching


def test_files_created_modified_renamed_touched_and_deleted(root: Path, watcher: Watcher) -> None:
    (root / "a.txt").write_text("one")
    assert wait_for(watcher, {"a.txt"}) == {"a.txt"}
    quiet(watcher)
    with open(root / "a.txt", "a") as handle:
        handle.write("two")
    assert wait_for(watcher, {"a.txt"}) == {"a.txt"}
    quiet(watcher)
    (root / "a.txt").rename(root / "b.txt")
    assert wait_for(watcher, {"a.txt", "b.txt"}) == {"a.txt", "b.txt"}
    quiet(watcher)
    os.utime(root / "b.txt", ns=(0, 0))
    assert wait_for(watcher, {"b.txt"}) == {"b.txt"}
    quiet(watcher)
    (root / "b.txt").unlink()
    assert wait_for(watcher, {"b.txt"}) == {"b.txt"}


def test_reading_files_is_no_change(root: Path, watcher: Watcher) -> None:
    """Opening, reading and closing (a scan, a backup, a user's viewer) gives no hint: only
    what can change a file or a listing does."""
    for index in range(20):
        (root / f"f{index}.txt").write_text("x")
    wait_for(watcher, {f"f{index}.txt" for index in range(20)})
    quiet(watcher)
    for index in range(20):
        assert (root / f"f{index}.txt").read_text() == "x"
    assert watcher.wait(0.5) is None


def test_folders_created_renamed_and_deleted(root: Path, watcher: Watcher) -> None:
    (root / "folder" / "sub").mkdir(parents=True)
    (root / "folder" / "sub" / "inner.txt").write_text("x")
    wait_for(watcher, {"folder/sub/inner.txt"})
    quiet(watcher)
    (root / "folder").rename(root / "renamed")
    wait_for(watcher, {"folder", "renamed"})
    quiet(watcher)
    (root / "renamed" / "sub" / "later.txt").write_text("the moved folder is still watched")
    wait_for(watcher, {"renamed/sub/later.txt"})
    quiet(watcher)
    shutil.rmtree(root / "renamed")
    wait_for(watcher, {"renamed"})


def test_names_arrive_in_nfc(root: Path, watcher: Watcher) -> None:
    (root / "cafe\u0301.txt").write_text("x")
    assert wait_for(watcher, {"caf\u00e9.txt"}) == {"caf\u00e9.txt"}


def test_ignored_paths_and_the_state_folder_give_no_hints(root: Path, watcher: Watcher) -> None:
    (root / ".tandem").mkdir()
    (root / ".tandem" / "state.db").write_text("x")
    (root / "notes.txt.swp").write_text("x")
    (root / "notes.txt~").write_text("x")
    assert watcher.wait(1.0) is None
    (root / "notes.txt.swp").rename(root / "notes.txt")
    assert wait_for(watcher, {"notes.txt"}) == {"notes.txt"}


def test_a_queue_overflow_asks_for_a_full_rescan(watcher: Watcher) -> None:
    # The kernel's overflow cannot be caused here without changing system limits; watchdog's
    # only report of it is this log record.
    logging.getLogger("watchdog.observers.inotify_c").warning(
        "Inotify queue overflowed; filesystem events were lost"
    )
    assert watcher.wait(HANG_BOUND) == [""]


def test_wake_ends_a_wait_at_once_with_nothing_due(watcher: Watcher) -> None:
    """The long-poll wakes the daemon's loop this way when another device commits."""
    timer = threading.Timer(0.2, watcher.wake)
    timer.start()
    start = time.monotonic()
    try:
        assert watcher.wait(3 * HANG_BOUND) is None
        assert time.monotonic() - start < HANG_BOUND
    finally:
        timer.cancel()
    watcher.wake()  # with nobody waiting: the next wait returns at once
    start = time.monotonic()
    assert watcher.wait(3 * HANG_BOUND) is None
    assert time.monotonic() - start < HANG_BOUND


def test_a_missing_root_cannot_be_watched(tmp_path: Path) -> None:
    with pytest.raises(RootUnavailable, match="cannot watch"):
        Watcher(tmp_path / "missing", IgnoreRules())


def test_stop_ends_the_threads_in_bounded_time(root: Path) -> None:
    before = set(threading.enumerate())
    watcher = Watcher(root, IgnoreRules())
    started = set(threading.enumerate()) - before
    assert started
    start = time.monotonic()
    watcher.stop()
    assert time.monotonic() - start < HANG_BOUND
    assert not any(thread.is_alive() for thread in started)


@pytest.mark.parametrize("paths", [
    [f"t1/d{d}/f{f}" for d in range(20) for f in range(50)],  # 1,000 files touched in 20 folders
    [f"a/d{d}/e{e}/f" for d in range(30) for e in range(30)],
    [f"d{d}/f{f}" for d in range(5) for f in range(50) for _ in range(2)] + ["x/y"] * 600,
], ids=["twenty folders", "deeper", "repeated paths"])
def test_past_the_total_limit_subtrees_widen_but_stay_below_the_root(paths: list[str]) -> None:
    """Over `total_limit` dirty paths become their folders, not a full rescan: every dirty
    path is covered, by at most `total_limit` subtrees, none of them the root."""
    aggregator = EventAggregator()
    for path in paths:
        aggregator.add(path, 0.0)
    due = aggregator.due(0.2)
    assert due is not None and "" not in due and len(due) <= aggregator.total_limit
    assert all(any(p == d or p.startswith(d + "/") for d in due) for p in paths)
