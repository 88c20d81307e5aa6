"""Encrypted transfers through the real server: round trips, dedup, resume, atomic downloads."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem.client import ApiError, Home, Session, Transfers, account
from tandem.client.transfer import FileChangedError
from tandem.core.chunking import MAX_CHUNK
from tests.sync_helpers import HoldingProxy


@pytest.fixture
def session(server, tmp_path: Path) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    linked, _ = account.signup(Home(tmp_path / "home"), server.url, "t@example.org", "pw")
    try:
        yield linked
    finally:
        linked.close()


@pytest.fixture
def transfers(session: Session) -> Iterator[Transfers]:
    with Transfers(session.api, session.keys) as moving:
        yield moving


def _random_file(path: Path, size: int, seed: int = 0) -> Path:
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


@pytest.mark.parametrize("size", [0, 1, 100_000, 3 * MAX_CHUNK + 12345])
def test_upload_then_download_is_byte_identical(transfers: Transfers, tmp_path: Path, size: int) -> None:
    source = _random_file(tmp_path / "source.bin", size)
    uploaded = transfers.upload_file(source)
    assert uploaded.size == size
    assert sum(s for _, s in uploaded.manifest) == size
    target = tmp_path / "copy.bin"
    transfers.download(uploaded.manifest, target, mtime_ns=uploaded.mtime_ns)
    assert target.read_bytes() == source.read_bytes()
    assert os.stat(target).st_mtime_ns == uploaded.mtime_ns


def test_same_content_twice_sends_nothing_the_second_time(transfers: Transfers, tmp_path: Path) -> None:
    source = _random_file(tmp_path / "a.bin", 5 << 20)
    transfers.upload_file(source)
    sent = transfers.stats.chunks_sent
    assert sent > 1
    copy = tmp_path / "b.bin"
    copy.write_bytes(source.read_bytes())
    transfers.upload_file(copy)
    assert transfers.stats.chunks_sent == sent


def test_small_edit_in_a_large_file_sends_only_nearby_chunks(transfers: Transfers, tmp_path: Path) -> None:
    source = _random_file(tmp_path / "big.bin", 16 << 20)
    first = transfers.upload_file(source)
    with open(source, "r+b") as handle:
        handle.seek(8 << 20)
        handle.write(os.urandom(4096))
    sent_before = transfers.stats.bytes_sent
    second = transfers.upload_file(source)
    assert len(set(second.manifest) - set(first.manifest)) <= 2
    assert transfers.stats.bytes_sent - sent_before < 2 * MAX_CHUNK


def test_interrupted_upload_resumes_without_resending(session: Session, tmp_path: Path) -> None:
    """Chunks that reached the server before an interruption are not sent again."""
    source = _random_file(tmp_path / "big.bin", 12 << 20)
    head = tmp_path / "head.bin"
    head.write_bytes(source.read_bytes()[: 6 << 20])  # what got through before the "crash"
    with Transfers(session.api, session.keys) as first_attempt:
        already_there = set(first_attempt.upload_file(head).manifest)
    with Transfers(session.api, session.keys) as retry:
        result = retry.upload_file(source)
    not_yet_sent = [c for c in result.manifest if c not in already_there]
    assert len(not_yet_sent) < len(result.manifest)
    assert retry.stats.chunks_sent == len(not_yet_sent)


def test_many_small_files_share_requests(transfers: Transfers, tmp_path: Path) -> None:
    paths = [_random_file(tmp_path / f"f{i}", 1000 + i, seed=i) for i in range(300)]
    results = transfers.upload(paths)
    assert all(not isinstance(r, Exception) for r in results)
    assert transfers.stats.chunks_sent == 300
    target = tmp_path / "check"
    transfers.download(results[17].manifest, target)  # type: ignore[union-attr]
    assert target.read_bytes() == paths[17].read_bytes()


def test_upload_progress_adds_up_to_each_file_in_steps(transfers: Transfers, tmp_path: Path) -> None:
    """A large file is reported chunk by chunk (what `tandem status` shows while it goes up);
    a duplicate file counts its bytes too, though nothing of it is sent."""
    paths = [_random_file(tmp_path / "big", 12 * 1024 * 1024, seed=1),
             _random_file(tmp_path / "small", 5000, seed=2)]
    paths.append(_random_file(tmp_path / "copy", 5000, seed=2))
    heard: list[tuple[int, int]] = []
    results = transfers.upload(paths, lambda index, count: heard.append((index, count)))
    assert all(not isinstance(r, Exception) for r in results)
    for index, path in enumerate(paths):
        assert sum(c for i, c in heard if i == index) == path.stat().st_size
    assert len([i for i, _ in heard if i == 0]) > 1


def test_unreadable_file_is_reported_and_the_rest_uploads(transfers: Transfers, tmp_path: Path) -> None:
    good = _random_file(tmp_path / "good", 10)
    results = transfers.upload([tmp_path / "missing", good])
    assert isinstance(results[0], OSError)
    assert not isinstance(results[1], Exception)


def test_failed_download_leaves_target_untouched_and_no_temp_file(
        transfers: Transfers, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    target = folder / "keep.txt"
    target.write_text("the old content")
    bogus = [("ab" * 32, 10)]
    with pytest.raises(ApiError):
        transfers.download(bogus, target)
    assert target.read_text() == "the old content"
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


def test_downloaded_files_get_the_usual_mode(transfers: Transfers, tmp_path: Path) -> None:
    """Temp files start private (0600); a downloaded file must end up as any new file would."""
    uploaded = transfers.upload_file(_random_file(tmp_path / "source.bin", 100))
    target = tmp_path / "copy.bin"
    transfers.download(uploaded.manifest, target)
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def _known(transfers: Transfers, path: Path) -> tuple[list[tuple[str, int]], tuple[int, int, int, int]]:
    """The manifest a scan would compute now, with the file's stat (size, mtime, ctime, inode)."""
    from tandem.core.chunking import iter_chunks

    with open(path, "rb") as handle:
        manifest = [(transfers.keys.chunk_id(c), len(c)) for c in iter_chunks(handle)]
    st = path.stat()
    return manifest, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def test_a_scanned_large_file_sends_only_its_missing_chunks(transfers: Transfers, tmp_path: Path) -> None:
    source = _random_file(tmp_path / "big.bin", 16 << 20)
    first = transfers.upload_file(source)
    data = bytearray(source.read_bytes())
    data[8 << 20 : (8 << 20) + 4096] = os.urandom(4096)
    source.write_bytes(data)
    known = _known(transfers, source)
    sent = transfers.stats.chunks_sent
    [result] = transfers.upload([source], known=[known])
    assert not isinstance(result, Exception)
    assert result.manifest == known[0] != first.manifest
    assert 1 <= transfers.stats.chunks_sent - sent <= 2  # the edited chunk (a cut may move)
    target = tmp_path / "copy.bin"
    transfers.download(result.manifest, target)
    assert target.read_bytes() == bytes(data)


def test_a_file_changed_since_its_scan_is_read_whole(transfers: Transfers, tmp_path: Path) -> None:
    source = _random_file(tmp_path / "big.bin", 6 << 20)
    stale = _known(transfers, source)
    _random_file(source, 6 << 20, seed=1)  # new content, new stat
    [result] = transfers.upload([source], known=[stale])
    assert not isinstance(result, Exception)
    assert result.manifest == _known(transfers, source)[0] != stale[0]


def test_a_chunk_that_is_not_what_the_scan_saw_is_refused(transfers: Transfers, tmp_path: Path) -> None:
    source = _random_file(tmp_path / "big.bin", 6 << 20)
    manifest, signature = _known(transfers, source)
    wrong = [("0" * 64, size) if i == 1 else (cid, size) for i, (cid, size) in enumerate(manifest)]
    [result] = transfers.upload([source], known=[(wrong, signature)])
    assert isinstance(result, FileChangedError)


def test_a_read_failing_with_eio_mid_upload_is_that_file_s_error(
        transfers: Transfers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that fails under a file the scan could read (EIO on the upload's own read of a
    missing chunk): that file's result is the OSError, the others upload. A mock, as a
    failing disk cannot be made here with a stable stat (the sync tests make real EIO with
    a bind mount, which changes the file's stat, so the scanner meets it instead)."""
    import errno

    bad = _random_file(tmp_path / "bad.bin", 3 << 20, seed=2)
    good = _random_file(tmp_path / "good.bin", 3 << 20, seed=3)
    real_pread = os.pread
    bad_inode = bad.stat().st_ino

    def pread(fd: int, size: int, offset: int) -> bytes:
        if os.fstat(fd).st_ino == bad_inode and offset > 0:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_pread(fd, size, offset)

    monkeypatch.setattr(os, "pread", pread)
    results = transfers.upload([bad, good], known=[_known(transfers, bad), _known(transfers, good)])
    assert isinstance(results[0], OSError) and results[0].errno == errno.EIO
    assert not isinstance(results[1], Exception)
    copy = tmp_path / "copy.bin"
    transfers.download(results[1].manifest, copy)
    assert copy.read_bytes() == good.read_bytes()


def test_a_file_whose_size_says_zero_is_read_like_the_scan_reads_it(
        transfers: Transfers, tmp_path: Path) -> None:
    """procfs (or a FUSE filesystem) reports 0 bytes for a file that holds some. The upload
    skipped reading it and committed it empty, while the scan had hashed its real bytes: the
    next round saw the two differ and uploaded again, a new version per round, 50 a pass."""
    source = Path("/proc/self/cmdline")
    assert source.stat().st_size == 0
    [result] = transfers.upload([source])
    assert not isinstance(result, Exception)
    content = source.read_bytes()
    assert result.size == len(content) > 0
    copy = tmp_path / "copy"
    transfers.download(result.manifest, copy)
    assert copy.read_bytes() == content


def test_offers_that_do_not_wait_are_dropped_while_every_sender_is_busy(
        server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The scan's small files are offered without waiting: with every window in flight held
    by the server, the next window's chunks are dropped at once (the file's own upload sends
    them later), and those that went are known stored once the holds end."""
    proxy = HoldingProxy(server.url, b"POST /chunks/missing")
    try:
        linked, _ = account.signup(Home(tmp_path / "home"), proxy.url, "o@example.org", "pw")
        with Transfers(linked.api, linked.keys, workers=2) as transfers:
            batch = transfers.upload_batch()
            pieces = [random.Random(i).randbytes(1 << 20) for i in range(20)]
            ids = [linked.keys.chunk_id(piece) for piece in pieces]
            proxy.holding = True

            def offer_all() -> None:
                for chunk_id, piece in zip(ids, pieces, strict=True):
                    batch.offer(chunk_id, piece, wait=False)

            offering = threading.Thread(target=offer_all)
            offering.start()
            offering.join(timeout=30)
            assert not offering.is_alive(), "an offer that does not wait waited"
            kept = set(batch.known)
            # A window held in flight, one filling, the rest dropped.
            assert 0 < len(kept) < len(ids)
            proxy.holding = False
            proxy.release()
            batch.finish()
            assert batch.stored == kept
            assert set(linked.api.missing_chunks(ids)) == set(ids) - kept
        linked.close()
    finally:
        proxy.close()
