"""The pure parts of backups: retention (a table of named cases on an injected clock),
schedules, the snapshot document, and which backup `restore DIR --device --snapshot` means."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tandem.backup import document
from tandem.backup.catalog import AccountBackup, find
from tandem.backup.document import DocumentError, Item
from tandem.backup.local import BackupError
from tandem.backup.retention import Policy, kept
from tandem.backup.schedule import format_duration, is_due, next_run, parse_duration

UTC = dt.UTC
NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def at(days_ago: float, hours: float = 0) -> int:
    return int((NOW - dt.timedelta(days=days_ago, hours=hours)).timestamp() * 1e9)


RETENTION_CASES = [
    ("nothing", {}, Policy(), set()),
    ("the newest always stays", {"old": at(400)}, Policy(0, 0, 0), {"old"}),
    ("all of the last 7 days", {"a": at(0, 1), "b": at(0, 2), "c": at(6.9)}, Policy(),
     {"a", "b", "c"}),
    ("one a day after 7 days: the newest of the day",
     {"new": at(0), "d10-late": at(10, -3), "d10-early": at(10, 3)}, Policy(monthly=0),
     {"new", "d10-late"}),
    ("nothing daily beyond 30 days without monthly",
     {"new": at(0), "d29": at(29), "d31": at(31)}, Policy(monthly=0), {"new", "d29"}),
    ("one a month forever by default: the newest of each month",
     {"new": at(0), "apr-20": at(56), "apr-10": at(66), "jan": at(160), "y2024": at(700)},
     Policy(), {"new", "apr-20", "jan", "y2024"}),
    ("a month whose newest is kept daily keeps no older one",
     {"new": at(0), "may-31": at(15), "may-1": at(45)}, Policy(), {"new", "may-31"}),
    ("monthly limited to the last 3 calendar months",
     {"new": at(0), "may": at(30), "apr": at(60), "mar": at(90), "feb": at(120)},
     Policy(within_days=0, daily_days=0, monthly=3), {"new", "may", "apr"}),
    ("within only", {"a": at(1), "b": at(2), "c": at(3)}, Policy(within_days=2, daily_days=0, monthly=0),
     {"a"}),
]


@pytest.mark.parametrize("name,times,policy,expected", RETENTION_CASES, ids=[c[0] for c in RETENTION_CASES])
def test_retention(name: str, times: dict[str, int], policy: Policy, expected: set[str]) -> None:
    assert kept(times, int(NOW.timestamp() * 1e9), policy, UTC) == expected


def test_retention_policy_round_trips() -> None:
    policy = Policy(3, 10, None)
    assert Policy.from_dict(policy.as_dict()) == policy
    assert Policy.from_dict({}) == Policy()


@pytest.mark.parametrize("text,seconds", [
    ("1h", 3600), ("6h", 21600), ("12h", 43200), ("24h", 86400), ("1d", 86400), ("90m", 5400),
    ("1h30m", 5400), ("2w", 1209600), ("6", 21600), (" 5M ", 300),
])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "-1h", "1h-", "1.5h", "30s", "0h", "h1"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_schedule() -> None:
    assert next_run(None, None, 100.0) is None
    assert next_run(3600, None, 100.0) == 100.0  # never run: due since added (a missed start)
    assert next_run(3600, 1000.0, 100.0) == 4600.0
    assert is_due(3600, 1000.0, 100.0, 4600.0) and not is_due(3600, 1000.0, 100.0, 4599.0)
    assert not is_due(None, None, 0.0, 1e12)


ITEMS = [
    Item("b", "folder"),
    Item("a.txt", "file", 3, 7, (("ab" * 32, 3),)),
    Item("b/ünïcode name.bin", "file", 5, -1, (("cd" * 32, 2), ("ef" * 32, 3))),
    Item("b/empty", "file", 0, 0, ()),
]


def test_document_round_trip_and_determinism() -> None:
    data = document.encode({"source": "/x"}, ITEMS)
    header, items = document.decode(data)
    assert header["source"] == "/x"
    assert items == sorted(ITEMS, key=lambda i: i.path)
    assert document.encode({"source": "/x"}, reversed(ITEMS)) == data


@pytest.mark.parametrize("data", [
    b"", b"not json\n", b'{"format": "other"}\n', b"\xff\xfe",
    b'{"format": "tandem-backup/1"}\n["../escape"]\n',
    b'{"format": "tandem-backup/1"}\n["/abs"]\n',
    b'{"format": "tandem-backup/1"}\n["a//b"]\n',
    b'{"format": "tandem-backup/1"}\n["a", 5, 0, []]\n',
    b'{"format": "tandem-backup/1"}\n["a", 1, 0, [["zz", 1]]]\n',
    b'{"format": "tandem-backup/1"}\n[1]\n',
    b'{"format": "tandem-backup/1"}\n["a", 1, 0]\n',
])
def test_damaged_documents_are_refused(data: bytes) -> None:
    with pytest.raises(DocumentError):
        document.decode(data)


def test_select() -> None:
    items = sorted(ITEMS, key=lambda i: i.path)
    assert [rel for _, rel in document.select(items, "") or []] == ["a.txt", "b", "b/empty",
                                                                    "b/ünïcode name.bin"]
    assert [rel for _, rel in document.select(items, "b") or []] == ["b", "b/empty",
                                                                     "b/ünïcode name.bin"]
    assert [rel for _, rel in document.select(items, "b/empty") or []] == ["empty"]
    assert document.select(items, "missing") is None
    assert document.select(items, "b/em") is None


def backup(backup_id: str, folder: str | None, device: str, this_device: bool = False) -> AccountBackup:
    return AccountBackup(backup_id, folder, device * 8, device, this_device, 1, 0)


#: Backups of one account: device "aa" is this one; "bb" and "cc" backed /data up too, and
#: "bb" has two backups of it (its config was lost once); "dd"'s folder could not be read.
CATALOG = [backup("1", "/data", "aa", True), backup("2", "/data", "bb"), backup("3", "/data", "bb"),
           backup("4", "/data", "cc"), backup("5", "/photos", "cc"), backup("6", None, "dd")]
SNAPSHOTS = {"1": ["a1"], "2": ["b2"], "3": ["b3", "b30"], "4": ["c4"], "5": ["c5"], "6": ["d6"]}

FIND_CASES = [
    ("this device's first", "/data", None, None, "1"),
    ("this device's first, latest", "/data", None, "latest", "1"),
    ("another device's only one", "/photos", None, None, "5"),
    ("a trailing slash is the same folder", "/photos/", None, None, "5"),
    ("--device by name", "/data", "cc", None, "4"),
    ("--device by id prefix", "/data", "cccc", None, "4"),
    ("--snapshot finds the backup holding it", "/data", None, "B3", "3"),
    ("--snapshot within a device", "/data", "bb", "b2", "2"),
    ("two backups on one device", "/data", "bb", None, "has 2 backups: on bb"),
    ("a prefix two backups hold", "/data", None, "b", "has 2 backups"),
    ("an empty prefix holds nothing", "/data", None, "", "is not a snapshot"),
    ("a snapshot of another folder", "/photos", None, "c4", "is not a snapshot"),
    ("no such device", "/data", "zz", None, "no device called 'zz' has backups (devices with"
     " backups: aa, bb, cc, dd)"),
    ("no backup of the folder on that device", "/photos", "bb", None, "no backup of /photos on bb"),
    ("no backup of the folder", "/else", None, None, "no backup of /else: /data on this device"),
]


@pytest.mark.parametrize(("folder", "device", "wanted", "expected"),
                         [case[1:] for case in FIND_CASES], ids=[case[0] for case in FIND_CASES])
def test_which_backup_a_restore_means(folder: str, device: str | None, wanted: str | None,
                                      expected: str) -> None:
    def found() -> str:
        return find(CATALOG, Path(folder), device, wanted, SNAPSHOTS.__getitem__).id

    if expected.isdigit():
        assert found() == expected
    else:
        with pytest.raises(BackupError) as refused:
            found()
        assert expected in str(refused.value)


def test_an_account_with_no_backup_says_so() -> None:
    with pytest.raises(BackupError, match="no backup of /data: this account has no backup"):
        find([], Path("/data"), None, None, SNAPSHOTS.__getitem__)
