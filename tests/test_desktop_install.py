"""Desktop integration: `*.tandem` files open with `tandem open %f` after an install."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tandem.desktop import install
from tandem.desktop.install import (
    MIME_TYPE,
    desktop_entry,
    ensure_desktop_integration,
    exec_argument,
    install_desktop_integration,
)

MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"


def entry_keys(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "[Desktop Entry]"
    return dict(line.split("=", 1) for line in lines[1:] if line and not line.startswith("#"))


def test_install_writes_both_files(tmp_path: Path) -> None:
    written = install_desktop_integration(tmp_path, "/usr/local/bin/tandem")
    desktop = tmp_path / "applications" / "tandem-open.desktop"
    mime_xml = tmp_path / "mime" / "packages" / "tandem.xml"
    assert written == [desktop, mime_xml]
    assert desktop.is_file() and mime_xml.is_file()
    assert desktop.stat().st_mode & 0o777 == 0o644

    keys = entry_keys(desktop)
    assert keys["Type"] == "Application"
    assert keys["Name"] == "Tandem"
    assert keys["Exec"] == "/usr/local/bin/tandem open %f"
    assert keys["NoDisplay"] == "true" and keys["Terminal"] == "false"

    mime_type = ET.parse(mime_xml).getroot().find(f"{MIME_NS}mime-type")
    assert mime_type is not None
    assert keys["MimeType"] == mime_type.get("type") + ";" == MIME_TYPE + ";"
    globs = [glob.get("pattern") for glob in mime_type.iter(f"{MIME_NS}glob")]
    assert globs == ["*.tandem"]
    assert mime_type.find(f"{MIME_NS}comment") is not None


def test_install_twice_is_fine(tmp_path: Path) -> None:
    first = install_desktop_integration(tmp_path, "/opt/a/tandem")
    second = install_desktop_integration(tmp_path, "/opt/b/tandem")
    assert first == second
    assert entry_keys(second[0])["Exec"] == "/opt/b/tandem open %f"
    assert sorted(p.name for p in (tmp_path / "applications").iterdir() if p.suffix == ".desktop") == [
        "tandem-open.desktop"
    ]  # no temp files left behind


# Exec quoting, as the Desktop Entry spec has it: double quotes around an argument with a
# reserved character, `"`, `` ` ``, `$`, `\` escaped inside, `%` doubled, then `\` doubled again
# by the string escaping of the key file.
@pytest.mark.parametrize(("command", "exec_line"), [
    ("tandem", "tandem open %f"),
    ("/usr/bin/tandem", "/usr/bin/tandem open %f"),
    ("/opt/My Apps/tandem", '"/opt/My Apps/tandem" open %f'),
    ("/opt/100%/tandem", "/opt/100%%/tandem open %f"),
    ("/opt/a$b/tandem", '"/opt/a\\\\$b/tandem" open %f'),
    ('/opt/say "hi"/tandem', '"/opt/say \\\\"hi\\\\"/tandem" open %f'),
    ("/opt/back\\slash/tandem", '"/opt/back\\\\\\\\slash/tandem" open %f'),
    ("/home/zoë/.local/bin/tandem", "/home/zoë/.local/bin/tandem open %f"),
])
def test_exec_line_carries_the_command(tmp_path: Path, command: str, exec_line: str) -> None:
    install_desktop_integration(tmp_path, command)
    assert entry_keys(tmp_path / "applications" / "tandem-open.desktop")["Exec"] == exec_line


@pytest.mark.parametrize("command", ["", "/opt/new\nline/tandem", "tab\there"])
def test_unusable_commands_are_refused(command: str) -> None:
    with pytest.raises(ValueError):
        exec_argument(command)


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils not installed")
@pytest.mark.parametrize("command", ["tandem", "/opt/My Apps/tandem", "/opt/a$b\\c/tandem"])
def test_desktop_file_validates(tmp_path: Path, command: str) -> None:
    path = tmp_path / "tandem-open.desktop"
    path.write_bytes(desktop_entry(command))
    result = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("update-mime-database") is None, reason="shared-mime-info not installed")
def test_mime_database_learns_the_glob(tmp_path: Path) -> None:
    install_desktop_integration(tmp_path)
    globs = (tmp_path / "mime" / "globs2").read_text(encoding="utf-8")
    assert re.search(rf"^\d+:{re.escape(MIME_TYPE)}:\*\.tandem$", globs, re.MULTILINE)


def fake_commands(folder: Path, script: str) -> Path:
    folder.mkdir()
    for name in ("update-mime-database", "update-desktop-database"):
        (folder / name).write_text(f"#!/bin/sh\n{script}\n")
        (folder / name).chmod(0o755)
    return folder


@pytest.mark.parametrize("script", [None, "exit 3", "echo noise; echo more >&2; exit 1"])
def test_cache_commands_missing_or_failing_are_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str | None
) -> None:
    bin_dir = tmp_path / "bin"
    if script is not None:
        fake_commands(bin_dir, script)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert len(install_desktop_integration(tmp_path / "data")) == 2


def test_cache_commands_that_hang_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(fake_commands(tmp_path / "bin", f"{shutil.which('sleep')} 5")))
    monkeypatch.setattr(install, "_CACHE_TIMEOUT", 0.3)
    start = time.monotonic()
    assert len(install_desktop_integration(tmp_path / "data")) == 2
    assert time.monotonic() - start < 3  # the sleeping grandchild is not waited for


def test_ensure_installs_once_and_only_in_a_desktop_session(tmp_path: Path) -> None:
    data_home = tmp_path / "share"
    assert ensure_desktop_integration({"XDG_DATA_HOME": str(data_home)}, "/usr/bin/tandem") == []
    assert not data_home.exists()
    desktop = {"XDG_DATA_HOME": str(data_home), "DISPLAY": ":0"}
    assert len(ensure_desktop_integration(desktop, "/usr/bin/tandem")) == 2
    assert ensure_desktop_integration(desktop, "/usr/bin/tandem") == []  # already there
