"""Two-way sync benchmark: Tandem beside Unison, rclone bisync and Syncthing on BENCH.md's workloads.

    .venv/bin/python bench/sync_bench.py [--runs 3] [--only tandem,unison,rclone,syncthing]
                                         [--cases init_small,rename,...] [--quick]

Generates the `small` and `large` workloads from --seed, then for each run and each tool: copies a
workload into side A, and times each case until side B has it, verifying both sides by name, size
and SHA-256 after every case. Writes bench/results/sync.{md,json,png} (--quick: sync-quick.*).
See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sync_procs import ToolFailed, stop_all  # noqa: E402
from sync_report import CASES, write  # noqa: E402
from sync_tools import Session, all_tools  # noqa: E402
from sync_workload import (  # noqa: E402  # noqa: E402
    KIB,
    MIB,
    Spec,
    Workload,
    generate_large,
    generate_small,
    mtimes_matching,
    mutate_edit,
    mutate_rename,
    mutate_touch,
    verify,
)

SMALL_CASES = ["init_small", "resync_small", "touch", "rename"]
LARGE_CASES = ["init_large", "resync_large", "edit"]
LATENCY_CASES = ["latency", "latency_1s", "latency_scan"]
TIMING = {
    "unison": "wall time of one `unison A B -batch -auto -times` process",
    "rclone": "wall time of one `rclone bisync` process (the first with --resync); B is the server's folder",
    "syncthing": "initial: from launching both instances until B has everything (REST); later cases: "
    "forced scan of A (both sides for a resync), then until A sees B 100 % complete and B idle",
    "tandem": "wall time of `tandem sync --once` on client A plus that of the same command on client B",
    "tandem-daemon": "initial: from launching both `tandem sync` daemons until B has every file with "
    "A's size and mtime; later cases: from the start of the mutation on A until the same; no-change "
    "resync: `tandem status --json` on A then B, each a settled daemon (no rescan)",
}


class Runner:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args, self.work = args, work
        self.bytes_methods: dict[str, str] = {}

    def session_cases(self, workload: str) -> list[str]:
        """The cases of one workload's session, in order; the initial sync always runs first."""
        base = [*SMALL_CASES, "latency"] if workload == "small" else LARGE_CASES
        wanted = self.args.cases
        if wanted is None:
            return base
        chosen = [c for c in base if c in wanted or (c == "latency" and wanted & set(LATENCY_CASES))]
        return [base[0]] + [c for c in chosen if c != base[0]] if chosen else []

    def run_session(self, tool: type, workload: Workload, run: int) -> dict[str, dict]:  # type: ignore[type-arg]
        cases = self.session_cases(workload.name)
        out: dict[str, dict] = {}  # type: ignore[type-arg]
        base = self.work / "sessions" / f"{tool.name}-{workload.name}-{run}"
        base.mkdir(parents=True)
        session: Session | None = None
        current = cases[0]
        try:
            session = tool.open(base, self.args.timeout)
            self.bytes_methods[tool.name] = session.bytes_method
            workload.copy_to(session.side_a)
            session.side_b.mkdir(parents=True, exist_ok=True)
            expected = dict(workload.expected)
            for case in cases:
                current = case
                if case in session.not_applicable:
                    out[case] = {"status": "n/a", "error": session.not_applicable[case]}
                    continue
                if case == "latency":
                    if not session.latency_modes:
                        out[case] = {"status": "n/a", "error": "runs per invocation"}
                    else:
                        out.update(self.latency(session, expected, run))
                    continue
                out[case] = self.timed_case(session, case, expected, run)
                if out[case]["status"] != "ok":
                    break
        except ToolFailed as exc:
            out[current] = {"status": "FAILED", "error": str(exc)}
        except Exception as exc:  # a harness or tool surprise: report it, keep benchmarking the others
            out[current] = {"status": "FAILED", "error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc()
        finally:
            try:
                if session is not None:
                    session.close()
            finally:
                if not self.args.keep:
                    shutil.rmtree(base, ignore_errors=True)
        for case in cases:
            if case not in out and not (case == "latency" and any(k.startswith("latency") for k in out)):
                out[case] = {"status": "not run", "error": f"an earlier case ({current}) failed"}
        return out

    def timed_case(self, session: Session, case: str, expected: dict, run: int) -> dict:  # type: ignore[type-arg]
        detail, touched = "", []
        session.mutation_started = time.monotonic()
        if case == "touch":
            detail, touched = mutate_touch(session.side_a, expected)
        elif case == "rename":
            detail = mutate_rename(session.side_a, expected)
        elif case == "edit":
            detail = mutate_edit(session.side_a, expected, seed=self.args.seed * 1000 + run)
        os.sync()  # nothing of the setup is left to write back during the timed part
        result = session.sync(case, len(expected), sum(size for size, _ in expected.values()))
        ok, verdict = verify({"A": session.side_a, "B": session.side_b}, expected)
        record = {
            "status": "ok" if ok else "FAILED",
            "seconds": result.seconds,
            "sent": result.sent,
            "wire": result.wire,
            "rss": result.rss,
            "extra": result.extra,
            "mutation": detail,
            "verify": verdict,
        }
        if touched:
            record["extra"]["mtime_propagated_files"] = mtimes_matching(
                session.side_a, session.side_b, touched
            )
        if not ok:
            record["error"] = f"verification: {verdict}"
        return record

    def latency(self, session: Session, expected: dict, run: int) -> dict[str, dict]:  # type: ignore[type-arg]
        out = {}
        rng = random.Random(f"latency-{self.args.seed}-{run}")
        for mode in session.latency_modes:
            if self.args.cases is not None and mode.case not in self.args.cases:
                continue
            count = self.args.slow_latency_samples if mode.slow else self.args.latency_samples
            samples: list[float] = []
            warmup, rss = None, {}
            try:
                try:
                    session.latency_enter(mode)
                    if mode.warmup:
                        warmup = self.sample(session, f"lat-{mode.case}-warmup.bin", rng, expected, 180)
                    for i in range(count):
                        time.sleep(0.5)
                        samples.append(
                            self.sample(session, f"lat-{mode.case}-{i:02d}.bin", rng, expected, 120)
                        )
                finally:
                    session.latency_exit(mode)
                    rss = dict(session.latency_rss)
            except ToolFailed as exc:
                out[mode.case] = {"status": "FAILED", "error": str(exc), "samples": samples}
                break
            ok, verdict = verify({"A": session.side_a, "B": session.side_b}, expected)
            out[mode.case] = {
                "status": "ok" if ok else "FAILED",
                "seconds": statistics.median(samples),
                "samples": samples,
                "warmup": warmup,
                "mode": mode.label,
                "rss": rss,
                "verify": verdict,
                "notes": list(session.notes),
            }
            session.notes.clear()
            if not ok:
                out[mode.case]["error"] = f"verification: {verdict}"
                break
        return out

    @staticmethod
    def sample(session: Session, name: str, rng: random.Random, expected: dict, timeout: float) -> float:  # type: ignore[type-arg]
        """Write a new 1 KiB file on A; poll B every 10 ms until it is there with the right content."""
        import hashlib

        data = rng.randbytes(1 * KIB)
        target = session.side_b / name
        start = time.monotonic()
        with open(session.side_a / name, "wb") as handle:
            handle.write(data)
        session.after_write(name)
        deadline = start + timeout
        while True:
            try:
                if target.read_bytes() == data:
                    elapsed = time.monotonic() - start
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ToolFailed(f"latency: {name} not on B after {timeout:.0f} s")
            session.check_alive()
            time.sleep(0.01)
        expected[name] = (len(data), hashlib.sha256(data).hexdigest())
        return elapsed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    tools = list(all_tools())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="runs per tool (default 3; --quick: 1)")
    parser.add_argument(
        "--only", default=",".join(tools), help=f"comma-separated tools (default {','.join(tools)})"
    )
    parser.add_argument(
        "--cases",
        default=None,
        help=f"comma-separated cases (default all): {','.join(CASES)}; the initial sync of a "
        "workload always runs, as the others need it",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: 1 run, 500 small files, 4 x 8 MiB, 3 latency samples",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300, help="bound on every command and wait (s)")
    parser.add_argument("--latency-samples", type=int, default=None, help="samples per latency case (10)")
    parser.add_argument(
        "--slow-latency-samples",
        type=int,
        default=None,
        help="samples per run for Syncthing's default 10 s watcher delay (default 4: 12 over 3 runs)",
    )
    parser.add_argument(
        "--out", default=None, help="results name under bench/results (sync; --quick: sync-quick)"
    )
    parser.add_argument(
        "--workdir", default=None, help="parent of the temporary folder (default: system temp)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the sessions' folders and logs")
    args = parser.parse_args(argv)
    args.only = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = [t for t in args.only if t not in tools]
    if unknown:
        parser.error(f"unknown tool(s) {unknown}; choose from {tools}")
    if args.cases is not None:
        args.cases = {c.strip() for c in args.cases.split(",") if c.strip()}
        if args.cases - set(CASES):
            parser.error(f"unknown case(s) {sorted(args.cases - set(CASES))}; choose from {list(CASES)}")
    args.runs = args.runs or (1 if args.quick else 3)
    args.latency_samples = args.latency_samples or (3 if args.quick else 10)
    args.slow_latency_samples = args.slow_latency_samples or (1 if args.quick else 4)
    args.out = args.out or ("sync-quick" if args.quick else "sync")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    spec = Spec(files_per_folder=5, large_size=8 * MIB) if args.quick else Spec()
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tandem-sync-bench-", dir=args.workdir))
    registry = all_tools()
    tools = {}
    raw: dict[str, dict[str, list]] = {}  # type: ignore[type-arg]
    sessions: list[dict] = []  # type: ignore[type-arg]
    try:
        print(f"work folder {work}", flush=True)
        workloads = [
            generate_small(work / "workloads" / "small", spec, args.seed),
            generate_large(work / "workloads" / "large", spec, args.seed),
        ]
        for w in workloads:
            size = f"{len(w.expected)} files, {w.total_bytes:,} bytes"
            print(f"workload {w.name}: {size}, digest {w.digest()[:16]}", flush=True)
        for name in args.only:
            tool = registry[name]
            reason = tool.unavailable()
            tools[name] = {
                "title": tool.title,
                "anchor": tool.anchor,
                "available": reason is None,
                "reason": reason,
                "version": tool.version() if reason is None else "",
                "timing": TIMING[name],
            }
            state = f"available, {tools[name]['version']}" if reason is None else f"NOT AVAILABLE: {reason}"
            print(f"{name}: {state}", flush=True)
            raw[name] = {}
        runner = Runner(args, work)
        for run in range(args.runs):
            for name in args.only:
                if not tools[name]["available"]:
                    continue
                for workload in workloads:
                    if not runner.session_cases(workload.name):
                        continue
                    t0, load0 = time.monotonic(), os.getloadavg()[0]
                    results = runner.run_session(registry[name], workload, run)
                    sessions.append(
                        {
                            "tool": name,
                            "workload": workload.name,
                            "run": run + 1,
                            "seconds": time.monotonic() - t0,
                            "load_start": load0,
                            "load_end": os.getloadavg()[0],
                        }
                    )
                    for case, record in results.items():
                        raw[name].setdefault(case, []).append(record)
                        show = f"{record['seconds']:.3f} s" if record.get("seconds") is not None else ""
                        print(
                            f"  run {run + 1} {name:9s} {case:13s} {record['status']:7s} {show} "
                            f"{record.get('error', '')[:200]}",
                            flush=True,
                        )
                    print(f"  ({name} {workload.name} session: {time.monotonic() - t0:.0f} s)", flush=True)
        for name, method in runner.bytes_methods.items():
            tools[name]["bytes_method"] = method
    finally:
        stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    from sync_report import summarize_all

    doc = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "runs": args.runs,
            "quick": args.quick,
            "seed": args.seed,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "cpus": os.cpu_count(),
            "host": socket.gethostname(),
            "duration_s": time.monotonic() - began,
            "latency_samples": args.latency_samples,
            "slow_latency_samples": args.slow_latency_samples,
            "workloads": [
                {"name": w.name, "files": len(w.expected), "bytes": w.total_bytes, "digest": w.digest()}
                for w in workloads
            ],
            "notes": NOTES,
        },
        "tools": tools,
        "summary": summarize_all(raw, tools),
        "runs": raw,
        "sessions": sessions,
    }
    for path in write(doc, HERE / "results", args.out):
        print(f"wrote {path}")
    print(f"total {doc['meta']['duration_s']:.0f} s")
    failed = any(c.get("status") == "FAILED" for t in doc["summary"].values() for c in t.values())
    return 1 if failed else 0


NOTES = [
    "Peak RSS of a per-invocation command: ru_maxrss from wait4 in a small reaping wrapper "
    "(floor about 8 MiB, the wrapper's own size); of a running process (servers, Syncthing, daemons): "
    "VmHWM, reset through /proc/PID/clear_refs before each case.",
    "Names starting with a dot are the tools' own (Syncthing's .stfolder) and are not compared; the workload "
    "has none. Leftover empty folders are noted in the JSON (`verify`), not counted as a failure.",
    "Mutations are applied to side A untimed, then `sync` is flushed (os.sync) before the clock starts; "
    "every mutated file's new mtime is at least 3 s after its old one.",
    "Networked tools talk through a Python counting proxy on 127.0.0.1 (all of them, in every case, so they "
    "pay the same small per-request cost).",
]


if __name__ == "__main__":
    sys.exit(main())
