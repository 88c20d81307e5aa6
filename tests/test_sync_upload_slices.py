"""Uploads are committed in slices of growing size, so other devices start early."""

import pytest

from tandem.sync.executor import upload_slices
from tandem.sync.model import LocalEntry
from tandem.sync.planner import Upload

MIB = 1 << 20


def uploads(sizes: list[int]) -> list[Upload]:
    return [Upload(f"f{i:05d}", LocalEntry("file", size=size)) for i, size in enumerate(sizes)]


@pytest.mark.parametrize(
    ("sizes", "expected_lengths"),
    [
        ([], []),
        ([10], [1]),
        # 64 files, then 128, then 256 ... up to 2048 files per slice
        ([1] * 64, [64]),
        ([1] * 65, [64, 1]),
        ([1] * 1000, [64, 128, 256, 512, 40]),
        ([1] * 10_000, [64, 128, 256, 512, 1024, 2048, 2048, 2048, 1872]),
        # by bytes: 8 MiB first, then 16, 32, 64, 128 MiB
        ([4 * MIB] * 4, [2, 2]),
        ([64 * MIB] * 4, [1, 1, 1, 1]),
        # a file larger than the limit is a slice of its own
        ([1, 300 * MIB, 1], [1, 1, 1]),
    ],
)
def test_slices_grow_and_keep_every_upload_once(sizes: list[int], expected_lengths: list[int]) -> None:
    ops = uploads(sizes)
    slices = upload_slices(ops)
    assert [len(s) for s in slices] == expected_lengths
    assert [op for s in slices for op in s] == sorted(ops, key=lambda op: op.path)


def test_slices_are_in_path_order() -> None:
    ops = list(reversed(uploads([1] * 200)))
    flat = [op.path for s in upload_slices(ops) for op in s]
    assert flat == sorted(flat)
