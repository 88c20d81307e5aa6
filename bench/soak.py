"""Soak: the randomized multi-device simulation (tests/simulation.py), seed after seed, until
the time is up.

    .venv/bin/python bench/soak.py --minutes 10 [--first-seed 1000] [--steps 60] [--rate 0.2]

One server for the whole soak (each seed has its own account). Prints each failing seed as
it happens (replay it with `TANDEM_SIM_SEEDS=N pytest tests/test_sync_simulation.py`), and
writes bench/results/soak.md: seeds run, scenarios per minute, operations and faults
injected by kind, failing seeds with their first line. Exits 1 if any seed failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import start_server, stop_server  # noqa: E402
from tests.simulation import Simulation  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rate", type=float, default=0.2, help="fault rate while faults are on")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.md")
    args = parser.parse_args()
    operations: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    failures: dict[int, str] = {}
    seeds = 0
    with tempfile.TemporaryDirectory(prefix="tandem-soak-") as scratch:
        server = start_server(Path(scratch) / "server")
        started = time.monotonic()
        deadline = started + args.minutes * 60
        try:
            seed = args.first_seed
            while time.monotonic() < deadline:
                try:
                    report = Simulation(server.url, seed, args.steps, args.rate,
                                        base=Path(scratch)).run()
                    operations.update(report.operations)
                    faults.update(report.faults)
                except Exception as exc:  # a failed check, or the product raising
                    failures[seed] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                    print(f"FAILED seed {seed}: {failures[seed]}", flush=True)
                seeds += 1
                seed += 1
        finally:
            elapsed = time.monotonic() - started
            stop_server(server)
    write(args, seeds, elapsed, operations, faults, failures)
    return 1 if failures else 0


def write(args: argparse.Namespace, seeds: int, elapsed: float, operations: Counter[str],
          faults: Counter[str], failures: dict[int, str]) -> None:
    lines = [
        "# Soak: the randomized multi-device simulation", "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; `bench/soak.py --minutes "
        f"{args.minutes:g} --first-seed {args.first_seed} --steps {args.steps} --rate {args.rate:g}`",
        "", f"- seeds run: {seeds} ({args.first_seed}..{args.first_seed + seeds - 1})",
        f"- time: {elapsed / 60:.1f} min; scenarios per minute: {seeds / (elapsed / 60):.1f}",
        f"- failing seeds: {', '.join(map(str, failures)) or 'none'}", "",
        "| operation | count |", "|---|---:|",
        *(f"| {k} | {v} |" for k, v in sorted(operations.items())), "",
        "| fault injected | count |", "|---|---:|",
        *(f"| {k} | {v} |" for k, v in sorted(faults.items())), "",
    ]
    lines += [f"- seed {seed}: {what}" for seed, what in failures.items()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
