"""The chunk pack framing."""

from __future__ import annotations

import pytest

from tandem.core import wire


def test_download_frames_reassemble_from_any_split() -> None:
    frames = [("a" * 64, b"x" * 10), ("b" * 64, b""), ("c" * 64, b"y" * 1000)]
    stream = b"".join(wire.encode_download_frame(cid, data) for cid, data in frames)
    for step in (1, 7, 36, len(stream)):
        pieces = [stream[i : i + step] for i in range(0, len(stream), step)]
        assert list(wire.decode_download_frames(pieces)) == frames


def test_truncated_stream_is_an_error() -> None:
    stream = wire.encode_download_frame("a" * 64, b"x" * 10)
    with pytest.raises(wire.FramingError):
        list(wire.decode_download_frames([stream[:-1]]))


def test_upload_header_round_trip_and_length_cap() -> None:
    frame = wire.encode_upload_frame("a" * 64, "b" * 64, b"data")
    assert wire.decode_upload_header(frame[: wire.UPLOAD_HEADER_SIZE]) == ("a" * 64, "b" * 64, 4)
    huge = bytes(32) + bytes(32) + (wire.MAX_CHUNK_CIPHERTEXT + 1).to_bytes(4, "big")
    with pytest.raises(wire.FramingError):
        wire.decode_upload_header(huge)


_UPLOADS = [("a" * 64, "1" * 64, b"x" * 10), ("b" * 64, "2" * 64, b""),
            ("c" * 64, "3" * 64, b"y" * 1000), ("d" * 64, "4" * 64, b"z")]


def _read_uploads(pieces: list[bytes], take_every: int) -> list[tuple[str, str, bytes]]:
    """Feed the pieces, taking the complete frames after every `take_every` pieces."""
    reader = wire.UploadFrameReader()
    found = []
    for number, piece in enumerate(pieces, 1):
        reader.feed(piece)
        if number % take_every == 0 or number == len(pieces):
            data, frames = reader.take()
            assert len(data) == sum(f.length for f in frames)  # exactly the frames taken
            found += [(f.chunk_id, f.content_hash, bytes(data[f.offset : f.offset + f.length]))
                      for f in frames]
    reader.finish()
    return found


@pytest.mark.parametrize("step", [1, 7, wire.UPLOAD_HEADER_SIZE, 100, 10_000])
@pytest.mark.parametrize("take_every", [1, 3, 1_000_000])
def test_upload_frames_read_from_any_split(step: int, take_every: int) -> None:
    stream = b"".join(wire.encode_upload_frame(*frame) for frame in _UPLOADS)
    pieces = [stream[i : i + step] for i in range(0, len(stream), step)]
    assert _read_uploads(pieces, take_every) == _UPLOADS


@pytest.mark.parametrize("cut", [1, wire.UPLOAD_HEADER_SIZE - 1, wire.UPLOAD_HEADER_SIZE + 5])
def test_upload_stream_ending_inside_a_frame_is_an_error(cut: int) -> None:
    stream = wire.encode_upload_frame("a" * 64, "b" * 64, b"x" * 10)
    reader = wire.UploadFrameReader()
    reader.feed(stream[:cut])
    with pytest.raises(wire.FramingError):
        reader.finish()


def test_upload_header_over_the_length_cap_is_refused_while_reading() -> None:
    huge = bytes(32) + bytes(32) + (wire.MAX_CHUNK_CIPHERTEXT + 1).to_bytes(4, "big")
    with pytest.raises(wire.FramingError):
        wire.UploadFrameReader().feed(huge)
