"""Tests of the pod watcher against a fake API server over real HTTP, through a kubeconfig."""

from __future__ import annotations

import asyncio
import contextlib
import json
import typing
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from shipper.config import ConfigError, KubernetesConfig
from shipper.kube.pod_cache import PodCache
from shipper.kube.watch import EXPIRE_INTERVAL, MAX_BACKOFF, MIN_BACKOFF, PodWatcher
from shipper.metrics import Metrics
from tests.support.clock import Clock
from tests.support.fake_kube import FakeKube, make_pod

NODE = "node-a"


class Harness:
    """A watcher wired to the fake API, with a cache clock and a sleep the test controls."""

    def __init__(self, kube: FakeKube, tmp_path: Path, page_size: int = 500) -> None:
        self.kube = kube
        self.clock = Clock()
        self.cache = PodCache(deleted_ttl=60.0, clock=self.clock)
        self.metrics = Metrics()
        self.backoffs: list[float] = []
        config = KubernetesConfig(kubeconfig=kube.kubeconfig(tmp_path / "kubeconfig"),
                                  node_name=NODE)
        self.watcher = PodWatcher(config, self.cache, self.metrics, sleep=self._sleep,
                                  page_size=page_size)
        self._task: asyncio.Task[None] | None = None

    async def _sleep(self, seconds: float) -> None:
        if seconds != EXPIRE_INTERVAL:
            self.backoffs.append(seconds)
        await asyncio.sleep(0.002)  # the fake API answers from a thread: let it run

    def restarts(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "shipper_kube_watch_restarts_total", {"reason": reason})
        return value or 0.0

    def lists(self) -> int:
        return sum(1 for r in self.kube.requests if not r.is_watch)

    def watches(self) -> list[str]:
        """The resourceVersion each watch request resumed from."""
        return [r.query["resourceVersion"] for r in self.kube.requests if r.is_watch]

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        assert self._task is not None
        deadline = asyncio.get_running_loop().time() + 3.0
        while not condition():
            if self._task.done():
                self._task.result()  # run() must not end: surface why it did
                raise AssertionError(f"run() returned while waiting for {what}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.005)

    def run(self, scenario: Callable[[], Awaitable[None]]) -> None:
        async def main() -> None:
            self._task = asyncio.create_task(self.watcher.run())
            try:
                await scenario()
            finally:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        asyncio.run(main())
        # Whatever happened, the API saw only list and watch of this node's pods.
        assert self.kube.requests
        for request in self.kube.requests:
            assert (request.method, request.path) == ("GET", "/api/v1/pods")
            assert request.query["fieldSelector"] == f"spec.nodeName={NODE}"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


def test_the_first_list_fills_the_cache_with_this_nodes_pods(kube: FakeKube,
                                                             tmp_path: Path) -> None:
    kube.add_pod(make_pod("web-1", "shop", NODE, labels={"app": "web"}))
    kube.add_pod(make_pod("elsewhere", "shop", "node-b"))
    h = Harness(kube, tmp_path)

    async def scenario() -> None:
        assert not h.watcher.synced
        await h.until(lambda: h.watcher.synced, "the first list")
        meta = h.cache.get("shop", "web-1")
        assert meta is not None and meta.app == "web" and meta.node == NODE
        assert h.cache.get("shop", "elsewhere") is None
        assert h.metrics.registry.get_sample_value("shipper_kube_pods") == 1
        await h.until(lambda: kube.watching == 1, "the watch")

    h.run(scenario)
    listing, watch = kube.requests[:2]
    assert listing.query["resourceVersion"] == "0"  # served from the API server's cache
    assert watch.query["resourceVersion"] == str(kube.resource_version)
    assert watch.query["allowWatchBookmarks"] == "true"
    assert 60 <= int(watch.query["timeoutSeconds"]) <= 600


def test_watch_events_are_applied(kube: FakeKube, tmp_path: Path) -> None:
    h = Harness(kube, tmp_path)

    async def scenario() -> None:
        await h.until(lambda: kube.watching == 1, "the watch")
        pod = kube.add_pod(make_pod("api-0", "shop", NODE, owner_kind="StatefulSet",
                                    owner_name="api"))
        await h.until(lambda: h.cache.get("shop", "api-0") is not None, "ADDED")
        pod["metadata"]["annotations"]["shipper.io/exclude"] = "true"
        kube.modify_pod(pod)
        await h.until(lambda: getattr(h.cache.get("shop", "api-0"), "excluded", False),
                      "MODIFIED")
        kube.delete_pod("shop", "api-0")
        kube.add_pod(make_pod("marker", "shop", NODE))  # DELETED was applied before this
        await h.until(lambda: h.cache.get("shop", "marker") is not None, "the marker")
        assert h.cache.get("shop", "api-0") is not None  # deleted, but kept for its last lines
        h.clock.now += 60.0
        await h.until(lambda: h.cache.get("shop", "api-0") is None, "the deleted pod expiring")
        await h.until(lambda: h.metrics.registry.get_sample_value("shipper_kube_pods") == 1,
                      "the pod gauge")

    h.run(scenario)
    assert h.lists() == 1


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
def test_gone_leads_to_a_relist(kube: FakeKube, tmp_path: Path, as_http: bool) -> None:
    kube.gone_as_http = as_http
    kube.add_pod(make_pod("old", "shop", NODE))
    h = Harness(kube, tmp_path)

    async def scenario() -> None:
        await h.until(lambda: kube.watching == 1, "the watch")
        # History the watcher never saw (another node's pods) is compacted away, then its
        # stream ends: resuming from its rv is impossible.
        kube.add_pod(make_pod("other", "shop", "node-b"))
        kube.compact()
        kube.drop_watches()
        await h.until(lambda: h.lists() == 2 and kube.watching == 1, "the relist and watch")
        kube.add_pod(make_pod("new", "shop", NODE))
        await h.until(lambda: h.cache.get("shop", "new") is not None, "events after relist")

    h.run(scenario)
    assert h.restarts("gone") == 1
    assert h.watches()[-1] == str(kube.resource_version - 1)  # from the relist's rv


def test_a_dropped_stream_resumes_from_the_last_rv(kube: FakeKube, tmp_path: Path) -> None:
    h = Harness(kube, tmp_path)

    async def scenario() -> None:
        await h.until(lambda: kube.watching == 1, "the watch")
        kube.add_pod(make_pod("a", "shop", NODE))
        await h.until(lambda: h.cache.get("shop", "a") is not None, "ADDED")
        kube.drop_watches()
        await h.until(lambda: len(h.watches()) == 2, "the resumed watch")
        kube.add_pod(make_pod("b", "shop", NODE))
        await h.until(lambda: h.cache.get("shop", "b") is not None, "events after resuming")

    h.run(scenario)
    assert h.lists() == 1
    assert h.watches()[1] == str(kube.resource_version - 1)  # the rv of pod "a"
    assert h.restarts("closed") == 1
    assert h.backoffs == []  # the stream had delivered events: resume at once


def test_a_bookmark_moves_the_rv_forward(kube: FakeKube, tmp_path: Path) -> None:
    h = Harness(kube, tmp_path)

    async def scenario() -> None:
        await h.until(lambda: kube.watching == 1, "the watch")
        kube.add_pod(make_pod("marker", "shop", NODE))
        await h.until(lambda: h.cache.get("shop", "marker") is not None, "the marker")
        for i in range(3):  # changes this watch filters out, yet they advance the rv
            kube.add_pod(make_pod(f"other-{i}", "shop", "node-b"))
        kube.bookmark()
        kube.compact()  # resuming from the marker's rv would now be 410 Gone
        kube.drop_watches()
        await h.until(lambda: len(h.watches()) == 2, "the resumed watch")

    h.run(scenario)
    assert h.watches()[1] == str(kube.resource_version)  # the bookmark's rv
    assert h.lists() == 1 and h.restarts("gone") == 0


def test_api_down_then_up_recovers_with_capped_backoff(kube: FakeKube, tmp_path: Path) -> None:
    kube.add_pod(make_pod("a", "shop", NODE))
    h = Harness(kube, tmp_path)

    async def scenario() -> None:
        await h.until(lambda: kube.watching == 1, "the watch")
        kube.go_down()
        kube.add_pod(make_pod("b", "shop", NODE))  # happens while the watcher cannot see
        await h.until(lambda: len(h.backoffs) >= 10, "ten failed reconnects")
        kube.come_up()
        await h.until(lambda: h.cache.get("shop", "b") is not None, "the missed pod")

    h.run(scenario)
    assert h.lists() == 1  # resumed from its rv: the missed event was replayed
    assert h.restarts("error") >= 10
    for attempt, delay in enumerate(h.backoffs[:10]):
        ceiling = min(MIN_BACKOFF * 2**attempt, MAX_BACKOFF)
        assert ceiling / 2 <= delay <= ceiling


def test_api_down_from_the_start_is_retried_not_raised(kube: FakeKube, tmp_path: Path) -> None:
    kube.add_pod(make_pod("a", "shop", NODE))
    kube.go_down()
    h = Harness(kube, tmp_path)

    async def scenario() -> None:
        await h.until(lambda: len(h.backoffs) >= 3, "three failed lists")
        assert not h.watcher.synced and len(h.cache) == 0
        kube.come_up()
        await h.until(lambda: h.watcher.synced, "the first list")
        assert h.cache.get("shop", "a") is not None

    h.run(scenario)


def test_a_rejected_token_is_retried_and_counted(kube: FakeKube, tmp_path: Path) -> None:
    h = Harness(kube, tmp_path)
    path = tmp_path / "kubeconfig"
    config = json.loads(path.read_text())
    config["users"][0]["user"]["token"] = "wrong"
    path.write_text(json.dumps(config))
    h.watcher = PodWatcher(KubernetesConfig(kubeconfig=str(path), node_name=NODE), h.cache,
                           h.metrics, sleep=h._sleep)

    async def scenario() -> None:
        await h.until(lambda: h.restarts("status") >= 2, "two rejected lists")
        assert not h.watcher.synced

    h.run(scenario)


def test_a_long_list_is_read_in_pages(kube: FakeKube, tmp_path: Path) -> None:
    for i in range(5):
        kube.add_pod(make_pod(f"p{i}", "shop", NODE))
    h = Harness(kube, tmp_path, page_size=2)

    async def scenario() -> None:
        await h.until(lambda: h.watcher.synced, "the first list")
        assert len(h.cache) == 5

    h.run(scenario)
    pages = [r.query for r in kube.requests if not r.is_watch]
    assert [p.get("continue", "") != "" for p in pages] == [False, True, True]
    assert all(p["limit"] == "2" for p in pages)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    cache, metrics = PodCache(), Metrics()
    with pytest.raises(ConfigError, match=r"kubernetes\.node_name"):
        PodWatcher(KubernetesConfig(kubeconfig="/nonexistent"), cache, metrics)
    broken = tmp_path / "kubeconfig"
    broken.write_text("clusters: 12\n")
    with pytest.raises(ConfigError, match=r"kubernetes\.kubeconfig"):
        PodWatcher(KubernetesConfig(kubeconfig=str(broken), node_name=NODE), cache, metrics)


def test_the_fake_serves_pods_the_kubernetes_schema_accepts() -> None:
    from lightkube.resources.core_v1 import Pod  # validates every required field on decode

    raw = make_pod("web-1", "shop", NODE, owner_kind="ReplicaSet", owner_name="web-7d4b9c8f6",
                   containers=("app", "proxy"))
    pod = typing.cast(Pod, Pod.from_dict(raw))
    assert pod.spec is not None and [c.name for c in pod.spec.containers] == ["app", "proxy"]
