"""Tests of the metadata gate: when a file may be read, given the pod cache (no HTTP here)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from shipper.config import KubernetesConfig
from shipper.kube.gate import MetadataGate
from shipper.kube.pod_cache import PodCache
from shipper.kube.pod_path import PathMeta
from tests.support.fake_kube import make_pod

FILE = PathMeta("shop", "web-0", "web", "5f1c2a9e-0000-4000-8000-000000000001")
POD = make_pod("web-0", "shop", uid=FILE.pod_uid, containers=("web",))


def run(scenario: Callable[[PodCache, MetadataGate], Awaitable[None]], *,
        startup_wait: float = 60.0, pod_wait: float = 60.0) -> None:
    async def main() -> None:
        cache = PodCache()
        gate = MetadataGate(cache, KubernetesConfig(startup_wait=startup_wait,
                                                    pod_wait=pod_wait))
        gate.start()
        await scenario(cache, gate)

    asyncio.run(main())


async def settle() -> None:
    """Let every task that was woken run as far as it can."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_reading_waits_for_the_first_list_then_for_the_files_pod() -> None:
    async def scenario(cache: PodCache, gate: MetadataGate) -> None:
        waiting = asyncio.create_task(gate.wait(FILE))
        await settle()
        cache.replace([make_pod("other-0", "shop")])
        await settle()
        assert gate.warm and not waiting.done()  # listed, but not its pod yet
        cache.apply("ADDED", POD)
        await settle()
        assert waiting.done()  # woken by the pod's arrival, not by a timer

    run(scenario)


def test_a_pod_already_listed_lets_its_file_be_read_at_once() -> None:
    async def scenario(cache: PodCache, gate: MetadataGate) -> None:
        assert not gate.warm
        cache.replace([POD])
        await asyncio.wait_for(gate.wait(FILE), 1.0)

    run(scenario)


def test_a_file_outside_the_kubelet_layout_never_waits() -> None:
    async def scenario(cache: PodCache, gate: MetadataGate) -> None:
        await asyncio.wait_for(gate.wait(None), 1.0)
        assert not gate.warm

    run(scenario)


def test_after_pod_wait_the_file_is_read_without_its_pod(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shipper.kube.gate")

    async def scenario(cache: PodCache, gate: MetadataGate) -> None:
        cache.replace([])
        await asyncio.wait_for(gate.wait(FILE), 1.0)
        assert cache.get_for_log(FILE) is None

    run(scenario, pod_wait=0.05)
    assert [r.getMessage() for r in caplog.records if r.name == "shipper.kube.gate"] == [
        "pod not known after kubernetes.pod_wait; its lines go out with the labels of their "
        "path until it is"]


def test_an_unanswered_list_lets_every_file_be_read_after_startup_wait(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(cache: PodCache, gate: MetadataGate) -> None:
        files = [PathMeta("shop", f"web-{i}", "web", f"uid-{i}") for i in range(3)]
        await asyncio.wait_for(asyncio.gather(*map(gate.wait, files)), 1.0)
        assert gate.warm  # and no pod_wait on top: the API is not answering

    run(scenario, startup_wait=0.05, pod_wait=60.0)
    warnings = [r for r in caplog.records if r.name == "shipper.kube.gate"]
    assert len(warnings) == 1 and "kubernetes.startup_wait" in warnings[0].getMessage()
