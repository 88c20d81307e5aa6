"""Install the `*.tandem` file type and its opener into an XDG data home (per user, no root).

File managers pick the default app for a file from its MIME type (shared-mime-info globs) and
the Desktop Entries that claim that type, so two small files are enough; the update commands
only refresh caches, and file managers that find them missing rescan on their own.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from tandem.fileio import write_atomically

DESKTOP_FILE = "tandem-open.desktop"
MIME_FILE = "tandem-mime.xml"
MIME_TYPE = "application/x-tandem-placeholder"
_PACKAGE = "tandem.desktop"
_CACHE_TIMEOUT = 30.0  # seconds; a cache refresh that hangs must not hang the install
# Characters that make a Desktop Entry Exec argument need double quotes (spec, "The Exec key").
_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")
_ESCAPED_IN_QUOTES = set('"`$\\')


def exec_argument(arg: str) -> str:
    """`arg` as one argument of an Exec value, escaped for the Desktop Entry file.

    Two layers, as the spec has them: the Exec layer (double quotes if needed, with `"`, `` ` ``,
    `$` and `\\` escaped inside; `%` doubled) and then the key-file layer (each `\\` doubled).
    """
    if not arg or any(ord(char) < 0x20 or ord(char) == 0x7F for char in arg):
        raise ValueError(f"not usable as a command in a Desktop Entry: {arg!r}")
    arg = arg.replace("%", "%%")
    if any(char in _RESERVED for char in arg):
        arg = '"' + "".join("\\" + c if c in _ESCAPED_IN_QUOTES else c for c in arg) + '"'
    return arg.replace("\\", "\\\\")


def desktop_entry(tandem_command: str = "tandem") -> bytes:
    """The packaged Desktop Entry with its Exec line running `tandem_command open %f`."""
    template = resources.files(_PACKAGE).joinpath(DESKTOP_FILE).read_text(encoding="utf-8")
    lines = [
        f"Exec={exec_argument(tandem_command)} open %f" if line.startswith("Exec=") else line
        for line in template.splitlines()
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def install_desktop_integration(data_home: Path, tandem_command: str = "tandem") -> list[Path]:
    """Write the opener and the MIME type into `data_home` (e.g. ~/.local/share); return them.

    `tandem_command` is the tandem program, best an absolute path: a file manager does not
    read the shell's PATH. Safe to run again: files are replaced whole (atomically).
    """
    applications = data_home / "applications"
    mime = data_home / "mime"
    targets = [
        (applications / DESKTOP_FILE, desktop_entry(tandem_command)),
        (mime / "packages" / "tandem.xml", resources.files(_PACKAGE).joinpath(MIME_FILE).read_bytes()),
    ]
    for path, data in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data, mode=0o644)
    _refresh_cache("update-mime-database", mime)
    _refresh_cache("update-desktop-database", applications)
    return [path for path, _ in targets]


def _refresh_cache(command: str, folder: Path) -> None:
    """Run `command folder` if it is installed; a failure is ignored (it is only a cache)."""
    program = shutil.which(command)
    if program is None:
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        # No pipes: a killed command's children holding them open would outlast the timeout.
        subprocess.run([program, str(folder)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=_CACHE_TIMEOUT, check=False)


def ensure_desktop_integration(environ: Mapping[str, str], tandem_command: str) -> list[Path]:
    """Install once per user, and only in a desktop session (a display to double-click on):
    placeholders then open with `tandem open`. Failures are ignored: it is a convenience."""
    if not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
        return []
    data_home = Path(environ.get("XDG_DATA_HOME") or Path(environ.get("HOME", "~")) / ".local/share")
    if (data_home.expanduser() / "applications" / DESKTOP_FILE).exists():
        return []
    with contextlib.suppress(OSError, ValueError):
        return install_desktop_integration(data_home.expanduser(), tandem_command)
    return []
