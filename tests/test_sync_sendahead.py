"""A pass's scan sends the chunks of the files it hashes (`sync/sendahead.py`), so the upload
that follows reads nothing again: a new file is read once and sent once."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem.client import Home, Session, account
from tandem.client.api import ApiClient, Backoff
from tandem.core.chunking import MAX_CHUNK, chunk_bytes
from tandem.core.crypto import AccountKeys, new_master_key
from tandem.sync.engine import Engine
from tandem.sync.scanner import make_hasher
from tandem.sync.state import StateDB


def _bytes_read() -> int:
    """Bytes this process has read through read(2) and friends so far (files and sockets)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.fixture
def engine(server, tmp_path: Path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    session, _ = account.signup(Home(tmp_path / "home"), server.url, "e@example.org", "pw")
    state = StateDB(tmp_path / "home" / "state.db")
    folder = tmp_path / "folder"
    folder.mkdir()
    running = Engine(session, folder, state)
    try:
        yield running
    finally:
        running.close()
        state.close()
        session.close()


def test_a_new_large_file_is_read_once_and_its_chunks_sent_once(engine: Engine) -> None:
    size = 3 * MAX_CHUNK + 12345
    (engine.root / "big.bin").write_bytes(random.Random(1).randbytes(size))
    before = _bytes_read()
    report = engine.sync_once()
    read = _bytes_read() - before
    assert report.done == 1 and not report.problems
    # The scan's read is the only one (the rest is the server's small JSON answers).
    assert size <= read < size + size // 4
    assert size <= engine.transfers.stats.bytes_sent < size + size // 100


def test_chunks_the_scan_sends_are_on_the_server_before_the_plan(engine: Engine) -> None:
    data = random.Random(2).randbytes(2 * MAX_CHUNK)
    (engine.root / "big.bin").write_bytes(data)
    scanned = engine._scan(engine.state.local_tree(), None)
    manifest = engine.executor.recent_manifests.get(scanned.tree["big.bin"].content or "")
    assert manifest is not None and len(manifest) > 1
    assert engine.session.api.missing_chunks([chunk_id for chunk_id, _ in manifest]) == []


def test_a_scan_with_the_server_unreachable_still_records_the_file(engine: Engine,
                                                                   tmp_path: Path) -> None:
    """Sending ahead is best effort: a server that does not answer costs the scan nothing
    but the attempt, and the file waits to be uploaded."""
    session = engine.session
    # Nothing listens on port 9; one attempt per request keeps the test short.
    gone = ApiClient("http://127.0.0.1:9", session.device.token, backoff=Backoff(attempts=1))
    offline = Engine(Session(session.home, session.device, session.keys, gone),
                     engine.root, engine.state)
    try:
        (engine.root / "big.bin").write_bytes(random.Random(3).randbytes(2 * MAX_CHUNK))
        scanned = offline._scan(engine.state.local_tree(), None)
        assert scanned.tree["big.bin"].content is not None
        assert offline.transfers.stats.bytes_sent == 0
    finally:
        offline.close()
        gone.close()
    report = engine.sync_once()
    assert report.done == 1 and not report.problems


def test_new_small_files_are_read_once_and_the_upload_asks_nothing(engine: Engine) -> None:
    rng = random.Random(4)
    sizes = [rng.randint(1024, 16 * 1024) for _ in range(300)]
    for index, size in enumerate(sizes):
        folder = engine.root / f"d{index % 10}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{index}.bin").write_bytes(rng.randbytes(size))
    asked: list[int] = []
    missing_chunks = engine.session.api.missing_chunks

    def counting(ids: list[str]) -> list[str]:
        asked.append(len(ids))
        return missing_chunks(ids)

    engine.session.api.missing_chunks = counting  # type: ignore[method-assign]
    before = _bytes_read()
    report = engine.sync_once()
    read = _bytes_read() - before
    assert report.done == 310 and not report.problems  # 300 files, 10 folders
    assert sum(sizes) <= read < sum(sizes) * 1.5
    assert sum(asked) == 300  # once per chunk, by the scan's sends; the upload asks nothing


@pytest.mark.parametrize("change", ["edited", "moved"])
def test_placeholder_text_is_never_sent_ahead(engine: Engine, change: str) -> None:
    (engine.root / "doc.txt").write_bytes(b"the real content")
    engine.sync_once()
    assert engine.free(["doc.txt"]) == {}
    placeholder = engine.root / "doc.txt.tandem"
    text = placeholder.read_bytes()
    if change == "edited":  # saved again by an editor: read again by the scan
        text += b"edited by the user\n"
        placeholder.write_bytes(text)
    else:  # a new path: read again by the scan
        placeholder.rename(engine.root / "moved.txt.tandem")
    report = engine.sync_once()
    assert not report.problems
    chunk_id = engine.session.keys.chunk_id(text)
    assert engine.session.api.missing_chunks([chunk_id]) == [chunk_id]


def test_an_edit_inside_a_large_file_sends_only_the_changed_chunk(engine: Engine) -> None:
    """The unchanged chunks of an edited file were remembered when it was last read: the scan
    neither copies nor offers them, and the upload sends only what changed."""
    data = bytearray(random.Random(4).randbytes(4 * MAX_CHUNK))
    path = engine.root / "big.bin"
    path.write_bytes(data)
    assert not engine.sync_once().problems
    data[len(data) // 2 : len(data) // 2 + 4096] = random.Random(5).randbytes(4096)
    path.write_bytes(data)
    sent_before = engine.transfers.stats.bytes_sent
    report = engine.sync_once()
    assert report.done == 1 and not report.problems
    # One or two chunks around the edit (each at most MAX_CHUNK), not the whole file.
    assert engine.transfers.stats.bytes_sent - sent_before <= 2 * MAX_CHUNK + 65536


def test_the_hasher_offers_only_chunks_not_known_stored(tmp_path: Path) -> None:
    keys = AccountKeys(new_master_key())
    data = random.Random(6).randbytes(4 * MAX_CHUNK)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    manifest = [(keys.chunk_id(chunk), len(chunk)) for chunk in chunk_bytes(data)]
    stored = {chunk_id for chunk_id, _ in manifest[::2]}
    offered: list[tuple[str, bytes]] = []
    hasher = make_hasher(keys, sink_for=lambda _path, _size: lambda cid, chunk: offered.append(
        (cid, chunk)), stored=stored.__contains__)
    hasher(path)
    assert [cid for cid, _ in offered] == [cid for cid, _ in manifest[1::2]]
    assert all(keys.chunk_id(chunk) == cid and isinstance(chunk, bytes) for cid, chunk in offered)
