"""A malicious or compromised server cannot make the client write outside its sync folder, nor
write content that fails authentication (issue 6, section 5).

The test plays the server's part with the account's own key (a stronger attacker than a
server, which has no key): it writes nodes straight through the API whose names decrypt to
'..', '/', NUL, absolute paths or over-long names, and files whose chunks do not authenticate.
Then a real `tandem sync --once` runs: every hostile entry is reported per path, exit code 1,
nothing is written outside the folder, and no unauthenticated byte lands on disk.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from tandem.core.wire import MAX_NAME_BYTES, ROOT_ID
from tests.conftest import RunningServer
from tests.helpers_api import (
    Account,
    commit,
    create_op,
    login,
    mkdir,
    new_node_id,
    put_chunk_raw,
    put_file,
    seal,
    serving,
)
from tests.sync_helpers import PASSWORD, link_devices, tree_of


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> object:
    with serving(tmp_path_factory) as running:
        yield running


def plant_folder(server: RunningServer, attacker: Account, name: str) -> str:
    """A folder in the root whose name decrypts to `name`, whatever it is. The API refuses
    ciphertexts too short or too long to be a name (''), or over 255 bytes), so a hostile
    server writes those into its own database instead, as this does."""
    folder = mkdir(attacker, f"placeholder {new_node_id()}")
    ciphertext = attacker.keys.encrypt_name(ROOT_ID, name)
    with sqlite3.connect(server.data_dir / "meta.db", timeout=10) as db:
        db.execute("UPDATE nodes SET name = ? WHERE id = ?", (ciphertext, folder["id"]))
    db.close()
    return str(folder["id"])


def test_hostile_names_and_forged_chunks_are_refused_and_reported(srv: RunningServer,
                                                                   tmp_path: Path) -> None:
    (device,) = link_devices(srv, tmp_path, count=1)
    email = device.account(srv.url)["email"]
    attacker = login(srv.url, str(email), PASSWORD, device_name="attacker")
    outside = tmp_path / "outside"
    outside.mkdir()

    # Names that must never become paths, each holding a file that would land somewhere.
    hostile = ["..", ".", "", "a/b", "evil\x00name", f"/{outside}/escaped",
               "x" * (MAX_NAME_BYTES + 1), "../../outside"]
    for name in hostile:
        put_file(attacker, "payload.txt", b"written by the attacker", plant_folder(srv, attacker, name))
    # A name encrypted for another folder: it does not decrypt where the server put it.
    elsewhere = mkdir(attacker, "elsewhere")
    moved = create_op(attacker.keys, elsewhere["id"], "replayed")
    moved["parent_id"] = ROOT_ID
    commit(attacker, moved)

    # Files whose chunks do not authenticate: garbage ciphertext, and a real chunk of other
    # content stored under this content's id (a server swapping chunks).
    wanted_id, _ = seal(attacker.keys, b"the real content")
    garbage = b"\x01" + os.urandom(60)
    assert put_chunk_raw(attacker, wanted_id, garbage).status_code == 200
    _, other_ciphertext = seal(attacker.keys, b"other content!!!")
    swapped_id, _ = seal(attacker.keys, b"swapped content!")
    assert put_chunk_raw(attacker, swapped_id, other_ciphertext).status_code == 200
    commit(attacker,
           create_op(attacker.keys, ROOT_ID, "garbage.txt", "file", [(wanted_id, 16)]),
           create_op(attacker.keys, ROOT_ID, "swapped.txt", "file", [(swapped_id, 16)]))
    put_file(attacker, "fine.txt", b"an honest file")

    result = device.sync()

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert os.listdir(outside) == []
    assert not (tmp_path / "payload.txt").exists() and not (tmp_path / "escaped").exists()
    assert tree_of(device.folder) == {"elsewhere": "DIR", "fine.txt": b"an honest file"}
    leftovers = device.folder / ".tandem" / "tmp"
    assert not leftovers.exists() or os.listdir(leftovers) == []
    report = result.stdout + result.stderr
    for reason in ("is empty or a special name", "contains '/' or NUL",
                   f"is longer than {MAX_NAME_BYTES} bytes", "does not decrypt"):
        assert reason in report, report
    assert f"garbage.txt: chunk {wanted_id[:12]} failed authentication" in report, report
    assert f"swapped.txt: chunk {swapped_id[:12]} failed authentication" in report, report
    assert "fine.txt" not in report, report
    # Nothing was recorded as synced: the next pass refuses the same entries again.
    again = device.sync()
    assert again.returncode == 1 and "garbage.txt: chunk" in again.stdout + again.stderr
    assert tree_of(device.folder) == {"elsewhere": "DIR", "fine.txt": b"an honest file"}
