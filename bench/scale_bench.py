"""Scale-out benchmark: the embedded server beside PostgreSQL + SeaweedFS, one process beside two
behind nginx (docs/DEPLOY.md's configuration, with TLS).

    python bench/scale_bench.py [--runs 3] [--files 5000] [--size-mib 256] [--clients 1,2]

Setups, each started fresh on 127.0.0.1 (every process stopped by PID at the end):
  * sqlite+folder: one `tandem serve`, SQLite and a blob folder (the embedded default);
  * pg+s3: one process on PostgreSQL (fsync on) and SeaweedFS (`weed mini`), direct;
  * pg+s3, nginx, 1 process / 2 processes: the same behind nginx over TLS.
Measures, per run, with N clients at once (separate accounts, each its own process):
  * commit throughput: N x `--files` small files (1-16 KiB) uploaded and committed in batches
    (bench/foundation.py's client), files per second over the slowest client's time;
  * upload throughput: N x a `--size-mib` random file uploaded, MB/s over the slowest.
Writes bench/results/scale.{json,md}: medians of --runs with min-max.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import foundation  # noqa: E402

from tests import nginx, seaweed  # noqa: E402
from tests.conftest import free_port, start_server, stop_server  # noqa: E402
from tests.postgres import PostgresCluster  # noqa: E402
from tests.test_server_tls import self_signed  # noqa: E402

RESULTS = HERE / "results"
SETUPS = ("sqlite+folder", "pg+s3", "pg+s3, nginx, 1 process", "pg+s3, nginx, 2 processes")


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": len(values)}


class Services:
    """PostgreSQL (durable) and SeaweedFS for the scale-out setups, started once."""

    def __init__(self, stack: ExitStack) -> None:
        if seaweed.missing_reason() or nginx.missing_reason():
            raise SystemExit(seaweed.missing_reason() or nginx.missing_reason())
        self.pg = PostgresCluster(free_port(), durable=True)
        stack.callback(self.pg.stop)
        self.weed = seaweed.SeaweedS3()
        stack.callback(self.weed.stop)


def start_setup(name: str, work: Path, services: Services | None, stack: ExitStack) -> str:
    """Start a setup's processes; returns the URL clients use."""
    data = work / f"data-{SETUPS.index(name)}"
    if name == "sqlite+folder":
        server = start_server(data)
        stack.callback(stop_server, server)
        return server.url
    assert services is not None
    serve = ("--database", services.pg.new_database(), "--blobs", services.weed.url())
    processes = []
    for _ in range(2 if name.endswith("2 processes") else 1):
        processes.append(start_server(data, *serve))
        stack.callback(stop_server, processes[-1])
    if "nginx" not in name:
        return processes[0].url
    cert, key = self_signed(work)
    os.environ["SSL_CERT_FILE"] = str(cert)
    port = free_port()
    upstreams = [p.url.removeprefix("http://") for p in processes]
    swaps = {"127.0.0.1:8081": upstreams[0], "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
             "/etc/letsencrypt/live/tandem.example.org/fullchain.pem": str(cert),
             "/etc/letsencrypt/live/tandem.example.org/privkey.pem": str(key)}
    site = nginx.guide_config()
    if len(upstreams) == 1:  # the guide's second upstream line goes
        site = "\n".join(line for line in site.splitlines() if "127.0.0.1:8082" not in line)
    else:
        swaps["127.0.0.1:8082"] = upstreams[1]
    proxy = nginx.Nginx(nginx.adapted(site, swaps), port, cert)
    stack.callback(proxy.stop)
    return proxy.url


def run_children(mode: str, jobs: list[tuple[Path, Path]]) -> list[dict[str, float]]:
    """foundation.py's child `mode` for each (home, target) at once; their JSON results."""
    script = HERE / "foundation.py"
    running = [subprocess.Popen([sys.executable, str(script), "--child", mode, str(home), str(target)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for home, target in jobs]
    results = []
    for process in running:
        try:
            out, err = process.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=10)
            raise SystemExit(f"{mode} client timed out") from None
        if process.returncode != 0:
            raise SystemExit(f"{mode} client failed: {err.strip().splitlines()[-1:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def measure(url: str, work: Path, clients: int, run: int,
            args: argparse.Namespace) -> tuple[float, float]:
    """(files/s, MB/s) of `clients` clients at once on `url`."""
    from tandem.client import Home, account

    homes = []
    for index in range(clients):
        home = Home(work / f"home-{run}-{clients}-{index}-{time.monotonic_ns()}")
        account.signup(home, url, f"bench-{time.monotonic_ns()}@example.org", "bench-password")[0].close()
        homes.append(home.path)
    trees, bigs = [], []
    for index, home in enumerate(homes):
        tree = home.parent / f"{home.name}-small"
        foundation.make_small_tree(tree, args.files, seed=run * 10 + index)
        big = home.parent / f"{home.name}-big.bin"
        foundation.write_random_file(big, args.size_mib << 20, seed=run * 10 + index)
        trees.append(tree)
        bigs.append(big)
    committed = run_children("commit", list(zip(homes, trees, strict=True)))
    files_per_s = sum(r["files"] for r in committed) / max(r["seconds"] for r in committed)
    uploaded = run_children("upload", list(zip(homes, bigs, strict=True)))
    mb_per_s = clients * (args.size_mib << 20) / max(r["seconds"] for r in uploaded) / 1e6
    for path in trees + bigs:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return files_per_s, mb_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--clients", default="1,2", help="client counts, comma-separated")
    parser.add_argument("--setups", default=",".join(str(i) for i in range(len(SETUPS))),
                        help="indexes into: " + "; ".join(f"{i}: {s}" for i, s in enumerate(SETUPS)))
    args = parser.parse_args()
    os.environ["TANDEM_INSECURE_FAST_KDF"] = "1"
    counts = [int(c) for c in args.clients.split(",")]
    chosen = [SETUPS[int(i)] for i in args.setups.split(",")]
    work = Path(tempfile.mkdtemp(prefix="tandem-scale-bench-"))
    rows: dict[str, dict[str, object]] = {}
    try:
        with ExitStack() as stack:
            services = Services(stack) if any(s != "sqlite+folder" for s in chosen) else None
            for name in chosen:
                with ExitStack() as setup:
                    url = start_setup(name, work, services, setup)
                    for clients in counts:
                        commits, uploads = [], []
                        for run in range(args.runs):
                            files_per_s, mb_per_s = measure(url, work, clients, run, args)
                            commits.append(files_per_s)
                            uploads.append(mb_per_s)
                            print(f"{name}, {clients} client(s), run {run + 1}: {files_per_s:.0f}"
                                  f" files/s, {mb_per_s:.1f} MB/s", flush=True)
                        rows[f"{name} | {clients}"] = {"setup": name, "clients": clients,
                                                       "commit_files_per_s": summary(commits),
                                                       "upload_mb_s": summary(uploads)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(rows, args)


def report(rows: dict[str, dict[str, object]], args: argparse.Namespace) -> None:
    RESULTS.mkdir(exist_ok=True)
    meta = {"files": args.files, "size_mib": args.size_mib, "runs": args.runs,
            "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}
    (RESULTS / "scale.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")

    def cell(value: object) -> str:
        v: dict[str, float] = value  # type: ignore[assignment]
        return f"{v['median']:.0f} ({v['min']:.0f}–{v['max']:.0f})" if v["median"] >= 100 else \
            f"{v['median']:.1f} ({v['min']:.1f}–{v['max']:.1f})"

    lines = [f"# Scale-out benchmark ({meta['date']}, {args.runs} runs, {meta['cpus']} CPUs,"
             " medians with min–max)", "",
             f"Each client: {args.files} small files committed; one {args.size_mib} MiB file uploaded."
             " N clients run at once on separate accounts; throughput is their total over the"
             " slowest one's time.", "",
             "| setup | clients | commit (files/s) | upload (MB/s) |", "| --- | --- | --- | --- |"]
    for row in rows.values():
        lines.append(f"| {row['setup']} | {row['clients']} | {cell(row['commit_files_per_s'])}"
                     f" | {cell(row['upload_mb_s'])} |")
    (RESULTS / "scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
