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
