"""Benchmark scenario: the highest steady rate the agent keeps up with inside a CPU quota."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import CpuQuota, Sink, agent_config, free_port, running_agent
from benchmarks.instructions import perf_window, resolve
from benchmarks.scenarios import batch, delta
from benchmarks.sizes import Sizes
from benchmarks.workload import PLAIN, Mix, Workload
from benchmarks.writer import RateWriter
from shipper.agent import READ_TICK

PERIOD_US = 100_000
GROWTH_TOLERANCE_S = 1.0  # lag may wobble by this much between the first and last third


def lag_verdict(windows: list[list[int]], start_s: float, end_s: float,
                timeout: float) -> dict[str, Any]:
    """From the sink's worst lag per arrival second: does lag stay under 2x batch.timeout, and
    is it no worse in the last third of the writing than in the first (it does not grow)?"""
    lags = [(second, ms / 1000) for second, ms in windows]
    during = [(s, lag) for s, lag in lags if start_s <= s <= end_s]
    third = (end_s - start_s) / 3
    first = max((lag for s, lag in during if s < start_s + third), default=0.0)
    last = max((lag for s, lag in during if s >= end_s - third), default=0.0)
    worst = max((lag for _, lag in lags), default=0.0)
    growth = last - first
    return {"max_lag_s": worst, "first_third_max_lag_s": first, "last_third_max_lag_s": last,
            "lag_ok": worst < 2 * timeout and growth <= GROWTH_TOLERANCE_S}


def trial(root: Path, sizes: Sizes, rate: int, mix: Mix = PLAIN,
          pipeline: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One rate for steady_seconds across steady_files, rotating at steady_rotate_bytes, written
    by writer_processes kubelet-like writers (one write() per line)."""
    root.mkdir(parents=True)
    work = Workload(root, sizes.steady_files, mix=mix)
    quota = None
    if CpuQuota.available():
        quota = CpuQuota(f"shipper-bench-{os.getpid()}-{rate}",
                         int(sizes.steady_quota * PERIOD_US), PERIOD_US)
    try:
        with Sink(lag=True) as sink:
            port = free_port()
            config = agent_config(root, work.pattern, sink.url, port, pipeline,
                                  batch=batch(sizes))
            with running_agent(config, port, root / "agent.log", quota) as agent:
                time.sleep(1.0)  # discovery settles before the clock starts
                cpu, sink_cpu, threads = agent.cpu(), sink.cpu(), agent.thread_cpu()
                throttled = quota.throttling() if quota else {}
                with perf_window(resolve(sizes.instructions), agent.pid) as counted:
                    start = time.time()
                    writer = RateWriter(work, rate, sizes.steady_rotate_bytes,
                                        sizes.writer_processes).run(sizes.steady_seconds)
                    end = time.time()
                    # The last line waits up to a read tick, then up to batch.timeout.
                    delivered = sink.wait_entries(work.entries,
                                                  timeout=2 * sizes.batch_timeout + READ_TICK)
                    drain = time.time() - end
                cpu = agent.cpu() - cpu
                threads = delta(agent.thread_cpu(), threads)
                peak = agent.peak_rss_mib()
                stats = sink.stats()
                sink_cpu = sink.cpu() - sink_cpu
                if quota:
                    after = quota.throttling()
                    throttled = {k: after[k] - throttled.get(k, 0) for k in after}
    finally:
        work.close()
        if quota:
            quota.remove()
    verdict = lag_verdict(stats["window_max_ms"], start, end, sizes.batch_timeout)
    cpu_share = cpu / (end - start + drain)
    # Without a quota the figure is extrapolated: keeping up must also fit in the CPU budget.
    fits = quota is not None or cpu_share <= sizes.steady_quota
    keeps_up = bool(delivered and verdict["lag_ok"] and fits)
    return {"rate": rate, "achieved_rate": writer.rate,
            "writer_slowest_second": writer.slowest_second, "writer_cpu_s": writer.cpu_s,
            "writer_processes": writer.processes, "quota": bool(quota),
            "entries_expected": work.entries, "dropped_expected": work.dropped,
            "entries_received": stats["entries"], "lines": work.lines,
            "rotations": sum(len(f.rotations) for f in work.files),
            "delivered": delivered and stats["entries"] == work.entries,
            "drain_s": drain, **verdict, "keeps_up": keeps_up,
            # issue 13's stricter reading: everything in within batch.timeout of the stop
            "drained_in_timeout": keeps_up and drain <= sizes.batch_timeout,
            "agent_cpu_s": cpu, "agent_cores": cpu_share, "agent_thread_cpu_s": threads,
            "throttled": throttled,
            "requests": stats["requests"], "peak_rss_mib": peak, "sink_cpu_s": sink_cpu,
            **counted}


def highest(trials: list[dict[str, Any]], key: str) -> int:
    """The highest rate below which every trial tried passed `key` (a pass above a failure is
    noise, not a rate kept up)."""
    best = 0
    for t in sorted(trials, key=lambda t: t["rate"]):
        if not t[key]:
            break
        best = t["rate"]
    return best


def steady(root: Path, sizes: Sizes) -> dict[str, Any]:
    """Every rate of the ladder from steady_first_rate up (the rates above the first failure
    tell how far off they are), and down from it only while the agent fails."""
    ladder = sorted(sizes.steady_rates)
    first = ladder.index(sizes.steady_first_rate)
    trials = [trial(root / f"rate-{rate}", sizes, rate) for rate in ladder[first:]]
    lowest = trials[0]
    for rate in reversed(ladder[:first]):
        if lowest["keeps_up"]:
            break
        lowest = trial(root / f"rate-{rate}", sizes, rate)
        trials.insert(0, lowest)
    kept = highest(trials, "keeps_up")
    return {"quota_cores": sizes.steady_quota, "cgroup": CpuQuota.available(),
            "files": sizes.steady_files, "seconds": sizes.steady_seconds,
            "rotate_bytes": sizes.steady_rotate_bytes, "batch_timeout_s": sizes.batch_timeout,
            "max_rate_kept_up": kept,
            "max_rate_drained_in_timeout": highest(trials, "drained_in_timeout"),
            "delivered": any(t["delivered"] for t in trials if t["rate"] == kept),
            "peak_rss_mib": max(t["peak_rss_mib"] for t in trials), "trials": trials}
