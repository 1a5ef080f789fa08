"""End to end with the Kubernetes API: the agent enriches from a node-scoped pod watch served by
a fake API server over HTTP, and never waits on it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from shipper.config import Config
from tests.support.agent import make_config, running, until
from tests.support.fake_kube import FakeKube, make_pod
from tests.support.kubelet import PodLog
from tests.support.loki_receiver import LokiReceiver

NODE = "node-a"


def kube_config(root: Path, receiver: LokiReceiver, kube: FakeKube, *,
                kubernetes: dict[str, object] | None = None, **labels: object) -> Config:
    return make_config(root, receiver.url,
                       kubernetes={"enabled": "true", "node_name": NODE,
                                   "kubeconfig": kube.kubeconfig(root / "kubeconfig"),
                                   **(kubernetes or {})},
                       labels=labels or {})


def test_known_pods_are_enriched_and_opted_out_pods_are_not_shipped(tmp_path: Path) -> None:
    api = PodLog(tmp_path, "shop", "api-7d9f8b6c5d-x7k2p", "server")
    sidecar = PodLog(tmp_path, "shop", "api-7d9f8b6c5d-x7k2p", "envoy")
    secret = PodLog(tmp_path, "vault", "vault-0", "vault")
    with FakeKube() as kube, LokiReceiver() as receiver:
        kube.add_pod(make_pod("api-7d9f8b6c5d-x7k2p", "shop", NODE, uid=api.uid,
                              owner_kind="ReplicaSet", owner_name="api-7d9f8b6c5d",
                              containers=("server", "envoy"),
                              labels={"app.kubernetes.io/name": "storefront", "team": "web",
                                      "pod-template-hash": "7d9f8b6c5d"},
                              annotations={"shipper.io/exclude-containers": "envoy"}))
        kube.add_pod(make_pod("vault-0", "vault", NODE, uid=secret.uid, owner_kind="StatefulSet",
                              owner_name="vault", containers=("vault",),
                              annotations={"shipper.io/exclude": "true"}))
        kube.add_pod(make_pod("elsewhere-0", "shop", "node-b"))  # not this node: never listed
        config = kube_config(tmp_path, receiver, kube, pod_labels=["team"],
                             structured_metadata=["pod", "node", "stream", "workload"])

        async def scenario() -> None:
            async with running(config) as agent:
                assert agent.watcher is not None
                await until(lambda: agent.watcher is not None and agent.watcher.synced)
                api.lines("served", 20)
                sidecar.lines("envoy noise", 20)
                secret.lines("top secret", 20)
                await until(lambda: len(receiver.entries) >= 20)
                await asyncio.sleep(0.5)  # excluded lines, if shipped, would have arrived
                assert agent.metrics.entries_excluded._value.get() == 40
                assert agent.pods is not None and len(agent.pods) == 2

        asyncio.run(scenario())
        entries = receiver.entries
        requested = {(request.method, request.path) for request in kube.requests}
    assert requested == {("GET", "/api/v1/pods")}  # list + watch, never a per-pod GET
    assert sorted(e.line for e in entries) == sorted(api.written)
    first = entries[0]
    assert first.labels == {"namespace": "shop", "container": "server", "app": "storefront"}
    assert first.metadata == {"pod": "api-7d9f8b6c5d-x7k2p", "node": NODE, "stream": "stdout",
                              "workload": "api", "team": "web"}


def test_a_pod_known_only_after_its_file_is_enriched_then_without_losing_lines(
        tmp_path: Path) -> None:
    late = PodLog(tmp_path, "jobs", "report-28391234-q2w4z", "main")
    with FakeKube() as kube, LokiReceiver() as receiver:
        config = kube_config(tmp_path, receiver, kube)

        async def scenario() -> None:
            async with running(config) as agent:
                assert agent.watcher is not None
                await until(lambda: agent.watcher is not None and agent.watcher.synced)
                late.lines("before", 30)  # the API does not know the pod yet: path labels
                await until(lambda: len(receiver.entries) >= 30)
                kube.add_pod(make_pod("report-28391234-q2w4z", "jobs", NODE, uid=late.uid,
                                      owner_kind="Job", owner_name="report-28391234",
                                      containers=("main",),
                                      labels={"app": "nightly-report"}))
                await until(lambda: agent.pods is not None and len(agent.pods) == 1)
                late.lines("after", 30)
                await until(lambda: len(receiver.entries) >= 60)
                assert agent.metrics.entries_without_metadata._value.get() == 30

        asyncio.run(scenario())
        entries = receiver.entries
    assert sorted(e.line for e in entries) == sorted(late.written)
    apps = {e.line.split()[0]: e.labels["app"] for e in entries}
    assert apps == {"before": "report", "after": "nightly-report"}  # guessed, then known


def test_api_unreachable_for_the_whole_run_still_ships_everything(tmp_path: Path) -> None:
    pods = [PodLog(tmp_path, "shop", f"web-{i}", "web") for i in range(3)]
    with FakeKube() as kube, LokiReceiver() as receiver:
        kube.go_down()
        config = kube_config(tmp_path, receiver, kube)

        async def scenario() -> None:
            async with running(config) as agent:
                for pod in pods:
                    pod.lines(pod.pod, 50)
                await until(lambda: len(receiver.entries) >= 150)
                assert agent.watcher is not None and not agent.watcher.synced
                assert agent.metrics.kube_watch_restarts.labels("error")._value.get() >= 1

        asyncio.run(scenario())
        entries = receiver.entries
    assert sorted(e.line for e in entries) == sorted(m for p in pods for m in p.written)
    assert {e.labels["app"] for e in entries} == {"web"}


def test_a_pod_recreated_under_its_name_keeps_each_files_metadata_apart(tmp_path: Path) -> None:
    """A StatefulSet pod deleted and recreated with a new uid: its old and new log directories
    coexist, and each file keeps its own pod's metadata; the old pod's serves its last lines
    for kubernetes.deleted_pod_ttl."""
    old_uid = "0a1d0a1d-0000-4000-8000-000000000001"
    new_uid = "0e20e20e-0000-4000-8000-000000000002"
    old = PodLog(tmp_path, "shop", "db-0", "db", uid=old_uid)

    def db_pod(uid: str, revision: str) -> dict[str, object]:
        return make_pod("db-0", "shop", NODE, uid=uid, owner_kind="StatefulSet", owner_name="db",
                        containers=("db",), labels={"controller-revision-hash": revision})

    with FakeKube() as kube, LokiReceiver() as receiver:
        kube.add_pod(db_pod(old_uid, "db-1"))
        config = kube_config(tmp_path, receiver, kube, kubernetes={"deleted_pod_ttl": "5m"},
                             pod_labels=["controller-revision-hash"])

        async def scenario() -> None:
            async with running(config) as agent:
                await until(lambda: agent.watcher is not None and agent.watcher.synced)
                old.lines("old", 10)
                await until(lambda: len(receiver.entries) >= 10)
                kube.delete_pod("shop", "db-0")
                kube.add_pod(db_pod(new_uid, "db-2"))
                await until(lambda: agent.pods is not None
                            and agent.pods.get_by_uid(new_uid) is not None)
                new = PodLog(tmp_path, "shop", "db-0", "db", uid=new_uid)
                new.lines("new", 10)
                old.lines("old-last", 10)  # the old container's last words, after its deletion
                await until(lambda: len(receiver.entries) >= 30)

        asyncio.run(scenario())
        entries = receiver.entries
    revisions = {(e.line.split()[0], e.metadata["controller_revision_hash"]) for e in entries}
    assert revisions == {("old", "db-1"), ("old-last", "db-1"), ("new", "db-2")}
