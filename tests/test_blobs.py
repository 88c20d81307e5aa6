"""The blob store's contract, written once over every implementation: a local folder and an
S3 bucket (a real SeaweedFS, see `tests/seaweed.py`; skipped, with the reason, only where its
binary is absent). Each test gets a fresh folder or key prefix, opened by URL as the server does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tandem.server.blobs import BlobStore, open_blob_store
from tandem.server.blobs.local import LocalBlobStore

#: name -> opener(test request, fresh folder).
BLOB_STORES: dict[str, Callable[[pytest.FixtureRequest, Path], BlobStore]] = {
    "local": lambda _, folder: open_blob_store(folder.resolve().as_uri()),
    "s3": lambda request, _: open_blob_store(request.getfixturevalue("weed").url()),
}

KEY = "7/" + "ab" * 32


@pytest.fixture(params=list(BLOB_STORES))
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return BLOB_STORES[request.param](request, tmp_path / "blobs")


def test_put_then_get(blobs: BlobStore) -> None:
    blobs.put(KEY, b"ciphertext")
    assert blobs.get(KEY) == b"ciphertext"
    assert blobs.exists(KEY)


def test_put_is_create_only(blobs: BlobStore) -> None:
    """A key names one content: a second put (a retry, a race) never replaces the first."""
    blobs.put(KEY, b"first")
    blobs.put(KEY, b"second, different")
    assert blobs.get(KEY) == b"first"


def test_get_of_a_missing_key_raises_key_error(blobs: BlobStore) -> None:
    with pytest.raises(KeyError):
        blobs.get(KEY)
    assert not blobs.exists(KEY)


def test_delete_is_idempotent(blobs: BlobStore) -> None:
    blobs.put(KEY, b"x")
    blobs.delete(KEY)
    blobs.delete(KEY)
    assert not blobs.exists(KEY)
    with pytest.raises(KeyError):
        blobs.get(KEY)


def test_keys_lists_every_key_and_filters_by_prefix(blobs: BlobStore) -> None:
    wanted = {f"1/{i:02x}" + "0" * 62 for i in range(5)} | {"2/" + "f" * 64}
    for key in wanted:
        blobs.put(key, key.encode())
    assert set(blobs.keys()) == wanted
    assert set(blobs.keys("1/")) == {k for k in wanted if k.startswith("1/")}
    assert list(blobs.keys("3/")) == []


def test_sizes_lists_every_key_with_its_length(blobs: BlobStore) -> None:
    """One listing gives lengths too: a copy between stores skips what the target holds."""
    wanted = {f"4/p/{i:032x}": bytes(i * 100) for i in range(4)} | {"5/" + "e" * 64: b"x"}
    blobs.put_many(list(wanted.items()))
    assert dict(blobs.sizes()) == {key: len(data) for key, data in wanted.items()}
    assert dict(blobs.sizes("4/p/")) == {k: len(d) for k, d in wanted.items() if k.startswith("4/")}
    assert dict(blobs.sizes("6/")) == {}


def test_get_range_reads_exactly_the_bytes_asked(blobs: BlobStore) -> None:
    """A pack's chunk is read by range: exactly those bytes, fewer only past the end."""
    pack = "7/p/" + "0a" * 16
    data = bytes(range(256)) * 40
    blobs.put(pack, data)
    assert blobs.get_range(pack, 0, 10) == data[:10]
    assert blobs.get_range(pack, 1000, 3000) == data[1000:4000]
    assert blobs.get_range(pack, len(data) - 5, 5) == data[-5:]
    assert blobs.get_range(pack, len(data) - 5, 50) == data[-5:], "short at the end: callers check"
    assert blobs.get_range(pack, len(data) + 10, 5) == b""
    assert blobs.get_range(pack, 7, 0) == b""
    assert set(blobs.keys("7/")) == {pack}
    with pytest.raises(KeyError):
        blobs.get_range("7/p/" + "0b" * 16, 0, 1)
    with pytest.raises(ValueError):
        blobs.get_range(pack, -1, 1)


def test_empty_blob_round_trips(blobs: BlobStore) -> None:
    blobs.put(KEY, b"")
    assert blobs.get(KEY) == b""


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a//b", "", "a/", ".hidden",
                                 "a\\b", "a/b\x00c"],
                         ids=["dotdot", "nested dotdot", "absolute", "empty segment", "empty",
                              "trailing slash", "leading dot", "backslash", "nul"])
def test_keys_that_try_to_escape_are_refused(blobs: BlobStore, key: str, tmp_path: Path) -> None:
    for attempt in (lambda: blobs.put(key, b"x"), lambda: blobs.get(key), lambda: blobs.delete(key),
                    lambda: blobs.exists(key), lambda: blobs.get_range(key, 0, 1)):
        with pytest.raises(ValueError):
            attempt()
    assert not (tmp_path / "x").exists()


def test_local_store_keeps_files_inside_its_folder(tmp_path: Path) -> None:
    """Local only: the file layout, and `local_path` for serving a blob with sendfile."""
    store = LocalBlobStore(tmp_path / "blobs")
    store.put(KEY, b"data")
    path = store.local_path(KEY)
    assert path is not None and path.read_bytes() == b"data"
    assert path.resolve().is_relative_to((tmp_path / "blobs").resolve())
    assert store.local_path("7/" + "cd" * 32) is None
    assert not any((tmp_path / "blobs" / ".tmp").iterdir()), "no temporary file is left behind"


def test_put_many_stores_a_batch_and_keeps_existing_blobs(blobs: BlobStore) -> None:
    blobs.put(KEY, b"first")
    items = [(f"7/{i:02x}" + "cd" * 31, bytes([i]) * (i + 1)) for i in range(20)]
    blobs.put_many([(KEY, b"other"), *items])
    assert blobs.get(KEY) == b"first"
    assert all(blobs.get(key) == data for key, data in items)


def test_a_failed_batch_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Local only: a batch whose rename fails (here: the target folder is a file) removes the
    temp files it wrote, and stores nothing under a final name half-written."""
    store = LocalBlobStore(tmp_path / "blobs")
    good, bad = "7/" + "ab" * 32, "8/" + "cd" * 32
    (tmp_path / "blobs" / "8").write_bytes(b"not a folder")
    with pytest.raises(OSError):
        store.put_many([(good, b"one"), (bad, b"two")])
    assert not any((tmp_path / "blobs" / ".tmp").iterdir())
