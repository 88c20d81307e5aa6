"""Run one command and report its own wall time, peak RSS and I/O: `python -I -S sync_wrap.py OUT CMD...`.

Why a wrapper: ru_maxrss survives exec, so a tool spawned straight from the (big) harness would
report the harness's peak. This small process forks the tool and reads, after reaping it, the
tool's ru_maxrss (floor: this wrapper's ~8 MiB) and the tool's /proc I/O counters, which the
kernel adds to the reaper's /proc/self/io. Times are CLOCK_MONOTONIC around fork/reap, so the
wrapper's own start-up is not counted. Writes one JSON line to OUT; exits with the tool's code.
"""

import json
import os
import sys
import time


def io_counters() -> dict[str, int]:
    with open("/proc/self/io") as handle:
        return {key: int(value) for key, value in (line.split(":") for line in handle)}


def main() -> None:
    out, cmd = sys.argv[1], sys.argv[2:]
    before = io_counters()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    end = time.monotonic()
    after = io_counters()
    code = os.waitstatus_to_exitcode(status)
    report = {
        "start": start,
        "end": end,
        "maxrss_kib": usage.ru_maxrss,
        "returncode": code,
        "io": {key: after[key] - before[key] for key in after},
    }
    with open(out, "w") as handle:
        handle.write(json.dumps(report))
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
