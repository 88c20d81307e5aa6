"""What a device ignores is neither sent, fetched nor deleted: adding a rule for a synced file
must not read as its deletion (promise 1)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import RunningServer
from tests.test_sync_model import _Device


def test_a_newly_ignored_file_is_not_deleted_anywhere(server: RunningServer, tmp_path: Path) -> None:
    a = _Device(tmp_path, server.url, "ignore@example.org", "A", first=True)
    b = _Device(tmp_path, server.url, "ignore@example.org", "B", first=False)
    try:
        (a.folder / "logs").mkdir()
        (a.folder / "logs" / "run.log").write_text("kept")
        (a.folder / "debug.log").write_text("kept too")
        a.sync()
        b.sync()
        (a.folder / ".tandemignore").write_text("*.log\nlogs/\n")
        (a.folder / "debug.log").unlink()  # gone here, but ignored here: not a deletion
        a.sync()
        b.sync()
        assert (b.folder / "debug.log").read_text() == "kept too"
        assert (b.folder / "logs" / "run.log").read_text() == "kept"
        assert (b.folder / ".tandemignore").exists()
        assert (b.folder / ".tandemignore").stat().st_mode & 0o777 != 0o600, "a private temp mode"
        (b.folder / "new.log").write_text("from B")
        b.sync()
        a.sync()
        assert not (a.folder / "new.log").exists(), "an ignored path was downloaded"
        assert (a.folder / "logs" / "run.log").read_text() == "kept"
    finally:
        a.close()
        b.close()
