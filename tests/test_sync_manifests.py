"""`RecentManifests`: bounded by chunk references, which chunks its files hold, and a download
into a remembered file (offsets from the manifest, checked as copied; dropped if wrong)."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem.client import Home, account
from tandem.core.chunking import MAX_CHUNK, MIN_CHUNK, chunk_bytes
from tandem.core.crypto import AccountKeys, new_master_key
from tandem.sync.download import _chunk_offsets
from tandem.sync.engine import Engine
from tandem.sync.manifests import RecentManifests
from tandem.sync.state import StateDB

# Each case: (remember/forget steps, limit) -> the contents kept and the chunk ids held.
CASES = {
    "one file": ([("remember", "c1", ["a", "b"])], 10, ["c1"], {"a", "b"}),
    "a shared chunk stays while one file holds it": (
        [("remember", "c1", ["a", "b"]), ("remember", "c2", ["b", "c"]), ("forget", "c1", [])],
        10, ["c2"], {"b", "c"}),
    "remembering again replaces": (
        [("remember", "c1", ["a"]), ("remember", "c1", ["b"])], 10, ["c1"], {"b"}),
    "the oldest go past the limit": (
        [("remember", "c1", ["a", "b"]), ("remember", "c2", ["c", "d"]),
         ("remember", "c3", ["e"])], 3, ["c2", "c3"], {"c", "d", "e"}),
    "the newest stays even alone over the limit": (
        [("remember", "c1", ["a", "b", "c", "d"])], 2, ["c1"], {"a", "b", "c", "d"}),
    "forgetting an unknown file does nothing": (
        [("remember", "c1", ["a"]), ("forget", "zz", [])], 10, ["c1"], {"a"}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_recent_manifests(name: str) -> None:
    steps, limit, kept, held = CASES[name]
    recent = RecentManifests(limit)
    for action, content, chunks in steps:
        if action == "remember":
            recent.remember(content, [(chunk, 1) for chunk in chunks])
        else:
            recent.forget(content)
    assert [c for c in ("c1", "c2", "c3") if recent.get(c) is not None] == kept
    assert {chunk for chunk in "abcdez" if recent.holds(chunk)} == held


def test_chunk_offsets_from_a_manifest_match_cutting_the_file() -> None:
    identify = AccountKeys(new_master_key()).chunk_id
    data = random.Random(7).randbytes(20 * MIN_CHUNK)
    chunks = chunk_bytes(data)
    manifest = [(identify(chunk), len(chunk)) for chunk in chunks]
    wanted = {chunk_id for chunk_id, _ in manifest[1::2]}
    cut = _chunk_offsets(io.BytesIO(data), identify, wanted, None)
    remembered = _chunk_offsets(io.BytesIO(data), identify, wanted, manifest)
    assert cut == remembered and set(cut) == wanted
    for chunk_id, offset in cut.items():
        size = dict(manifest)[chunk_id]
        assert identify(data[offset : offset + size]) == chunk_id


@pytest.fixture
def two_engines(server, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:  # type: ignore[no-untyped-def]
    """Two devices of one account, each an engine in this process (a daemon keeps its
    remembered manifests between passes, as these do)."""
    sessions = [account.signup(Home(tmp_path / "home-a"), server.url, "m@example.org", "pw")[0]]
    sessions.append(account.login(Home(tmp_path / "home-b"), server.url, "m@example.org", "pw"))
    engines = []
    try:
        for session, side in zip(sessions, "ab", strict=True):
            (tmp_path / side).mkdir()
            engines.append(Engine(session, tmp_path / side,
                                  StateDB(tmp_path / f"home-{side}" / "state.db")))
        yield engines[0], engines[1]
    finally:
        for engine in engines:
            engine.close()
            engine.state.close()
        for session in sessions:
            session.close()


def _edit_middle(path: Path, seed: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        handle.write(random.Random(seed).randbytes(4096))


def _big_file_on_both(a: Engine, b: Engine, seed: int) -> tuple[Path, str, list[tuple[str, int]]]:
    """A large file made on A and downloaded by B: its path on A, content id, and the
    manifest B remembers for it."""
    path = a.root / "big.bin"
    path.write_bytes(random.Random(seed).randbytes(4 * MAX_CHUNK))
    a.sync_once()
    b.sync_once()
    content = b.state.local_tree()["big.bin"].content or ""
    manifest = b.executor.recent_manifests.get(content) or []
    assert len(manifest) > 2
    return path, content, manifest


def test_a_download_into_a_remembered_file_fetches_only_what_changed(
        two_engines: tuple[Engine, Engine]) -> None:
    a, b = two_engines
    path, _, _ = _big_file_on_both(a, b, 8)
    _edit_middle(path, 9)
    a.sync_once()
    received = b.transfers.stats.bytes_received
    assert b.sync_once().done == 1
    assert (b.root / "big.bin").read_bytes() == path.read_bytes()
    assert b.transfers.stats.bytes_received - received <= 2 * MAX_CHUNK + 65536


def test_a_remembered_manifest_that_does_not_match_is_dropped(
        two_engines: tuple[Engine, Engine]) -> None:
    a, b = two_engines
    path, content, manifest = _big_file_on_both(a, b, 10)
    # As if remembered wrong: the chunks in another order point at the wrong offsets.
    b.executor.recent_manifests.remember(content, manifest[::-1])
    _edit_middle(path, 11)
    a.sync_once()
    b.sync_once()  # the copy fails its check: nothing placed, the manifest forgotten
    assert b.executor.recent_manifests.get(content) is None
    b.sync_once()  # cuts the old file instead
    assert (b.root / "big.bin").read_bytes() == path.read_bytes()
