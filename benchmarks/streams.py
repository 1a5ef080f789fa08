"""Benchmark scenario: many streams with the pod metadata watch against a fake API server."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.harness import Sink, agent_config, free_port, running_agent, wait
from benchmarks.instructions import perf_window, resolve
from benchmarks.scenarios import batch
from benchmarks.sizes import Sizes
from benchmarks.workload import BACKLOG_AGE_NS, Workload, pod_name, pod_uid
from benchmarks.writer import RateWriter

NODE = "bench-node"


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
        config = agent_config(root, work.pattern, sink.url, port, batch=batch(sizes),
                              kubernetes={"enabled": "true", "kubeconfig": kubeconfig,
                                          "node_name": NODE})
        with running_agent(config, port, root / "agent.log") as agent:
            synced = wait(lambda: _metric(port, "shipper_kube_pods") == sizes.streams_pods, 30)
            synced_rss = agent.rss_mib()
            work.reveal(hidden)
            backlog = sink.wait_entries(work.entries, timeout=300)
            backlog_cpu = agent.cpu()
            with perf_window(resolve(sizes.instructions), agent.pid) as counted:
                RateWriter(work, sizes.streams_rate).run(sizes.streams_seconds)
                delivered = sink.wait_entries(work.entries,
                                              timeout=sizes.batch_timeout * 2 + 10)
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
            "trickle_cores": trickle_cpu / sizes.streams_seconds, "peak_rss_mib": peak,
            **counted}
