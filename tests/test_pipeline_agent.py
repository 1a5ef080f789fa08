"""The pipeline inside the running agent: real files, real HTTP to the decoding receiver."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.support.agent import make_config, running, until
from tests.support.fake_kube import FakeKube, make_pod
from tests.support.faults import line_ends, saved_positions
from tests.support.kubelet import PodLog
from tests.support.loki_receiver import LokiReceiver


def test_dropped_lines_are_counted_and_their_positions_advance(tmp_path: Path) -> None:
    pod = PodLog(tmp_path, "shop", "api-0", "api")
    pipeline = [{"match": {"namespace": "shop"},
                 "stages": [{"drop": {"line": "healthz"}}]}]

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url, pipeline)) as agent:
            for i in range(50):
                pod.line(f"GET /healthz {i}")
                pod.line(f"GET /api {i}")
            await until(lambda: len(receiver.entries) >= 50)
            await until(lambda: saved_positions(tmp_path / "positions.json").get(
                line_ends([pod.file])["GET /api 49"][0], 0) == pod.file.stat().st_size)
            assert agent.metrics.registry.get_sample_value(
                "shipper_dropped_entries_total", {"reason": "pipeline_drop"}) == 50

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        lines = sorted(e.line for e in receiver.entries)
    assert lines == sorted(f"GET /api {i}" for i in range(50))


def test_a_hold_rate_limit_loses_nothing_and_paces_the_stream(tmp_path: Path) -> None:
    pod = PodLog(tmp_path, "shop", "chatty-0", "app")
    pod.lines("burst", 300)  # at start: 300 lines against 100/s with a burst of 100
    pipeline = [{"stages": [{"rate_limit": {"lines_per_second": 100, "burst": 100,
                                            "action": "hold"}}]}]

    async def scenario(receiver: LokiReceiver) -> float:
        started = time.monotonic()
        async with running(make_config(tmp_path, receiver.url, pipeline,
                                       inputs={"read_chunk_bytes": "4KiB"})) as agent:
            await until(lambda: len(receiver.entries) >= 300, timeout=15)
            assert agent.metrics.registry.get_sample_value(
                "shipper_dropped_entries_total", {"reason": "rate_limited"}) is None
        return time.monotonic() - started

    with LokiReceiver() as receiver:
        took = asyncio.run(scenario(receiver))
        lines = [e.line for e in receiver.entries]
    assert sorted(lines) == sorted(pod.written)
    assert took >= 1.9, f"300 lines at 100/s after a burst of 100 took only {took:.2f}s"



def test_two_tenants_arrive_as_two_requests_each_with_its_own_header(tmp_path: Path) -> None:
    shop, ops = PodLog(tmp_path, "shop", "api-0", "api"), PodLog(tmp_path, "ops", "cron-0", "c")
    shop.lines("shop", 40)
    ops.lines("ops", 30)
    pipeline = [{"match": {"namespace": ["shop", "ops"]},
                 "stages": [{"tenant": {"namespace": True}}]}]

    async def scenario(receiver: LokiReceiver) -> None:
        config = make_config(tmp_path, receiver.url, pipeline, batch={"timeout": "1s"},
                             loki={"tenant_id": "fallback"})
        async with running(config):
            await until(lambda: len(receiver.entries) >= 70)

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        entries, headers = receiver.entries, receiver.headers_seen
    assert {e.tenant for e in entries if e.line.startswith("shop")} == {"shop"}
    assert {e.tenant for e in entries if e.line.startswith("ops")} == {"ops"}
    assert sorted(h["X-Scope-OrgID"] for h in headers) == ["ops", "shop"]  # one batch, split


def test_an_annotated_pod_gets_its_parser_within_one_watch_event(tmp_path: Path) -> None:
    pod = PodLog(tmp_path, "shop", "api-0", "api")
    manifest = make_pod("api-0", "shop", "node-a", uid=pod.uid, containers=("api",))
    with FakeKube() as kube, LokiReceiver() as receiver:
        kube.add_pod(manifest)
        config = make_config(tmp_path, receiver.url, kubernetes=kube.agent_section(tmp_path))

        async def scenario() -> None:
            async with running(config) as agent:
                await until(lambda: agent.watcher is not None and agent.watcher.synced)
                pod.line('{"level":"warn","msg":"before","order":1}')
                await until(lambda: len(receiver.entries) >= 1)
                version = agent.pods.version if agent.pods else 0
                manifest["metadata"]["annotations"]["shipper.io/parser"] = "json"
                kube.modify_pod(manifest)  # one watch event
                await until(lambda: agent.pods is not None and agent.pods.version > version)
                pod.line('{"level":"warn","msg":"after","order":2}')
                await until(lambda: len(receiver.entries) >= 2)

        asyncio.run(scenario())
        before, after = sorted(receiver.entries, key=lambda e: e.timestamp_ns)
    assert "order" not in before.metadata
    assert {k: after.metadata[k] for k in ("level", "msg", "order")} == {
        "level": "warn", "msg": "after", "order": "2"}
