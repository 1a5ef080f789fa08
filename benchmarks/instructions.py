"""Benchmark instruction counts: CPU-seconds move with a shared VM's host, instructions do not.

`perf stat -e instructions:u` attached to the agent where the VM exposes the counter (this
Firecracker VM says `<not supported>`); else valgrind's callgrind, which counts every user-space
instruction exactly but runs ~50-100x slower: a separate, scaled-down catch-up of the same mix,
read live with `callgrind_control -e` after start-up and after the last entry arrived.

    python -m benchmarks.instructions [--lines 200000] [--mix plain|typical] [--runs 2]
        [--python OTHER/.venv/bin/python --repo OTHER]   # another checkout's agent

prints the counts as JSON (the no-pipeline comparison of issue 11 ran it for two commits).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    THIS_AGENT,
    AgentCommand,
    Sink,
    agent_config,
    free_port,
    running_agent,
)
from benchmarks.workload import BACKLOG_AGE_NS, PLAIN, Mix, Workload

PERF_EVENT = "instructions:u"
METHODS = ("auto", "perf", "callgrind", "none")
_THREAD_TOTAL = re.compile(r"^\s*Th \d+\s+([\d,]+)\s*$", re.MULTILINE)


def perf_counts(event: str = PERF_EVENT) -> bool:
    """Whether `perf stat` reads this event here (a VM may not expose the counter)."""
    if shutil.which("perf") is None:
        return False
    out = subprocess.run(["perf", "stat", "-x,", "-e", event, "true"], capture_output=True,
                         text=True).stderr
    return out.split(",", 1)[0].replace(".", "", 1).isdigit()


def resolve(requested: str) -> str:
    """`auto`: perf where it counts, else callgrind where valgrind is installed, else none."""
    if requested != "auto":
        return requested
    if perf_counts():
        return "perf"
    return "callgrind" if shutil.which("valgrind") and shutil.which("callgrind_control") \
        else "none"


class PerfCounter:
    """`perf stat` attached to a running process until stop(): the event's count over that
    window, across all its threads."""

    def __init__(self, pid: int, event: str = PERF_EVENT) -> None:
        self.event = event
        self._proc = subprocess.Popen(["perf", "stat", "-x,", "-e", event, "-p", str(pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
        time.sleep(0.2)  # perf opens its counters: what comes before is not counted

    def stop(self) -> float:
        self._proc.send_signal(signal.SIGINT)
        _, err = self._proc.communicate(timeout=30)
        for line in err.splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[2].startswith(self.event.split(":")[0]):
                return float(fields[0])
        raise RuntimeError(f"perf stat printed no {self.event} count: {err!r}")


@contextlib.contextmanager
def perf_window(method: str, pid: int, lines: int = 0) -> Iterator[dict[str, Any]]:
    """With perf, the instructions the agent ran inside the `with` block, into the dict it
    yields (per 1M lines too, given `lines`); with another method, nothing."""
    out: dict[str, Any] = {}
    counter = PerfCounter(pid) if method == "perf" else None
    yield out
    if counter is not None:
        count = counter.stop()
        out.update({"instructions": count, "instructions_method": "perf stat -e instructions:u"
                    " attached over this window"})
        if lines:
            out["instructions_per_1m_lines"] = count * 1_000_000 / lines


def callgrind_total(pid: int) -> int:
    """The instructions a process under callgrind ran so far, every thread."""
    out = subprocess.run(["callgrind_control", "-e", str(pid)], capture_output=True,
                         text=True, timeout=120).stdout
    counts = _THREAD_TOTAL.findall(out)
    if not counts:
        raise RuntimeError(f"callgrind_control printed no totals: {out!r}")
    return sum(int(c.replace(",", "")) for c in counts)


def callgrind_catch_up(root: Path, lines: int, files: int, mix: Mix = PLAIN,
                       pipeline: list[dict[str, Any]] | None = None,
                       agent: AgentCommand = THIS_AGENT) -> dict[str, Any]:
    """The catch-up scenario scaled down, the agent under callgrind: instructions of start-up
    (to healthy), of the catch-up (links shown to every entry in), and, for the error bar, what
    the idle agent's timers run per second (they run per wall second, and valgrind stretches
    the catch-up's wall time ~50x)."""
    work = Workload(root, files, mix=mix)
    work.prewrite(lines // files, time.time_ns() - BACKLOG_AGE_NS)
    work.close()
    hidden = work.hide()
    command = AgentCommand(agent.python, agent.repo, ("valgrind", "--tool=callgrind",
                           "--callgrind-out-file=/dev/null"), startup_timeout=600)
    with Sink() as sink:
        port = free_port()
        config = agent_config(root, work.pattern, sink.url, port, pipeline)
        with running_agent(config, port, root / "agent.log", command=command) as running:
            startup = callgrind_total(running.pid)
            began = time.monotonic()
            work.reveal(hidden)
            delivered = sink.wait_entries(work.entries, timeout=3600)
            wall = time.monotonic() - began
            caught_up = callgrind_total(running.pid)
            time.sleep(10)
            idle_per_s = (callgrind_total(running.pid) - caught_up) / 10
            received = sink.entries()
    count = caught_up - startup
    return {"lines": work.lines, "entries_expected": work.entries, "entries_received": received,
            "delivered": delivered and received == work.entries,
            "instructions": count, "instructions_per_1m_lines": count * 1_000_000 / work.lines,
            "startup_instructions": startup, "wall_s": wall,
            "idle_instructions_per_s": idle_per_s,
            "timer_share_estimate": idle_per_s * wall / count if count else None,
            "instructions_method": f"callgrind, a separate {work.lines:,}-line catch-up of the "
                                   "same mix, start-up excluded"}


def main() -> int:
    from benchmarks.typical import TYPICAL, TYPICAL_PIPELINE

    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions",
                                     description="Count a scaled-down catch-up's instructions "
                                                 "with callgrind.")
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--mix", choices=("plain", "typical"), default="plain",
                        help="typical: the typical-pipeline workload and its pipeline")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--python", default=sys.executable, help="the agent's Python (venv)")
    parser.add_argument("--repo", type=Path, default=THIS_AGENT.repo,
                        help="the agent's checkout")
    args = parser.parse_args()
    mix, pipeline = (TYPICAL, TYPICAL_PIPELINE) if args.mix == "typical" else (PLAIN, None)
    runs = []
    for _ in range(args.runs):
        root = Path(tempfile.mkdtemp(prefix="shipper-callgrind-"))
        try:
            runs.append(callgrind_catch_up(root, args.lines, args.files, mix, pipeline,
                                           AgentCommand(args.python, args.repo)))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"repo": str(args.repo), "mix": args.mix, "runs": runs}, indent=2))
    return 0 if all(r["delivered"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
