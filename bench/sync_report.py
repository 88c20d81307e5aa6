"""Summaries of the sync benchmark's runs: Markdown and JSON tables, and a bar chart of ratios."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

CASES = {  # key -> label, in table order
    "init_small": "initial sync, small",
    "init_large": "initial sync, large",
    "resync_small": "no-change resync, small",
    "resync_large": "no-change resync, large",
    "edit": "edit (4 KiB in 64 MiB)",
    "rename": "rename (1,000-file folder)",
    "touch": "touch (1,000 files)",
    "latency": "latency (new 1 KiB file)",
    "latency_1s": "latency, Syncthing watcher delay 1 s",
    "latency_scan": "latency, Syncthing scan forced after the write",
}
RSS_ROWS = {"init_small": "peak RSS, initial small", "init_large": "peak RSS, initial large"}
BYTES_CASES = ("edit", "rename", "touch")
#: BENCH.md's anchor figures (not measured here), printed beside this run's for comparison.
BENCH_MD = {
    "unison": {
        "init_small": "1.97 s",
        "init_large": "1.41 s",
        "resync_small": "0.10 s",
        "resync_large": "0.009 s",
        "edit": "0.56 s, rewrites 64 MiB",
        "rename": "0.71 s, copies 10.8 MiB",
        "touch": "0.21 s, no content",
        "latency": "n/a",
        "rss": "30 MiB",
    },
    "rclone": {
        "init_small": "6.56 s",
        "init_large": "0.92 s",
        "resync_small": "0.60 s",
        "resync_large": "0.084 s",
        "edit": "0.50 s, re-uploads 64 MiB",
        "rename": "2.67 s, re-uploads all",
        "touch": "2.09 s, re-uploads all",
        "latency": "n/a",
        "rss": "113 + 110 MiB",
    },
    "syncthing": {
        "init_small": "9.40 s",
        "latency": "9.50 s",
        "latency_1s": "1.50 s",
        "latency_scan": "12 ms",
        "rss": "75 + 80 MiB",
    },
}


def fmt_s(seconds: float) -> str:
    if seconds < 0.1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def summarize(runs: list[dict]) -> dict:  # type: ignore[type-arg]
    """Median and min-max over runs; any failed run makes the case FAILED (no number)."""
    if runs and all(r.get("status") == "n/a" for r in runs):
        return {"status": "n/a", "reason": runs[0].get("error", "")}
    done = [r for r in runs if r.get("status") != "not run"]
    if not done:
        return {"status": "not run", "reason": runs[0].get("error", "") if runs else ""}
    failed = [r for r in done if r["status"] != "ok"]
    if failed:
        return {
            "status": "FAILED",
            "failed_runs": len(failed),
            "runs": len(done),
            "reason": failed[0].get("error", ""),
        }
    seconds = [r["seconds"] for r in done]
    out = {
        "status": "ok",
        "runs": len(done),
        "median": statistics.median(seconds),
        "min": min(seconds),
        "max": max(seconds),
    }
    for key in ("sent", "wire"):
        values = [r[key] for r in done if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    archive = [r["extra"]["archive_bytes"] for r in done if "archive_bytes" in r.get("extra", {})]
    if archive:
        out["archive_bytes"] = statistics.median(archive)
    carried = [
        r["extra"]["mtime_propagated_files"] for r in done if "mtime_propagated_files" in r.get("extra", {})
    ]
    if carried:
        out["mtime_propagated_files"] = min(carried)
    forced = [r["extra"]["full_pass_seconds"] for r in done if "full_pass_seconds" in r.get("extra", {})]
    if forced:  # a daemon's resync: the full passes a user can force, timed after the answer
        out["full_pass_seconds"] = statistics.median(forced)
    labels = {label for r in done for label in r.get("rss", {})}
    notes = sorted({note for r in done for note in r.get("notes", [])})
    if notes:
        out["notes"] = notes
    out["rss"] = {
        label: statistics.median(r["rss"][label] for r in done if label in r.get("rss", {}))
        for label in sorted(labels)
    }
    return out


def summarize_all(raw: dict, tools: dict) -> dict:  # type: ignore[type-arg]
    """raw[tool][case] = list of per-run dicts -> summary[tool][case], with ratio to the fastest anchor."""
    summary: dict = {
        tool: {case: summarize(runs) for case, runs in cases.items()} for tool, cases in raw.items()
    }
    for case in CASES:
        anchors = [
            summary[t][case]["median"]
            for t in summary
            if tools[t]["anchor"] and summary[t].get(case, {}).get("status") == "ok"
        ]
        if not anchors:
            continue
        fastest = min(anchors)
        for tool in summary:
            cell = summary[tool].get(case)
            if cell and cell["status"] == "ok" and fastest > 0:
                cell["ratio"] = cell["median"] / fastest
    return summary


def cell_text(cell: dict | None, case: str) -> str:  # type: ignore[type-arg]
    if not cell:
        return "—"
    if cell["status"] != "ok":
        reason = cell.get("reason", "").replace("|", "/")[:160]
        if cell["status"] == "n/a":
            return f"n/a ({reason})"
        if cell["status"] == "FAILED":
            return f"**FAILED** ({cell['failed_runs']}/{cell['runs']} runs): {reason}"
        return f"not run: {reason}"
    text = f"{fmt_s(cell['median'])} ({fmt_s(cell['min'])}–{fmt_s(cell['max'])})"
    if "ratio" in cell:
        text += f", ×{cell['ratio']:.2f}"
    if case in BYTES_CASES and "sent" in cell:
        if "archive_bytes" in cell:  # a local tool: bytes written, its own state files included
            text += f"<br>wrote {fmt_bytes(cell['sent'])} (its archive: {fmt_bytes(cell['archive_bytes'])})"
        else:
            text += f"<br>sent {fmt_bytes(cell['sent'])}"
        if cell.get("wire") is not None and cell["wire"] != cell["sent"]:
            text += f" (wire {fmt_bytes(cell['wire'])})"
    if "mtime_propagated_files" in cell:
        text += f"; new mtime on B: {cell['mtime_propagated_files']:.0f} files"
    if "full_pass_seconds" in cell:
        text += f"<br>forced full passes: {fmt_s(cell['full_pass_seconds'])}"
    return text


def rss_text(cell: dict | None) -> str:  # type: ignore[type-arg]
    if not cell or cell["status"] != "ok" or not cell.get("rss"):
        return "—"
    labels = list(cell["rss"])
    values = " + ".join(f"{cell['rss'][label]:.0f}" for label in labels)
    return f"{values} MiB ({' + '.join(labels)})" if len(labels) > 1 else f"{values} MiB"


def markdown(doc: dict) -> str:  # type: ignore[type-arg]
    meta, summary, tools = doc["meta"], doc["summary"], doc["tools"]
    order = [t for t in tools if t in summary]
    lines = [
        f"# Sync benchmark ({meta['date']}, {meta['runs']} run(s){', QUICK' if meta['quick'] else ''})",
        "",
        "Each cell: median of the runs (min–max), × = ratio to the fastest anchor on that case "
        "(Unison, rclone, Syncthing). Both sides verified by name, size and SHA-256 after every case: "
        "a mismatch is FAILED, never a number. `sent` = bytes that carried the change to the other side "
        "(method per tool below). Latency: per run the median of its samples.",
        "",
    ]
    lines.append("| case | " + " | ".join(tools[t]["title"] for t in order) + " |")
    lines.append("| --- " * (len(order) + 1) + "|")
    for case, label in CASES.items():
        if not any(case in summary[t] for t in order):
            continue
        lines.append(
            f"| {label} | "
            + " | ".join(
                cell_text(summary[t].get(case), case) if tools[t]["available"] else "not available"
                for t in order
            )
            + " |"
        )
    for case, label in RSS_ROWS.items():
        if any(case in summary[t] for t in order):
            lines.append(f"| {label} | " + " | ".join(rss_text(summary[t].get(case)) for t in order) + " |")
    notes = [
        f"{tools[t]['title']}, {CASES.get(c, c)}: {note}"
        for t in order
        for c, cell in summary[t].items()
        for note in cell.get("notes", [])
    ]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    lines += ["", "## Tools", ""]
    for t in order:
        info = tools[t]
        state = "" if info["available"] else f" — **not available**: {info['reason']}"
        lines.append(f"- **{info['title']}**: {info['version']}{state}")
        if info.get("bytes_method"):
            lines.append(f"  - bytes: {info['bytes_method']}")
        if info.get("timing"):
            lines.append(f"  - timing: {info['timing']}")
    lines += [
        "",
        "## BENCH.md's anchor figures (from BENCH.md, not this run)",
        "",
        "| case | " + " | ".join(t for t in BENCH_MD) + " |",
        "| --- " * (len(BENCH_MD) + 1) + "|",
    ]
    for case, label in [*CASES.items(), ("rss", "peak RSS, initial small")]:
        if any(case in v for v in BENCH_MD.values()):
            lines.append(f"| {label} | " + " | ".join(BENCH_MD[t].get(case, "") for t in BENCH_MD) + " |")
    lines += ["", "## Run", ""]
    for workload in meta["workloads"]:
        lines.append(
            f"- workload `{workload['name']}`: {workload['files']} files, {fmt_bytes(workload['bytes'])} "
            f"({workload['bytes']:,} bytes), digest `{workload['digest'][:16]}…` (seed {meta['seed']})"
        )
    lines.append(
        f"- command: `{meta['command']}`; {meta['cpus']} CPUs; total time {meta['duration_s']:.0f} s"
    )
    lines.append(
        f"- latency: {meta['latency_samples']} samples per run, 0.5 s apart, after one warm-up sample "
        f"(Syncthing's default 10 s watcher delay: {meta['slow_latency_samples']} per run)"
    )
    loads = [x for s in doc.get("sessions", []) for x in (s["load_start"], s["load_end"])]
    if loads:
        lines.append(
            f"- machine load (1-min load average at session starts and ends): {min(loads):.1f}–"
            f"{max(loads):.1f} on {meta['cpus']} CPUs (other work shares this machine)"
        )
    lines += [f"- {note}" for note in meta.get("notes", [])]
    return "\n".join(lines) + "\n"


def chart(doc: dict, path: Path) -> str | None:  # type: ignore[type-arg]
    """Grouped horizontal bars: per case, each tool's ratio to the fastest anchor (log scale)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return "matplotlib is not installed (pip install -r bench/requirements.txt): no chart"
    summary, tools = doc["summary"], doc["tools"]
    order = [t for t in tools if t in summary and tools[t]["available"]]
    cases = [c for c in CASES if any(summary[t].get(c, {}).get("ratio") for t in order)]
    if not cases:
        return "no ratios to draw"
    colors = {
        "tandem": "#d62728",
        "tandem-daemon": "#ff7f0e",
        "unison": "#1f77b4",
        "rclone": "#2ca02c",
        "syncthing": "#9467bd",
    }
    height = 0.8 / max(len(order), 1)
    labeled: set[str] = set()
    pending: list[tuple[float, str, dict]] = []  # type: ignore[type-arg]
    fig, ax = plt.subplots(figsize=(11, 1.0 + 0.95 * len(cases)))
    for i, tool in enumerate(order):
        for j, case in enumerate(cases):
            y = j + (i - (len(order) - 1) / 2) * height
            cell = summary[tool].get(case)
            if cell and cell.get("ratio"):
                ax.barh(
                    y,
                    cell["ratio"],
                    height * 0.9,
                    color=colors.get(tool, "grey"),
                    label=None if tool in labeled else tool,
                )
                labeled.add(tool)
                ax.text(
                    cell["ratio"] * 1.05,
                    y,
                    f"×{cell['ratio']:.2f} ({fmt_s(cell['median'])})",
                    va="center",
                    fontsize=7.5,
                )
            elif cell:
                pending.append((y, tool, cell))
    ax.set_xscale("log")
    ratios = [summary[t][c]["ratio"] for t in order for c in cases if summary[t].get(c, {}).get("ratio")]
    left = min(0.5, min(ratios) / 2)
    ax.set_xlim(left, max(ratios) * 4)
    for y, tool, cell in pending:  # no bar: say why, at the left edge
        why = "FAILED" if cell["status"] == "FAILED" else f"{tool}: {cell['status']} {cell.get('reason', '')}"
        ax.text(left * 1.08, y, why[:60], va="center", fontsize=7.5, color="dimgrey")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(cases)), [CASES[c] for c in cases], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("time / fastest anchor's time on the case (log scale; 1 = fastest anchor, lower is faster)")
    meta = doc["meta"]
    ax.set_title(f"Sync benchmark, {meta['date']}: medians of {meta['runs']} run(s)", fontsize=11)
    ax.legend(loc="lower right", fontsize=9)
    ax.grid(axis="x", which="both", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def _clean(value: object) -> object:
    """NaN (a figure that could not be read) becomes null, so the JSON stays valid."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write(doc: dict, results: Path, name: str) -> list[Path]:  # type: ignore[type-arg]
    results.mkdir(parents=True, exist_ok=True)
    md, js, png = (results / f"{name}.{ext}" for ext in ("md", "json", "png"))
    problem = chart(doc, png)
    if problem:
        doc["meta"].setdefault("notes", []).append(problem)
    js.write_text(json.dumps(_clean(doc), indent=1, default=str) + "\n")
    md.write_text(markdown(doc))
    return [md, js] + ([png] if not problem else [])
