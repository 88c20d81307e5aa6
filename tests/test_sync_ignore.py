"""Ignore rules: built-in defaults, `.tandemignore` patterns, and errors that must stop a sync."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tandem.sync.ignore import IgnoreFileError, IgnoreRules

USER_RULES = [
    "# build output",
    "",
    "build/",
    "*.log",
    "!important.log",
    "/only-at-root.txt",
    "secret/**/key",
    "!*.swp",
    "!.tandem/",
    "!build/keep.txt",
]

CASES = [
    # (path, is_dir, expected rule or None)
    ("notes.txt", False, None),
    (".tandemignore", False, None),
    ("sub/.tandemignore", False, None),
    (".tandem", True, "built-in: Tandem's state folder"),
    (".tandem/state.db", False, "built-in: Tandem's state folder"),
    ("sub/.tandem", True, None),
    ("doc.swo", False, "built-in: editor swap file"),
    ("doc.txt~", False, "built-in: editor backup file"),
    ("sub/.#doc.txt", False, "built-in: editor lock file"),
    ("#doc.txt#", False, "built-in: editor auto-save file"),
    ("~$report.docx", False, "built-in: office lock file"),
    (".~lock.sheet.ods#", False, "built-in: office lock file"),
    (".DS_Store", False, "built-in: system metadata file"),
    ("photos/Thumbs.db", False, "built-in: system metadata file"),
    ("desktop.ini", False, "built-in: system metadata file"),
    ("doc.swp", False, None),  # re-included by the user's `!*.swp`
    ("build", True, "build/"),
    ("build", False, None),  # `build/` matches folders only
    ("src/build", True, "build/"),
    ("build/out.o", False, "build/"),
    ("build/keep.txt", False, "build/"),  # a parent folder's exclusion wins, as in git
    ("app.log", False, "*.log"),
    ("deep/er/app.log", False, "*.log"),
    ("important.log", False, None),
    ("only-at-root.txt", False, "/only-at-root.txt"),
    ("sub/only-at-root.txt", False, None),
    ("secret/a/b/key", False, "secret/**/key"),
    ("secret/keys", False, None),
]


@pytest.mark.parametrize(("path", "is_dir", "expected"), CASES)
def test_match(path: str, is_dir: bool, expected: str | None) -> None:
    assert IgnoreRules(USER_RULES).match(path, is_dir) == expected


def test_without_a_file_only_the_defaults_apply(tmp_path: Path) -> None:
    rules = IgnoreRules.load(tmp_path)
    assert rules.match("app.log", False) is None
    assert rules.match("doc.swp", False) == "built-in: editor swap file"


def test_load_reads_the_file_at_the_root(tmp_path: Path) -> None:
    (tmp_path / ".tandemignore").write_text("\ufeff*.log\r\nbuild/\n", encoding="utf-8")
    rules = IgnoreRules.load(tmp_path)
    assert rules.match("a.log", False) == "*.log"
    assert rules.match("x/build", True) == "build/"


def test_patterns_and_paths_compare_in_nfc(tmp_path: Path) -> None:
    (tmp_path / ".tandemignore").write_text("cafe\u0301/\n", encoding="utf-8")
    assert IgnoreRules.load(tmp_path).match("caf\u00e9", True) == "cafe\u0301/"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe not utf-8", "is not UTF-8 text"),
        (b"ok.txt\n!\n", "line 2: invalid pattern '!'"),
    ],
)
def test_an_unusable_file_is_an_error(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / ".tandemignore").write_bytes(content)
    with pytest.raises(IgnoreFileError, match=message):
        IgnoreRules.load(tmp_path)


def test_a_folder_or_symlink_in_place_of_the_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / ".tandemignore").mkdir()
    with pytest.raises(IgnoreFileError, match="not a regular file"):
        IgnoreRules.load(tmp_path)
    os.rmdir(tmp_path / ".tandemignore")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.write_text("*\n")
    (tmp_path / ".tandemignore").symlink_to(outside)
    with pytest.raises(IgnoreFileError, match="not a regular file"):
        IgnoreRules.load(tmp_path)


def test_an_unreadable_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, which bypasses chmod: make the read itself fail.
    (tmp_path / ".tandemignore").write_text("*.log\n")

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(IgnoreFileError, match=r"cannot read .*Permission denied"):
        IgnoreRules.load(tmp_path)
