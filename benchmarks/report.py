"""Benchmark report: the machine, each figure against its target, as JSON and Markdown."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEAK_RSS_TARGET_MIB = 64.0
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Figure:
    scenario: str
    label: str
    key: str
    unit: str
    target: str = ""
    met: Callable[[float, dict[str, Any]], bool] | None = None


def _rss(scenario: str) -> Figure:
    return Figure(scenario, "peak RSS (VmHWM)", "peak_rss_mib", "MiB", f"≤ {PEAK_RSS_TARGET_MIB:g}",
                  lambda v, _: v <= PEAK_RSS_TARGET_MIB)


FIGURES = (
    Figure("catch_up", "lines per CPU-second (pipeline)", "lines_per_cpu_s", "lines/s",
           "≥ 250,000", lambda v, _: v >= 250_000),
    Figure("catch_up", "lines per CPU-second (with start-up)", "lines_per_cpu_s_with_startup",
           "lines/s"),
    Figure("catch_up", "MiB per CPU-second", "mib_per_cpu_s", "MiB/s"),
    Figure("catch_up", "wall time", "wall_s", "s"),
    Figure("catch_up", "agent waiting for a CPU (run queue)", "agent_runqueue_wait_s", "s"),
    Figure("catch_up", "start-up CPU", "startup_cpu_s", "s"),
    Figure("catch_up", "sink CPU (own process)", "sink_cpu_s", "s"),
    _rss("catch_up"),
    Figure("steady", "highest rate kept up in the quota", "max_rate_kept_up", "lines/s",
           "≥ 10,000", lambda v, _: v >= 10_000),
    _rss("steady"),
    Figure("idle", "CPU", "cpu_percent_of_core", "% of a core", "≤ 0.5",
           lambda v, _: v <= 0.5),
    _rss("idle"),
    Figure("latency", "p50 write to arrival", "p50_s", "s"),
    Figure("latency", "p99 write to arrival", "p99_s", "s", "≤ timeout + 1 s",
           lambda v, r: v <= r["batch_timeout_s"] + 1),
    _rss("latency"),
    Figure("many_streams", "Loki streams", "loki_streams", ""),
    Figure("many_streams", "RSS once 110 pods are cached, before any file", "synced_rss_mib",
           "MiB"),
    Figure("many_streams", "CPU for the backlog (incl. start-up and pod list)", "backlog_cpu_s",
           "s"),
    Figure("many_streams", "CPU of the trickle, per second", "trickle_cores", "cores"),
    _rss("many_streams"),
)


def source() -> dict[str, Any]:
    """Which agent was measured: the commit, and whether shipper/ had uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout
    return {"commit": git("rev-parse", "--short", "HEAD").strip(),
            "shipper_modified": bool(git("status", "--porcelain", "--", "shipper").strip())}


def reference_loop_s() -> float:
    """CPU seconds of a fixed pure-Python loop: how fast this (virtual) CPU runs right now. On
    a shared VM the same work took 2.5 s or 3.8 s CPU minutes apart, so every CPU-second figure
    is to be read beside this one."""
    started = time.process_time()
    total = 0
    for i in range(10_000_000):
        total += i & 7
    return time.process_time() - started


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                  if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "kernel": platform.release(), "loadavg_at_start": os.getloadavg(),
            "reference_loop_s_at_start": reference_loop_s()}


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure of the scenarios that ran: value, target, and whether it is met."""
    rows = []
    for figure in FIGURES:
        result = results["scenarios"].get(figure.scenario)
        if result is None or "error" in result:
            continue
        value = result.get(figure.key)
        met = None
        if figure.met is not None and value is not None:
            met = figure.met(value, {"batch_timeout_s": results["sizes"]["batch_timeout"]})
        rows.append({"scenario": figure.scenario, "figure": figure.label, "value": value,
                     "unit": figure.unit, "target": figure.target, "met": met})
    return rows


def markdown(results: dict[str, Any]) -> str:
    m, src = results["machine"], results["source"]
    out = [f"# shipper benchmarks, {results['started']}", "",
           f"Machine: {m['nproc']} CPUs, {m['cpu_model']}, Python {m['python']}, "
           f"Linux {m['kernel']}; load average at start {m['loadavg_at_start'][0]:.2f}.",
           f"Host speed: a fixed Python loop (10M iterations) took "
           f"{m['reference_loop_s_at_start']:.2f} s CPU at the start and "
           f"{m.get('reference_loop_s_at_end', float('nan')):.2f} s at the end (CPU-second "
           "figures scale with it).",
           f"Agent: commit {src['commit']}"
           f"{' with uncommitted changes in shipper/' if src['shipper_modified'] else ''}.",
           "",
           "| scenario | figure | value | target | met |", "|---|---|---|---|---|"]
    for row in verdicts(results):
        met = {True: "yes", False: "**no**", None: ""}[row["met"]]
        out.append(f"| {row['scenario']} | {row['figure']} | {_format(row['value'])} "
                   f"{row['unit']} | {row['target']} | {met} |")
    out += ["", "| scenario | all lines delivered | note |", "|---|---|---|"]
    for name, result in results["scenarios"].items():
        note = result.get("error", "")
        out.append(f"| {name} | {result.get('delivered', '')} | {note} |")
    steady = results["scenarios"].get("steady")
    if steady and "trials" in steady:
        out += ["", "Steady-rate trials (CPU quota "
                f"{'cgroup' if steady['cgroup'] else 'none: extrapolated'} "
                f"{steady['quota_cores']:g} core):", "",
                "| rate | achieved | keeps up | max lag s | lag first/last third s | agent cores "
                "| throttled periods | rotations | peak RSS MiB |",
                "|---|---|---|---|---|---|---|---|---|"]
        for t in steady["trials"]:
            throttled = t["throttled"].get("nr_throttled", "")
            out.append(f"| {t['rate']:,} | {t['achieved_rate']:,.0f} | {t['keeps_up']} | "
                       f"{t['max_lag_s']:.2f} | {t['first_third_max_lag_s']:.2f} / "
                       f"{t['last_third_max_lag_s']:.2f} | {t['agent_cores']:.3f} | "
                       f"{throttled} | {t['rotations']} | {t['peak_rss_mib']:.1f} |")
    return "\n".join(out) + "\n"
