"""Foundation benchmarks: transfer speed beside the raw crypto pipeline, and commit throughput.

    python bench/foundation.py [--size-mib 256] [--files 5000] [--runs 3]

Starts a real server on 127.0.0.1, links a client, then measures in one run:
  * raw: FastCDC + keyed BLAKE3 + AES-GCM over the file in memory-bounded streaming (MB/s);
  * upload and download of a random file through the client library (MB/s, peak RSS of the
    client process, each in its own subprocess so the figure is the client's alone);
  * committing N small files (1-16 KiB, seeded) through the API: upload + batched commits.
Writes bench/results/foundation.{json,md}. Medians of --runs with min-max.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tandem", "serve", "--data", str(data),
                                "--port", str(port), "--gc-interval", "0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("server did not start")


def write_random_file(path: Path, size: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "wb") as handle:
        left = size
        while left:
            piece = min(left, 1 << 20)
            handle.write(rng.randbytes(piece))
            left -= piece


def make_small_tree(root: Path, count: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    paths = []
    for index in range(count):
        folder = root / f"t{index % 5}" / f"d{(index // 5) % 20}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"f{index}.bin"
        path.write_bytes(rng.randbytes(rng.randint(1024, 16 * 1024)))
        paths.append(path)
    return paths


def peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child
    would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


# ---- child modes: each runs in its own process so its peak RSS is its own ------------------

def child(mode: str, home: str, target: str) -> None:
    from tandem.client import Home, Session, Transfers
    from tandem.core.chunking import iter_chunks
    from tandem.memory import tune_malloc

    tune_malloc()  # as the `tandem` command does at start

    session = Session.open(Home(Path(home)))
    result: dict[str, float] = {}
    if mode == "raw":
        keys = session.keys
        start = time.perf_counter()
        with open(target, "rb") as handle:
            for chunk in iter_chunks(handle):
                keys.encrypt_chunk(keys.chunk_id(chunk), chunk)
        result["seconds"] = time.perf_counter() - start
    elif mode == "upload":
        with Transfers(session.api, session.keys) as transfers:
            start = time.perf_counter()
            uploaded = transfers.upload_file(Path(target))
            result["seconds"] = time.perf_counter() - start
            result["bytes_sent"] = transfers.stats.bytes_sent
        Path(target + ".manifest").write_text(json.dumps(uploaded.manifest))
    elif mode == "download":
        manifest = [tuple(x) for x in json.loads(Path(target + ".manifest").read_text())]
        with Transfers(session.api, session.keys) as transfers:
            start = time.perf_counter()
            transfers.download(manifest, Path(target + ".down"))  # type: ignore[arg-type]
            result["seconds"] = time.perf_counter() - start
    elif mode == "commit":
        result.update(commit_small_files(session, Path(target)))
    result["peak_rss_mib"] = peak_rss_mib()
    session.close()
    print(json.dumps(result))


def commit_small_files(session: object, root: Path) -> dict[str, float]:
    from tandem.client import Transfers
    from tandem.core.crypto import b64encode

    keys, api = session.keys, session.api  # type: ignore[attr-defined]
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    start = time.perf_counter()
    with Transfers(api, keys) as transfers:
        uploads = transfers.upload(paths)
    folder_ids: dict[Path, str] = {root: "root"}
    ops = []
    for path, uploaded in zip(paths, uploads, strict=True):
        assert not isinstance(uploaded, Exception), uploaded
        for folder in reversed(path.relative_to(root).parents[:-1]):
            absolute = root / folder
            if absolute not in folder_ids:
                folder_ids[absolute] = secrets.token_hex(16)
                parent = folder_ids[absolute.parent]
                ops.append({"op": "create", "id": folder_ids[absolute], "parent_id": parent,
                            "name": b64encode(keys.encrypt_name(parent, absolute.name)),
                            "kind": "folder"})
        parent = folder_ids[path.parent]
        ops.append({"op": "create", "id": secrets.token_hex(16), "parent_id": parent,
                    "name": b64encode(keys.encrypt_name(parent, path.name)), "kind": "file",
                    "size": uploaded.size, "mtime_ns": uploaded.mtime_ns,
                    "manifest": [list(e) for e in uploaded.manifest]})
    for first in range(0, len(ops), 2500):
        api.batch(ops[first : first + 2500])
    return {"seconds": time.perf_counter() - start, "files": len(paths)}


def run_child(mode: str, home: Path, target: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(home), str(target)],
                         check=True, capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    os.environ["TANDEM_INSECURE_FAST_KDF"] = "1"
    work = Path(tempfile.mkdtemp(prefix="tandem-bench-"))
    server, url = start_server(work / "server")
    try:
        rows = measure(work, url, args)
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    report(rows, args)


def measure(work: Path, url: str, args: argparse.Namespace) -> dict[str, object]:
    from tandem.client import Home, account

    size = args.size_mib << 20
    raw, up, down, up_rss, down_rss, commit, commit_rss = [], [], [], [], [], [], []
    for run in range(args.runs):
        home = Home(work / f"home{run}")
        account.signup(home, url, f"bench{run}@example.org", "bench-password")[0].close()
        big = work / f"big{run}.bin"
        write_random_file(big, size, seed=run)
        raw.append(size / run_child("raw", home.path, big)["seconds"] / 1e6)
        result = run_child("upload", home.path, big)
        up.append(size / result["seconds"] / 1e6)
        up_rss.append(result["peak_rss_mib"])
        result = run_child("download", home.path, big)
        down.append(size / result["seconds"] / 1e6)
        down_rss.append(result["peak_rss_mib"])
        if file_digest(Path(str(big) + ".down")) != file_digest(big):
            raise SystemExit("download differs from upload")
        for leftover in (big, Path(str(big) + ".down")):
            leftover.unlink()
        tree = work / f"small{run}"
        make_small_tree(tree, args.files, seed=run)
        result = run_child("commit", home.path, tree)
        commit.append(result["files"] / result["seconds"])
        commit_rss.append(result["peak_rss_mib"])
        shutil.rmtree(tree)
    return {
        "raw_pipeline_mb_s": summary(raw), "upload_mb_s": summary(up),
        "download_mb_s": summary(down), "upload_peak_rss_mib": summary(up_rss),
        "download_peak_rss_mib": summary(down_rss), "commit_files_per_s": summary(commit),
        "commit_peak_rss_mib": summary(commit_rss),
    }


def report(rows: dict[str, object], args: argparse.Namespace) -> None:
    RESULTS.mkdir(exist_ok=True)
    meta = {"size_mib": args.size_mib, "files": args.files, "runs": args.runs,
            "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}
    (RESULTS / "foundation.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    lines = [f"# Foundation benchmark ({meta['date']}, {args.runs} runs, medians with min-max)", "",
             "| measure | median | min | max |", "| --- | --- | --- | --- |"]
    for name, value in rows.items():
        v = value  # type: ignore[assignment]
        lines.append(f"| {name} | {v['median']:.1f} | {v['min']:.1f} | {v['max']:.1f} |")  # type: ignore[index]
    raw = rows["raw_pipeline_mb_s"]["median"]  # type: ignore[index]
    lines += ["", f"Upload / raw pipeline: {rows['upload_mb_s']['median'] / raw:.0%}; "  # type: ignore[index]
              f"download / raw pipeline: {rows['download_mb_s']['median'] / raw:.0%}."]  # type: ignore[index]
    (RESULTS / "foundation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
