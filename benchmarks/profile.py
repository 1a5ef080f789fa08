"""Benchmark profile: where the agent's CPU goes, by own time per function.

`python -m benchmarks.profile [--lines N] [--profiler py-spy|cprofile]
[--scenario catch_up|typical|steady] [--steady-rate 25000] [--seconds 30]`. py-spy samples the
running agent from outside (nothing added to shipper), during a catch-up (plain, or with the
typical pipeline) or a steady rate in the 100m quota; cProfile runs a catch-up under
`python -m cProfile -o FILE -m shipper run`, which is exact per call but slows it down.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from benchmarks.harness import CpuQuota, Sink, agent_config, free_port, running_agent
from benchmarks.sizes import Sizes
from benchmarks.typical import TYPICAL, TYPICAL_PIPELINE
from benchmarks.workload import BACKLOG_AGE_NS, PLAIN, Workload
from benchmarks.writer import RateWriter

_LINE_NO = re.compile(r":\d+\)$")
MAIN_THREAD = "_run_module_as_main "  # the outermost frame of `python -m shipper`'s thread


def own_time_from_raw(raw: Path, root: str = "") -> tuple[Counter[str], Counter[str], int]:
    """py-spy's collapsed stacks ("frame;frame;leaf count") to samples per function: own (as the
    leaf) and inclusive (anywhere on the stack, once per sample), and the total; only the
    stacks whose outermost frame starts with `root`, if given."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.startswith(root):
            continue
        frames = [_LINE_NO.sub(")", f) for f in stack.split(";")]  # per function, not per line
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return own, inclusive, total


@contextlib.contextmanager
def py_spy(pid: int, raw: Path, rate: int) -> Iterator[None]:
    """py-spy sampling the process for the span of the `with` block, into raw (collapsed)."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    spy = subprocess.Popen([binary, "record", "--pid", str(pid), "--rate", str(rate),
                            "--format", "raw", "-o", str(raw)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # py-spy attaches
    yield
    spy.send_signal(signal.SIGINT)
    _, err = spy.communicate(timeout=60)
    if spy.returncode not in (0, -signal.SIGINT) or not raw.exists():
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')}")


def sample_catch_up(root: Path, raw: Path, args: argparse.Namespace) -> str:
    """A catch-up (plain, or the typical pipeline's), sampled from the links' appearance on."""
    mix, pipeline = (TYPICAL, TYPICAL_PIPELINE) if args.scenario == "typical" else (PLAIN, None)
    work = Workload(root, args.files, mix=mix)
    work.prewrite(args.lines // args.files, time.time_ns() - BACKLOG_AGE_NS)
    work.close()
    hidden = work.hide()
    with Sink() as sink:
        port = free_port()
        config = agent_config(root, work.pattern, sink.url, port, pipeline)
        with running_agent(config, port, root / "agent.log") as agent, \
                py_spy(agent.pid, raw, args.rate):
            work.reveal(hidden)
            if not sink.wait_entries(work.entries, timeout=600):
                raise RuntimeError("not every line arrived")
    return f"{args.scenario}: {work.lines:,} lines in {args.files} files"


def sample_steady(root: Path, raw: Path, args: argparse.Namespace) -> str:
    """The steady scenario at one rate, inside a CPU quota (--quota; 0: none) where a cgroup is
    writable, with the suite's writers (one write() per line), sampled while they write. In a
    quota py-spy samples the throttled time too, frozen where the quota ran out: still CPU
    weighted, but in lumps of up to 90 ms."""
    sizes = Sizes()
    work = Workload(root, sizes.steady_files)
    quota = None
    if args.quota and CpuQuota.available():
        quota = CpuQuota(f"shipper-profile-{os.getpid()}", int(args.quota * 100_000))
    try:
        with Sink() as sink:
            port = free_port()
            config = agent_config(root, work.pattern, sink.url, port)
            with running_agent(config, port, root / "agent.log", quota) as agent:
                with py_spy(agent.pid, raw, args.rate):
                    cpu = agent.cpu()
                    writer = RateWriter(work, args.steady_rate, sizes.steady_rotate_bytes,
                                        sizes.writer_processes).run(args.seconds)
                    cpu = agent.cpu() - cpu
                sink.wait_entries(work.entries, timeout=60)
    finally:
        work.close()
        if quota:
            quota.remove()
    where = f"in a {args.quota:g}-core cgroup quota" if quota else "without a quota"
    return (f"steady at {args.steady_rate:,} lines/s (written: {writer.rate:,.0f}) for "
            f"{args.seconds:g} s over {sizes.steady_files} files {where}; agent "
            f"{cpu / args.seconds:.3f} cores while sampled")


def profile_py_spy(args: argparse.Namespace) -> str:
    root = Path(tempfile.mkdtemp(prefix="shipper-profile-"))
    raw = args.out / f"{args.scenario}.pyspy.txt"
    try:
        sample = sample_steady if args.scenario == "steady" else sample_catch_up
        what = sample(root, raw, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    # The helper threads (the positions writer's) wait in calls py-spy does
    # not always take for idle: /proc shows them at ~0 CPU while py-spy gives them 10-40% of
    # its samples. The shares below are of the event loop thread's samples.
    _, _, every = own_time_from_raw(raw)
    own, inclusive, total = own_time_from_raw(raw, MAIN_THREAD)
    report = [f"py-spy, {every} samples at {args.rate} Hz (idle not sampled), {what}; below, "
              f"the {total} of the event loop's thread ({total / every:.0%})", "",
              "| own % | function |", "|---|---|"]
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
    parser.add_argument("--scenario", choices=("catch_up", "typical", "steady"),
                        default="catch_up", help="py-spy only: typical is the catch-up with "
                        "the typical pipeline; steady writes at --steady-rate in the quota")
    parser.add_argument("--steady-rate", type=int, default=25_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="steady: how long")
    parser.add_argument("--quota", type=float, default=0.1, help="steady: cores, 0 for none")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.profiler == "py-spy":
        report = profile_py_spy(args)
    else:
        report = profile_cprofile(args.lines, args.files, args.out)
    path = args.out / (f"profile-{args.profiler}-{args.scenario}-"
                       f"{time.strftime('%Y%m%d-%H%M%S')}.md")
    path.write_text(report)
    print(report)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
