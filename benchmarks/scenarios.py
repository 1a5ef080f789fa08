"""Benchmark scenarios: catch-up, idle, latency and many streams (the steady rate is steady.py)."""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import Sink, agent_config, free_port, running_agent, wait
from benchmarks.workload import RateWriter, Workload, pod_name, pod_uid

NODE = "bench-node"
BACKLOG_AGE_NS = 3600 * 1_000_000_000  # pre-written lines are an hour old


@dataclass(frozen=True, slots=True)
class Sizes:
    """Every scenario's size; QUICK shrinks them for the smoke run in CI."""

    catchup_lines: int = 1_000_000
    catchup_files: int = 20
    steady_files: int = 50
    steady_seconds: float = 60.0
    steady_rates: tuple[int, ...] = (2_000, 5_000, 10_000, 15_000, 20_000, 25_000, 30_000)
    steady_first_rate: int = 10_000  # the search starts here, then goes up or down the ladder
    steady_rotate_bytes: int = 1024 * 1024  # small enough that files rotate during a trial
    steady_quota: float = 0.1  # cores: 100m
    idle_files: int = 200
    idle_seconds: float = 60.0
    latency_rate: float = 50.0
    latency_files: int = 10
    latency_seconds: float = 60.0
    streams_files: int = 500
    streams_pods: int = 110
    streams_lines_per_file: int = 200
    streams_rate: float = 2_000.0
    streams_seconds: float = 30.0
    batch_timeout: float = 10.0  # the default; the quick run shortens the wait for a last batch


# The smoke run checks that the suite works, not the budget: its steady trial gets half a core,
# since a 3 s trial in 100m on a busy CI machine is decided by start-up and scheduling noise.
QUICK = Sizes(catchup_lines=20_000, steady_files=10, steady_seconds=3.0, steady_rates=(2_000,),
              steady_first_rate=2_000, steady_quota=0.5, steady_rotate_bytes=64 * 1024,
              idle_files=20, idle_seconds=2.0, latency_files=5, latency_seconds=2.0,
              streams_files=40, streams_pods=11, streams_lines_per_file=50,
              streams_rate=500.0, streams_seconds=2.0, batch_timeout=1.0)


def _batch(sizes: Sizes) -> dict[str, Any]:
    return {"timeout": f"{sizes.batch_timeout:g}s"}


def catch_up(root: Path, sizes: Sizes) -> dict[str, Any]:
    """A backlog on disk, read as fast as the agent can. The links appear only once the agent is
    up, so its start-up cost is measured apart from the pipeline's."""
    work = Workload(root, sizes.catchup_files)
    work.prewrite(sizes.catchup_lines // sizes.catchup_files, time.time_ns() - BACKLOG_AGE_NS)
    work.close()
    hidden = work.hide()
    with Sink() as sink:
        port = free_port()
        config = agent_config(root, work.pattern, sink.url, port, batch=_batch(sizes))
        with running_agent(config, port, root / "agent.log") as agent:
            startup_cpu, startup_rss = agent.cpu(), agent.rss_mib()
            sink_cpu, waited, threads = sink.cpu(), agent.runqueue_wait(), agent.thread_cpu()
            start = time.monotonic()
            work.reveal(hidden)
            delivered = sink.wait_entries(work.entries, timeout=600)
            wall = time.monotonic() - start
            cpu = agent.cpu() - startup_cpu
            waited = agent.runqueue_wait() - waited
            threads = _delta(agent.thread_cpu(), threads)
            peak = agent.peak_rss_mib()
            stats = sink.stats()
            sink_cpu = sink.cpu() - sink_cpu
    total_cpu = cpu + startup_cpu
    return {
        "lines": work.lines, "entries_expected": work.entries,
        "entries_received": stats["entries"],
        "delivered": delivered and stats["entries"] == work.entries,
        "mib": work.total_bytes / 2**20,
        "requests": stats["requests"], "wall_s": wall, "agent_cpu_s": cpu,
        "agent_runqueue_wait_s": waited, "agent_thread_cpu_s": threads,
        "startup_cpu_s": startup_cpu, "startup_rss_mib": startup_rss,
        "lines_per_cpu_s": work.lines / cpu if cpu else None,
        "lines_per_cpu_s_with_startup": work.lines / total_cpu if total_cpu else None,
        "mib_per_cpu_s": work.total_bytes / 2**20 / cpu if cpu else None,
        "peak_rss_mib": peak, "sink_cpu_s": sink_cpu,
    }


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()}


def idle(root: Path, sizes: Sizes) -> dict[str, Any]:
    """Files watched, all delivered, nothing more written: the cost of waiting."""
    work = Workload(root, sizes.idle_files)
    work.prewrite(10, time.time_ns() - BACKLOG_AGE_NS)
    work.close()
    with Sink() as sink:
        port = free_port()
        config = agent_config(root, work.pattern, sink.url, port, batch=_batch(sizes))
        with running_agent(config, port, root / "agent.log") as agent:
            delivered = sink.wait_entries(work.entries, timeout=60)
            time.sleep(min(2.0, sizes.idle_seconds))  # the last positions write settles
            cpu, threads = agent.cpu(), agent.thread_cpu()
            time.sleep(sizes.idle_seconds)
            cpu, threads = agent.cpu() - cpu, _delta(agent.thread_cpu(), threads)
            peak = agent.peak_rss_mib()
    return {"files": sizes.idle_files, "delivered": delivered, "seconds": sizes.idle_seconds,
            "agent_cpu_s": cpu, "cpu_percent_of_core": 100 * cpu / sizes.idle_seconds,
            "agent_thread_cpu_s": threads,
            "peak_rss_mib": peak}


def _percentile(histogram: list[list[int]], q: float) -> float:
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
        config = agent_config(root, work.pattern, sink.url, port, batch=_batch(sizes))
        with running_agent(config, port, root / "agent.log") as agent:
            time.sleep(1.0)  # let discovery settle: the first lines are not start-up latency
            cpu = agent.cpu()
            start = time.time_ns()
            sink.measure_window(start, start + int(sizes.latency_seconds * 1e9))
            # Writing goes on past the measured span: a last batch stranded until
            # batch.timeout when writing stops is an artifact of the run, not latency.
            writer = RateWriter(work, sizes.latency_rate)
            rate = writer.run(sizes.latency_seconds + sizes.batch_timeout + 2)
            delivered = sink.wait_entries(work.entries, timeout=sizes.batch_timeout * 2 + 10)
            cpu = agent.cpu() - cpu
            peak = agent.peak_rss_mib()
            stats = sink.stats()
    work.close()
    hist = stats["lag_ms"]
    return {"rate": rate, "entries_expected": work.entries, "entries_received": stats["entries"],
            "delivered": delivered and stats["entries"] == work.entries,
            "p50_s": _percentile(hist, 0.5) / 1000, "p99_s": _percentile(hist, 0.99) / 1000,
            "max_s": (hist[-1][0] / 1000) if hist else None, "requests": stats["requests"],
            "agent_cpu_s": cpu, "peak_rss_mib": peak}


def _fake_pods(kube: Any, work: Workload, pods: int) -> None:
    from tests.support.fake_kube import make_pod

    containers: dict[int, list[str]] = {}
    for i in range(len(work.files)):
        containers.setdefault(i % pods, []).append(f"c{i // pods}")
    for i in range(pods):
        kube.add_pod(make_pod(
            pod_name(i), f"ns{i % 7}", NODE, uid=pod_uid(i),
            labels={"app.kubernetes.io/name": f"app{i}", "pod-template-hash": "7d9f8b6c5d"},
            owner_kind="ReplicaSet", owner_name=f"app{i}-7d9f8b6c5d",
            containers=tuple(containers.get(i, ["c0"]))))


def _metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def many_streams(root: Path, sizes: Sizes) -> dict[str, Any]:
    """Many files and the pod metadata watch (against the fake API server): memory. A backlog
    on every file is read first, then a trickle keeps every stream active."""
    from tests.support.fake_kube import FakeKube

    work = Workload(root, sizes.streams_files, pods=sizes.streams_pods)
    work.prewrite(sizes.streams_lines_per_file, time.time_ns() - BACKLOG_AGE_NS)
    hidden = work.hide()  # shown once the pod cache is synced: this measures the steady state
    with FakeKube() as kube, Sink() as sink:
        _fake_pods(kube, work, sizes.streams_pods)
        kubeconfig = kube.kubeconfig(root / "kubeconfig")
        port = free_port()
        config = agent_config(root, work.pattern, sink.url, port, batch=_batch(sizes),
                              kubernetes={"enabled": "true", "kubeconfig": kubeconfig,
                                          "node_name": NODE})
        with running_agent(config, port, root / "agent.log") as agent:
            synced = wait(lambda: _metric(port, "shipper_kube_pods") == sizes.streams_pods, 30)
            synced_rss = agent.rss_mib()
            work.reveal(hidden)
            backlog = sink.wait_entries(work.entries, timeout=300)
            backlog_cpu = agent.cpu()
            RateWriter(work, sizes.streams_rate).run(sizes.streams_seconds)
            delivered = sink.wait_entries(work.entries, timeout=sizes.batch_timeout * 2 + 10)
            trickle_cpu = agent.cpu() - backlog_cpu
            pods = _metric(port, "shipper_kube_pods")
            without = _metric(port, "shipper_entries_without_metadata_total")
            peak, cpu = agent.peak_rss_mib(), agent.cpu()
            stats = sink.stats()
    work.close()
    return {"files": sizes.streams_files, "pods": sizes.streams_pods, "pods_cached": pods,
            "watch_synced": synced, "synced_rss_mib": synced_rss,
            "entries_without_metadata": without,
            "entries_expected": work.entries, "entries_received": stats["entries"],
            "delivered": backlog and delivered and stats["entries"] == work.entries,
            "loki_streams": stats["streams"], "agent_cpu_s": cpu,
            "backlog_cpu_s": backlog_cpu, "trickle_cpu_s": trickle_cpu,
            "trickle_cores": trickle_cpu / sizes.streams_seconds, "peak_rss_mib": peak}
