"""Benchmark scenarios: catch-up, many files at once, idle and latency (steady.py, streams.py
and typical.py hold the others)."""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import CLOCK_TICKS, Sink, agent_config, free_port, running_agent
from benchmarks.instructions import callgrind_catch_up, perf_window, resolve
from benchmarks.sizes import Sizes
from benchmarks.workload import BACKLOG_AGE_NS, PLAIN, Mix, Workload
from benchmarks.writer import RateWriter


def batch(sizes: Sizes) -> dict[str, Any]:
    return {"timeout": f"{sizes.batch_timeout:g}s"}


def catch_up(root: Path, sizes: Sizes, mix: Mix = PLAIN,
             pipeline: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A backlog on disk, read as fast as the agent can. The links appear only once the agent is
    up, so its start-up cost is measured apart from the reading's. Instructions: perf over the
    same span, else callgrind on a scaled-down run of the same mix afterwards."""
    method = resolve(sizes.instructions)
    work = Workload(root / "run", sizes.catchup_files, mix=mix)
    work.prewrite(sizes.catchup_lines // sizes.catchup_files, time.time_ns() - BACKLOG_AGE_NS)
    work.close()
    hidden = work.hide()
    with Sink() as sink:
        port = free_port()
        config = agent_config(work.root, work.pattern, sink.url, port, pipeline,
                              batch=batch(sizes))
        with running_agent(config, port, work.root / "agent.log") as agent:
            startup_cpu, startup_rss = agent.cpu(), agent.rss_mib()
            sink_cpu, waited, threads = sink.cpu(), agent.runqueue_wait(), agent.thread_cpu()
            start = time.monotonic()
            with perf_window(method, agent.pid, work.lines) as counted:
                work.reveal(hidden)
                delivered = sink.wait_entries(work.entries, timeout=600)
            wall = time.monotonic() - start
            cpu = agent.cpu() - startup_cpu
            waited = agent.runqueue_wait() - waited
            threads = delta(agent.thread_cpu(), threads)
            peak = agent.peak_rss_mib()
            stats = sink.stats()
            sink_cpu = sink.cpu() - sink_cpu
    total_cpu = cpu + startup_cpu
    result = {
        "lines": work.lines, "entries_expected": work.entries, "dropped_expected": work.dropped,
        "entries_received": stats["entries"],
        "delivered": delivered and stats["entries"] == work.entries,
        "mib": work.total_bytes / 2**20,
        "requests": stats["requests"], "wall_s": wall, "agent_cpu_s": cpu,
        "agent_runqueue_wait_s": waited, "agent_thread_cpu_s": threads,
        "startup_cpu_s": startup_cpu, "startup_rss_mib": startup_rss,
        "lines_per_cpu_s": work.lines / cpu if cpu else None,
        "lines_per_cpu_s_with_startup": work.lines / total_cpu if total_cpu else None,
        "mib_per_cpu_s": work.total_bytes / 2**20 / cpu if cpu else None,
        "peak_rss_mib": peak, "sink_cpu_s": sink_cpu, **counted,
    }
    if method == "callgrind":
        run = callgrind_catch_up(root / "callgrind", sizes.callgrind_lines, sizes.catchup_files,
                                 mix, pipeline)
        result.update(instructions_per_1m_lines=run["instructions_per_1m_lines"],
                      instructions_method=run["instructions_method"], callgrind=run,
                      delivered=result["delivered"] and run["delivered"])
    return result


def many_files(root: Path, sizes: Sizes) -> dict[str, Any]:
    """Issue 13's memory case: many_files files of a few hundred lines each, shown at once."""
    return files_at_once(root, sizes, sizes.many_files)


def some_files(root: Path, sizes: Sizes) -> dict[str, Any]:
    return files_at_once(root, sizes, sizes.some_files)


def files_at_once(root: Path, sizes: Sizes, files: int) -> dict[str, Any]:
    """The catch-up scenario over `files` files of files_lines_per_file lines: peak RSS is the
    figure (instructions only from perf: a callgrind run would add nothing on memory)."""
    counting = "perf" if resolve(sizes.instructions) == "perf" else "none"
    scaled = dataclasses.replace(sizes, catchup_files=files, instructions=counting,
                                 catchup_lines=files * sizes.files_lines_per_file)
    return {"files": files, **catch_up(root, scaled)}


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()}


def idle(root: Path, sizes: Sizes) -> dict[str, Any]:
    """Files watched, all delivered, nothing more written: the cost of waiting, from the
    scheduler's CPU time in ns, over idle_windows equal windows (their spread is the noise)."""
    work = Workload(root, sizes.idle_files)
    work.prewrite(10, time.time_ns() - BACKLOG_AGE_NS)
    work.close()
    with Sink() as sink:
        port = free_port()
        config = agent_config(root, work.pattern, sink.url, port, batch=batch(sizes))
        with running_agent(config, port, root / "agent.log") as agent:
            delivered = sink.wait_entries(work.entries, timeout=60)
            time.sleep(min(2.0, sizes.idle_seconds))  # the last positions write settles
            ticks, threads = agent.cpu(), agent.thread_cpu()
            marks = [(time.monotonic(), agent.cpu_ns())]
            with perf_window(resolve(sizes.instructions), agent.pid) as counted:
                for _ in range(sizes.idle_windows):
                    time.sleep(sizes.idle_seconds / sizes.idle_windows)
                    marks.append((time.monotonic(), agent.cpu_ns()))
            ticks, threads = agent.cpu() - ticks, delta(agent.thread_cpu(), threads)
            peak = agent.peak_rss_mib()
    seconds = marks[-1][0] - marks[0][0]
    cpu = (marks[-1][1] - marks[0][1]) / 1e9
    windows = [100 * (n1 - n0) / 1e9 / (t1 - t0)
               for (t0, n0), (t1, n1) in itertools.pairwise(marks)]
    return {"files": sizes.idle_files, "delivered": delivered, "seconds": seconds,
            "agent_cpu_s": cpu, "cpu_percent_of_core": 100 * cpu / seconds,
            "window_cpu_percents": windows,
            "cpu_percent_from_ticks": 100 * ticks / seconds,
            "tick_resolution_percent": 100 / CLOCK_TICKS / seconds,
            "agent_thread_cpu_s": threads, "peak_rss_mib": peak, **counted}


def percentile(histogram: list[list[int]], q: float) -> float:
    """q-quantile of a sorted [[value, count], ...] histogram."""
    total = sum(count for _, count in histogram)
    rank, seen = q * total, 0
    for value, count in histogram:
        seen += count
        if seen >= rank:
            return float(value)
    return float(histogram[-1][0]) if histogram else float("nan")


def latency(root: Path, sizes: Sizes) -> dict[str, Any]:
    """A trickle: each line's write-to-arrival time, from the write time in its timestamp
    (for the lines written during latency_seconds)."""
    work = Workload(root, sizes.latency_files)
    with Sink(lag=True) as sink:
        port = free_port()
        config = agent_config(root, work.pattern, sink.url, port, batch=batch(sizes))
        with running_agent(config, port, root / "agent.log") as agent:
            time.sleep(1.0)  # let discovery settle: the first lines are not start-up latency
            cpu = agent.cpu()
            start = time.time_ns()
            sink.measure_window(start, start + int(sizes.latency_seconds * 1e9))
            # Writing goes on past the measured span: a last batch stranded until
            # batch.timeout when writing stops is an artifact of the run, not latency.
            with perf_window(resolve(sizes.instructions), agent.pid) as counted:
                writer = RateWriter(work, sizes.latency_rate).run(
                    sizes.latency_seconds + sizes.batch_timeout + 2)
                delivered = sink.wait_entries(work.entries,
                                              timeout=sizes.batch_timeout * 2 + 10)
            cpu = agent.cpu() - cpu
            peak = agent.peak_rss_mib()
            stats = sink.stats()
    work.close()
    hist = stats["lag_ms"]
    return {"rate": writer.rate, "entries_expected": work.entries,
            "entries_received": stats["entries"],
            "delivered": delivered and stats["entries"] == work.entries,
            "p50_s": percentile(hist, 0.5) / 1000, "p99_s": percentile(hist, 0.99) / 1000,
            "max_s": (hist[-1][0] / 1000) if hist else None, "requests": stats["requests"],
            "agent_cpu_s": cpu, "peak_rss_mib": peak, **counted}
