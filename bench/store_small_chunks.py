"""Server storage cost of many small chunks: one blob file per chunk (the layout before packs)
beside one pack per upload batch.

    PYTHONPATH=src .venv/bin/python bench/store_small_chunks.py [--chunks 5000] [--runs 3]

In process, no HTTP: N random chunks of 1-16 KiB (+ the 29-byte encryption overhead), grouped
as the client groups uploads (<= 4 MiB or 1,000 chunks per request), stored under the upload
lock either as blobs of their own (`put_many`, then `record_chunks`, as `_store` did before
packs) or as one pack per batch (`packs.store_pack`). Prints the time and the files created.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tandem.server.app import open_services
from tandem.server.config import ServerConfig
from tandem.server.deps import chunk_key
from tandem.server.packs import store_pack


def batches_of(count: int, seed: int) -> list[dict[str, bytes]]:
    rng = random.Random(seed)
    batches: list[dict[str, bytes]] = [{}]
    size = 0
    for _ in range(count):
        data = os.urandom(rng.randint(1024, 16 * 1024) + 29)
        if len(batches[-1]) >= 1000 or size + len(data) > 4 << 20:
            batches.append({})
            size = 0
        batches[-1][os.urandom(32).hex()] = data
        size += len(data)
    return batches


def run(layout: str, batches: list[dict[str, bytes]]) -> tuple[float, int]:
    work = Path(tempfile.mkdtemp(prefix="tandem-store-bench-"))
    parts = open_services(ServerConfig(data_dir=work, gc_interval=0))
    try:
        account = parts.store.create_account("bench@example.org", b"s" * 16, "{}", b"h", b"w",
                                             b"r", 0)
        start = time.perf_counter()
        for fresh in batches:
            with parts.locks.uploading(account):
                if layout == "per-chunk":
                    parts.blobs.put_many([(chunk_key(account, c), d) for c, d in fresh.items()])
                    parts.store.record_chunks(account, [(c, len(d)) for c, d in fresh.items()], 0)
                else:
                    store_pack(parts, account, fresh)
        elapsed = time.perf_counter() - start
        files = sum(1 for p in (work / "blobs").rglob("*") if p.is_file())
        return elapsed, files
    finally:
        parts.store.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"per-chunk": [], "packs": []}
    for run_number in range(args.runs):
        batches = batches_of(args.chunks, seed=run_number)
        for layout in times:  # alternate, so load from elsewhere hits both alike
            elapsed, files = run(layout, batches)
            times[layout].append(elapsed)
            print(f"run {run_number + 1} {layout:9} {len(batches)} batches, {files} files,"
                  f" {elapsed:.2f} s")
    for layout, values in times.items():
        print(f"{layout:9} median {statistics.median(values):.2f} s"
              f" (min {min(values):.2f}, max {max(values):.2f})")


if __name__ == "__main__":
    main()
