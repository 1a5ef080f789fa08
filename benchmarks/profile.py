"""Benchmark profile: where the agent's CPU goes during catch-up, by own time per function.

`python -m benchmarks.profile [--lines N] [--profiler py-spy|cprofile]`. py-spy samples the
running agent from outside (nothing added to shipper); cProfile runs the agent under
`python -m cProfile -o FILE -m shipper run`, which is exact per call but slows it down.
"""

from __future__ import annotations

import argparse
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.harness import Sink, agent_config, free_port, running_agent
from benchmarks.workload import BACKLOG_AGE_NS, Workload

_LINE_NO = re.compile(r":\d+\)$")


def own_time_from_raw(raw: Path) -> tuple[Counter[str], Counter[str], int]:
    """py-spy's collapsed stacks ("frame;frame;leaf count") to samples per function: own (as the
    leaf) and inclusive (anywhere on the stack, once per sample), and the total."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_LINE_NO.sub(")", f) for f in stack.split(";")]  # per function, not per line
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return own, inclusive, total


def profile_py_spy(lines: int, files: int, out: Path, rate: int) -> str:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    root = Path(tempfile.mkdtemp(prefix="shipper-profile-"))
    try:
        work = Workload(root, files)
        work.prewrite(lines // files, time.time_ns() - BACKLOG_AGE_NS)
        work.close()
        hidden = work.hide()
        raw = out / "catch_up.pyspy.txt"
        with Sink() as sink:
            port = free_port()
            config = agent_config(root, work.pattern, sink.url, port)
            with running_agent(config, port, root / "agent.log") as agent:
                spy = subprocess.Popen([py_spy, "record", "--pid", str(agent.pid), "--rate",
                                        str(rate), "--format", "raw", "-o", str(raw)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                time.sleep(1.0)  # py-spy attaches
                work.reveal(hidden)
                if not sink.wait_entries(work.entries, timeout=600):
                    raise RuntimeError("not every line arrived")
                spy.send_signal(signal.SIGINT)
                _, err = spy.communicate(timeout=60)
                if spy.returncode not in (0, -signal.SIGINT) or not raw.exists():
                    raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    own, inclusive, total = own_time_from_raw(raw)
    report = [f"py-spy, {total} samples at {rate} Hz of CPU time (idle not sampled), "
              f"{lines:,} lines in {files} files", "", "| own % | function |", "|---|---|"]
    report += [f"| {n / total * 100:.1f} | `{name}` |" for name, n in own.most_common(25)]
    report += ["", "| inclusive % | function |", "|---|---|"]
    report += [f"| {n / total * 100:.1f} | `{name}` |" for name, n in inclusive.most_common(25)]
    return "\n".join(report) + "\n"


def profile_cprofile(lines: int, files: int, out: Path) -> str:
    root = Path(tempfile.mkdtemp(prefix="shipper-profile-"))
    prof = out / "catch_up.prof"
    try:
        work = Workload(root, files)
        work.prewrite(lines // files, time.time_ns() - BACKLOG_AGE_NS)
        work.close()
        with Sink() as sink:
            port = free_port()
            config = agent_config(root, work.pattern, sink.url, port)
            args = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "shipper", "run",
                    "--once", "--config", str(config)]
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL, timeout=900)
            received = sink.entries()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    stats = pstats.Stats(str(prof))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    report = [f"cProfile (whole run, start-up included), {total:.2f} s profiled, "
              f"{received:,} entries received", "", "| own s | own % | calls | function |",
              "|---|---|---|---|"]
    for (file, line, name), (_, calls, own, _cum, _) in rows[:25]:
        report.append(f"| {own:.3f} | {own / total * 100:.1f} | {calls:,} | "
                      f"`{name} ({Path(file).name}:{line})` |")
    return "\n".join(report) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile",
                                     description="Profile the agent during catch-up.")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--profiler", choices=("py-spy", "cprofile"), default="py-spy")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.profiler == "py-spy":
        report = profile_py_spy(args.lines, args.files, args.out, args.rate)
    else:
        report = profile_cprofile(args.lines, args.files, args.out)
    path = args.out / f"profile-{args.profiler}-{time.strftime('%Y%m%d-%H%M%S')}.md"
    path.write_text(report)
    print(report)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
