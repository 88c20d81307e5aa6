"""Backup benchmark: `tandem backup run` beside `restic backup` to a local repository.

Workloads are BENCH.md's `small` (5,000 files, 100 folders) and `large` (4 x 64 MiB), made
by bench/sync_workload.py from a seed. Each run starts fresh for both tools (a new Tandem
account and home against a new server; a new restic repository and cache), then times the
first backup and a no-change rerun, each as the whole command a user types (process start
included). Tools alternate which goes first. The first run of each workload restores both
tools' snapshots and checks every file by size and SHA-256 (a fast wrong answer is a failure).

    apt-get install -y restic
    .venv/bin/python bench/backup_bench.py [--runs 3] [--seed 1]

Writes bench/results/backup.md and backup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sync_procs import Daemon, free_port, wait_port
from sync_workload import Spec, Workload, generate_large, generate_small, scan

ROOT = Path(__file__).resolve().parent.parent
TANDEM = [str(ROOT / ".venv/bin/python"), "-m", "tandem"]
RESULTS = ROOT / "bench/results"
TIMEOUT = 900
CASES = ("first", "rerun")


def run(cmd: list[str], env: dict[str, str], stdin: bytes | None = None) -> float:
    """Run a command to completion (bounded); its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, input=stdin, capture_output=True, timeout=TIMEOUT)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} exited {done.returncode}: "
                           f"{done.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def verify(restored: Path, workload: Workload, tool: str) -> None:
    found, _ = scan(restored)
    if found != workload.expected:
        missing = set(workload.expected) ^ set(found)
        raise RuntimeError(f"{tool} restored a different tree ({len(missing)} paths differ)")


def tandem_run(workload: Workload, scratch: Path, check: bool) -> dict[str, float]:
    home = scratch / "tandem-home"
    port = free_port()
    env = {**os.environ, "TANDEM_HOME": str(home)}
    server = Daemon([*TANDEM, "serve", "--data", str(scratch / "tandem-server"), "--port", str(port),
                     "--gc-interval", "0"], env, scratch / "tandem-server.log")
    try:
        wait_port(port, 30, server.proc)
        run([*TANDEM, "signup", f"http://127.0.0.1:{port}", "bench@example.org", "--password-stdin"],
            {**env, "TANDEM_INSECURE_FAST_KDF": "1"}, b"bench-password-1\n")
        run([*TANDEM, "backup", "add", str(workload.root)], env)
        times = {case: run([*TANDEM, "backup", "run"], env) for case in CASES}
        if check:
            run([*TANDEM, "backup", "restore", str(workload.root), "--to", str(scratch / "t-out")], env)
            verify(scratch / "t-out", workload, "tandem")
        return times
    finally:
        server.stop()


def restic_run(workload: Workload, scratch: Path, check: bool) -> dict[str, float]:
    env = {**os.environ, "RESTIC_REPOSITORY": str(scratch / "restic-repo"),
           "RESTIC_PASSWORD": "bench-password-1", "RESTIC_CACHE_DIR": str(scratch / "restic-cache")}
    run(["restic", "init"], env)
    times = {case: run(["restic", "backup", "--quiet", str(workload.root)], env) for case in CASES}
    if check:
        out = scratch / "r-out"
        run(["restic", "restore", "latest", "--target", str(out)], env)
        verify(out / str(workload.root).lstrip("/"), workload, "restic")
    return times


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    version = subprocess.run(["restic", "version"], capture_output=True, text=True,
                             timeout=30).stdout.split(" compiled")[0]
    figures: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="tandem-backup-bench-") as base:
        workloads = {"small": generate_small(Path(base) / "small", Spec(), args.seed),
                     "large": generate_large(Path(base) / "large", Spec(), args.seed)}
        for name, workload in workloads.items():
            for index in range(args.runs):
                tools = [("tandem", tandem_run), ("restic", restic_run)]
                for tool, runner in tools if index % 2 == 0 else tools[::-1]:
                    with tempfile.TemporaryDirectory(prefix=f"{tool}-", dir=base) as scratch:
                        # Neither tool pays to flush what came before it (the generated tree,
                        # the other tool's files): both flush to disk as they write.
                        os.sync()
                        times = runner(workload, Path(scratch), check=index == 0)
                    for case, seconds in times.items():
                        figures.setdefault(f"{case}_{name}", {}).setdefault(tool, []).append(seconds)
                    print(f"{name} run {index + 1} {tool}: " +
                          ", ".join(f"{c} {s:.3f} s" for c, s in times.items()), flush=True)
    write_results(figures, args.runs, version)


def write_results(figures: dict[str, dict[str, list[float]]], runs: int, version: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "backup.json").write_text(json.dumps(figures, indent=2) + "\n")
    labels = {"first_small": "first backup, small", "rerun_small": "no-change rerun, small",
              "first_large": "first backup, large", "rerun_large": "no-change rerun, large"}
    lines = [
        "# Backup: Tandem beside restic",
        "",
        f"`bench/backup_bench.py`, {runs} runs, medians with min–max, measured in the same run"
        f" on the shared 2-core machine. Tandem: `tandem backup run` against `tandem serve` on"
        f" 127.0.0.1 (client and server share the 2 cores). {version}: `restic backup` to a local"
        " repository (defaults: compression auto). Whole commands, process start included.",
        "Both tools' first snapshots were restored and checked by size and SHA-256. The page"
        " cache is flushed (`sync`) before each tool starts, so neither pays for earlier writes.",
        "",
        "| case | Tandem | restic | Tandem / restic |",
        "| --- | --- | --- | --- |",
    ]
    for key, label in labels.items():
        tandem, restic = summary(figures[key]["tandem"]), summary(figures[key]["restic"])
        lines.append(f"| {label} | {_cell(tandem)} | {_cell(restic)} |"
                     f" {tandem['median'] / restic['median']:.2f}x |")
    (RESULTS / "backup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _cell(stats: dict[str, float]) -> str:
    return f"{stats['median']:.2f} s ({stats['min']:.2f}–{stats['max']:.2f})"


if __name__ == "__main__":
    main()
