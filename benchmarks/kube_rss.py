"""Benchmark: the memory of the pod watch with a full node (110 pods) in the cache.

Starts the fake API server with 110 pods on the node, then measures a fresh Python process that
imports what the agent imports, runs PodWatcher until the first list is in and every pod has
been modified once through the watch, and reads VmRSS/VmHWM from /proc/self/status. For
comparison it measures a bare `import asyncio`, and (--compare) lightkube's own AsyncClient
keeping its Pod models, the obvious alternative.

    .venv/bin/python benchmarks/kube_rss.py [--compare] [--system-ca]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.support.fake_kube import FakeKube

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: tests.support importable

NODE = "node-a"
PODS = 110  # kubelet's default maxPods
# A bare interpreter's figures, read as memory() reads them (json and re are tiny beside asyncio).
BARE = ("import asyncio, json, re; print(json.dumps({k: int(v) for k, v in re.findall("
        "r'(VmRSS|VmHWM):\\s+(\\d+) kB', open('/proc/self/status').read())}))")


def memory() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in KiB."""
    text = Path("/proc/self/status").read_text()
    return {k: int(v) for k, v in re.findall(r"(VmRSS|VmHWM):\s+(\d+) kB", text)}


def populate(kube: FakeKube) -> list[dict[str, Any]]:
    from tests.support.fake_kube import make_pod

    pods = []
    for i in range(PODS):
        kind, owner, labels = [
            ("ReplicaSet", f"svc{i % 40}-7d4b9c8f6", {"pod-template-hash": "7d4b9c8f6"}),
            ("DaemonSet", f"agent{i % 10}", {"controller-revision-hash": "5f6c7d8b9"}),
            ("StatefulSet", f"db{i % 10}", {"statefulset.kubernetes.io/pod-name": f"db-{i}"}),
            ("Job", f"backup{i % 10}-28571520", {"batch.kubernetes.io/job-name": "backup"}),
        ][i % 4]
        labels |= {"app.kubernetes.io/name": owner.split("-")[0], "app.kubernetes.io/part-of":
                   "shop", "app.kubernetes.io/version": "1.2.3", "team": f"team-{i % 7}"}
        pod = make_pod(f"{owner}-{i:05d}", f"ns-{i % 12}", NODE, labels=labels,
                       annotations={"prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                                    "kubectl.kubernetes.io/default-container": "app"},
                       owner_kind=kind, owner_name=owner, containers=("app", "sidecar"))
        pods.append(kube.add_pod(pod))
    return pods


async def child_watcher(kubeconfig: str) -> dict[str, object]:
    from shipper.config import KubernetesConfig
    from shipper.kube.pod_cache import PodCache
    from shipper.kube.watch import PodWatcher
    from shipper.metrics import Metrics

    cache = PodCache()
    watcher = PodWatcher(KubernetesConfig(kubeconfig=kubeconfig, node_name=NODE), cache,
                         Metrics())
    task = asyncio.create_task(watcher.run())
    while not watcher.synced:
        await asyncio.sleep(0.01)
    synced = memory()
    print("synced", flush=True)  # the parent now modifies every pod
    start = cache.version
    while cache.version < start + PODS:
        await asyncio.sleep(0.01)
    task.cancel()
    return {"pods_in_cache": len(cache), "kib_at_sync": synced, "kib_after_watch": memory()}


async def child_models(kubeconfig: str) -> dict[str, object]:
    from lightkube import AsyncClient, KubeConfig
    from lightkube.resources.core_v1 import Pod

    import shipper.config
    import shipper.metrics  # noqa: F401

    client = AsyncClient(KubeConfig.from_file(kubeconfig))
    pods = [p async for p in client.list(Pod, namespace="*", fields={"spec.nodeName": NODE})]
    print("synced", flush=True)
    result = {"pods_in_cache": len(pods), "kib_at_sync": memory()}
    await client.close()
    return result


def with_one_ca(kubeconfig: str, tmp: Path) -> str:
    """In a cluster the API's CA is the single cert in ca.crt. A kubeconfig without one makes
    lightkube load the whole system store into its SSL context (about 4.7 MiB): --system-ca."""
    bundle = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    end = "-----END CERTIFICATE-----"
    (tmp / "ca.crt").write_text(Path(bundle).read_text().split(end)[0] + end + "\n")
    config = json.loads(Path(kubeconfig).read_text())
    config["clusters"][0]["cluster"]["certificate-authority"] = str(tmp / "ca.crt")
    Path(kubeconfig).write_text(json.dumps(config))
    return kubeconfig


def measure(kubeconfig: str, mode: str, kube: FakeKube, pods: list[dict[str, Any]]) -> Any:
    proc = subprocess.Popen([sys.executable, __file__, "--child", mode, kubeconfig],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "synced"
    for pod in pods:
        pod["metadata"]["labels"]["revision"] = "2"
        kube.modify_pod(pod)
    out = proc.stdout.read()  # not communicate(): it would skip what readline() buffered
    if proc.wait(timeout=60):
        raise RuntimeError(f"{mode} child failed with {proc.returncode}")
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--system-ca", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "KUBECONFIG"))
    args = parser.parse_args()
    if args.child:
        mode, kubeconfig = args.child
        run = child_watcher if mode == "watcher" else child_models
        print(json.dumps(asyncio.run(run(kubeconfig))))
        return

    from tests.support.fake_kube import FakeKube

    bare = subprocess.run([sys.executable, "-c", BARE], capture_output=True, text=True,
                          check=True).stdout
    report: dict[str, object] = {"bare_import_asyncio_kib": json.loads(bare)}
    with FakeKube() as kube, tempfile.TemporaryDirectory() as tmp:
        pods = populate(kube)
        kubeconfig = kube.kubeconfig(Path(tmp) / "kubeconfig")
        if not args.system_ca:
            kubeconfig = with_one_ca(kubeconfig, Path(tmp))
        started = time.monotonic()
        report["pod_watcher"] = measure(kubeconfig, "watcher", kube, pods)
        report["seconds"] = round(time.monotonic() - started, 2)
        if args.compare:
            report["lightkube_models_list_only"] = measure(kubeconfig, "models", kube, [])
        list_bytes = len(json.dumps({"items": pods}))
    report["list_response_bytes"] = list_bytes
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
