"""End to end with the Kubernetes API: the agent enriches from a node-scoped pod watch served by
a fake API server over HTTP; no line leaves before its pod is known, and waiting on the API is
bounded (kubernetes.startup_wait, kubernetes.pod_wait)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shipper.agent import Agent
from shipper.config import Config
from shipper.model import FileId
from tests.support.agent import make_config, running, until
from tests.support.fake_kube import FakeKube, make_pod
from tests.support.faults import get
from tests.support.kubelet import PodLog
from tests.support.loki_receiver import LokiReceiver

NODE = "node-a"


async def ready(port: int) -> tuple[int, str]:
    return await asyncio.to_thread(get, port, "/ready")


async def shipped(agent: Agent, receiver: LokiReceiver, *, entries: int, excluded: int) -> None:
    """Wait until `entries` arrived, and long enough that excluded ones would have arrived too
    had they been shipped; all of them went out with their pod's metadata."""
    await until(lambda: len(receiver.entries) >= entries)
    await asyncio.sleep(0.5)
    assert len(receiver.entries) == entries
    assert agent.metrics.entries_excluded._value.get() == excluded
    assert agent.metrics.entries_without_metadata._value.get() == 0


def kube_config(root: Path, receiver: LokiReceiver, kube: FakeKube, *,
                kubernetes: dict[str, object] | None = None, **labels: object) -> Config:
    return make_config(root, receiver.url,
                       kubernetes={**kube.agent_section(root, NODE), **(kubernetes or {})},
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
        # Its pod never comes while it waits: after pod_wait, the path's labels.
        config = kube_config(tmp_path, receiver, kube, kubernetes={"pod_wait": "200ms"})

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


def test_an_api_down_for_the_whole_startup_holds_reading_for_startup_wait_only(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No file is read before the first pod list or kubernetes.startup_wait. With the API
    unreachable all along, the backlog then goes out with the labels of its path, counted,
    and the wait is logged once (not once per file)."""
    pods = [PodLog(tmp_path, "shop", f"web-{i}", "web") for i in range(3)]
    for pod in pods:
        pod.lines(pod.pod, 50)
    with FakeKube() as kube, LokiReceiver() as receiver:
        kube.go_down()
        config = kube_config(tmp_path, receiver, kube, kubernetes={"startup_wait": "1500ms"})

        async def scenario() -> None:
            async with running(config) as agent:
                assert agent.server.port is not None
                assert await ready(agent.server.port) == (503, "waiting for the first pod list\n")
                await asyncio.sleep(0.5)
                assert receiver.entries == []  # read only once startup_wait is over
                await until(lambda: len(receiver.entries) >= 150)
                assert await ready(agent.server.port) == (200, "ready\n")
                assert agent.watcher is not None and not agent.watcher.synced
                assert agent.metrics.kube_watch_restarts.labels("error")._value.get() >= 1
                assert agent.metrics.entries_without_metadata._value.get() == 150

        asyncio.run(scenario())
        entries = receiver.entries
    assert sorted(e.line for e in entries) == sorted(m for p in pods for m in p.written)
    assert {e.labels["app"] for e in entries} == {"web"}
    waits = [r for r in caplog.records if "kubernetes.startup_wait" in r.getMessage()]
    assert len(waits) == 1 and waits[0].levelname == "WARNING"


def test_a_backlog_present_at_start_is_read_once_its_pods_are_listed(tmp_path: Path) -> None:
    """The issue's report: a running pod's backlog went out under labels guessed from its path
    (app="checkout" instead of its app.kubernetes.io/name), and an opted-out pod's backlog
    leaked, because the files were read before the pod list answered."""
    checkout = PodLog(tmp_path, "shop", "checkout-6d4cf56db6-k2x9z", "server")
    secret = PodLog(tmp_path, "vault", "vault-0", "vault")
    checkout.lines("backlog", 50)
    secret.lines("top secret", 20)
    with FakeKube(list_delay=1.0) as kube, LokiReceiver() as receiver:
        kube.add_pod(make_pod(checkout.pod, "shop", NODE, uid=checkout.uid,
                              owner_kind="ReplicaSet", owner_name="checkout-6d4cf56db6",
                              containers=("server",),
                              labels={"app.kubernetes.io/name": "checkout-svc",
                                      "pod-template-hash": "6d4cf56db6"}))
        kube.add_pod(make_pod("vault-0", "vault", NODE, uid=secret.uid, owner_kind="StatefulSet",
                              owner_name="vault", containers=("vault",),
                              annotations={"shipper.io/exclude": "true"}))
        config = kube_config(tmp_path, receiver, kube)

        async def scenario() -> None:
            async with running(config) as agent:
                await shipped(agent, receiver, entries=50, excluded=20)

        asyncio.run(scenario())
        entries = receiver.entries
    assert sorted(e.line for e in entries) == sorted(checkout.written)
    assert {e.labels["app"] for e in entries} == {"checkout-svc"}


def test_ready_waits_for_the_first_pod_list(tmp_path: Path) -> None:
    with FakeKube(list_delay=1.5) as kube, LokiReceiver() as receiver:
        config = kube_config(tmp_path, receiver, kube)

        async def scenario() -> None:
            async with running(config) as agent:
                assert agent.server.port is not None
                assert await ready(agent.server.port) == (503, "waiting for the first pod list\n")
                await until(lambda: agent.watcher is not None and agent.watcher.synced)
                assert await ready(agent.server.port) == (200, "ready\n")

        asyncio.run(scenario())


def test_a_file_that_appears_before_its_pod_waits_for_it_while_others_flow(
        tmp_path: Path) -> None:
    """kubelet writes a new container's log before the watch tells of its pod: the file waits
    for the pod (woken by its arrival, well within pod_wait) instead of going out under the
    path's labels, or leaking when the pod opted out. Other files are read meanwhile."""
    steady = PodLog(tmp_path, "shop", "web-0", "web")
    with FakeKube() as kube, LokiReceiver() as receiver:
        kube.add_pod(make_pod("web-0", "shop", NODE, uid=steady.uid, containers=("web",),
                              labels={"app": "web"}))
        config = kube_config(tmp_path, receiver, kube, kubernetes={"pod_wait": "30s"})

        async def scenario() -> None:
            async with running(config) as agent:
                await until(lambda: agent.watcher is not None and agent.watcher.synced)
                kube.delay_events(2.0)
                report = PodLog(tmp_path, "jobs", "report-28391234-q2w4z", "main")
                report.lines("report", 30)
                hidden = PodLog(tmp_path, "vault", "vault-1", "vault")
                hidden.lines("top secret", 20)
                kube.add_pod(make_pod(report.pod, "jobs", NODE, uid=report.uid, owner_kind="Job",
                                      owner_name="report-28391234", containers=("main",),
                                      labels={"app": "nightly-report"}))
                kube.add_pod(make_pod("vault-1", "vault", NODE, uid=hidden.uid,
                                      containers=("vault",),
                                      annotations={"shipper.io/exclude": "true"}))
                steady.lines("steady", 10)
                await until(lambda: len(receiver.entries) >= 10)
                assert {e.line.split()[0] for e in receiver.entries} == {"steady"}
                await shipped(agent, receiver, entries=40, excluded=20)

        asyncio.run(scenario())
        entries = receiver.entries
    apps = {(e.line.split()[0], e.labels["app"]) for e in entries}
    assert apps == {("steady", "web"), ("report", "nightly-report")}


def test_a_pod_recreated_under_its_name_keeps_each_files_metadata_apart(tmp_path: Path) -> None:
    """A StatefulSet pod deleted and recreated with a new uid: its old and new log directories
    coexist, and each file keeps its own pod's metadata. The new pod's file appears before the
    watch tells of the change: it waits for its own pod, not the old one of the same name. The
    old pod's metadata serves its last lines for kubernetes.deleted_pod_ttl."""
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
                kube.delay_events(1.0)
                kube.delete_pod("shop", "db-0")
                kube.add_pod(db_pod(new_uid, "db-2"))
                new = PodLog(tmp_path, "shop", "db-0", "db", uid=new_uid)
                new.lines("new", 10)
                await until(lambda: agent.pods is not None
                            and agent.pods.get_by_uid(new_uid) is not None)
                old.lines("old-last", 10)  # the old container's last words, after its deletion
                await until(lambda: len(receiver.entries) >= 30)

        asyncio.run(scenario())
        entries = receiver.entries
    revisions = {(e.line.split()[0], e.metadata["controller_revision_hash"]) for e in entries}
    assert revisions == {("old", "db-1"), ("old-last", "db-1"), ("new", "db-2")}


def test_an_exclusion_is_checked_again_when_lines_are_sent(tmp_path: Path) -> None:
    """Exclusion is never bypassed by timing. Lines read before the annotation arrived, still
    waiting for a push, are not sent; lines read while it holds are not either; once it is
    removed, shipping resumes from there. Positions move past the skipped lines."""
    blocker = PodLog(tmp_path, "shop", "web-0", "web")
    chatty = PodLog(tmp_path, "shop", "chatty-0", "app")
    chatty_pod = make_pod("chatty-0", "shop", NODE, uid=chatty.uid)
    with FakeKube() as kube, LokiReceiver() as receiver:
        kube.add_pod(make_pod("web-0", "shop", NODE, uid=blocker.uid, containers=("web",)))
        kube.add_pod(chatty_pod)
        config = kube_config(tmp_path, receiver, kube)

        async def excluded(agent: Agent, value: bool) -> None:
            annotations = {"shipper.io/exclude": "true"} if value else {}
            kube.modify_pod({**chatty_pod, "metadata": {**chatty_pod["metadata"],
                                                        "annotations": annotations}})
            pods = agent.pods
            assert pods is not None
            await until(lambda: (meta := pods.get("shop", "chatty-0")) is not None
                        and meta.excluded == value)

        def arrived() -> list[str]:
            return [e.line.split()[0] for e in receiver.entries]

        async def scenario() -> None:
            async with running(config) as agent:
                await until(lambda: agent.watcher is not None and agent.watcher.synced)
                receiver.fail(503)  # the pusher retries web-0's batch; the next one waits
                blocker.lines("blocked", 1)
                await until(lambda: agent.metrics.batch_retries._value.get() >= 1)
                chatty.lines("before", 10)
                await until(lambda: agent.metrics.read_lines._value.get() == 11)
                await excluded(agent, True)
                chatty.lines("during", 10)
                await until(lambda: agent.metrics.read_lines._value.get() == 21)
                receiver.accept()
                await until(lambda: "blocked" in arrived())
                await excluded(agent, False)
                chatty.lines("after", 10)
                await until(lambda: arrived().count("after") == 10)  # the pusher is past "before"
                assert agent.metrics.entries_excluded._value.get() == 20
                st = chatty.file.stat()
                await until(lambda: agent.positions.offset(FileId(st.st_dev, st.st_ino))
                            == st.st_size)

        asyncio.run(scenario())
        entries = receiver.entries
    assert sorted(e.line for e in entries) == sorted(blocker.written + chatty.written[20:])
