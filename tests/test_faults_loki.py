"""Faults: Loki down (memory bound holds, reading pauses), throttled, flaky, partially rejecting."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from shipper.agent import Agent
from shipper.model import FileId
from tests.support.agent import make_config, running, until
from tests.support.faults import assert_none_missing, assert_stream_order, get
from tests.support.kubelet import PodLog
from tests.support.loki_receiver import LokiReceiver

BOUND = 256 * 1024
CHUNK = 16 * 1024


def _sample(agent: Agent, name: str, **labels: str) -> float:
    return agent.metrics.registry.get_sample_value(name, labels) or 0.0


def _watch_peak(agent: Agent) -> list[int]:
    """Record the flow-control high-water mark at every change, not just when sampled."""
    peak = [0]
    adjust = agent.flow.adjust

    def recording(n: int) -> None:
        adjust(n)
        peak[0] = max(peak[0], agent.flow.used)

    agent.flow.adjust = recording  # type: ignore[method-assign]
    return peak


def test_loki_down_pauses_reading_at_the_bound_then_delivers_everything_in_order(
        tmp_path: Path) -> None:
    pods = [PodLog(tmp_path, "outage", f"app-{i}", f"c{i}") for i in range(3)]
    for pod in pods:
        pod.lines(pod.container, 10_000)  # ~0.5 MiB each: well over the bound

    async def scenario(receiver: LokiReceiver) -> None:
        config = make_config(tmp_path, receiver.url, inputs={"read_chunk_bytes": CHUNK},
                             batch={"max_bytes": "64KiB", "max_pending_bytes": BOUND})
        receiver.refuse()  # the port stays known: start() listens on it again
        async with running(config) as agent:
            peak = _watch_peak(agent)
            read = lambda: _sample(agent, "shipper_read_bytes_total")  # noqa: E731
            await until(lambda: read() > 0)
            await asyncio.sleep(0.8)  # refused for a while: the buffer fills, reading stops
            before = read()
            await asyncio.sleep(0.5)
            assert read() == before, "reading went on while Loki was down and the buffer full"
            assert before < sum(os.path.getsize(p.file) for p in pods)
            receiver.fail(503)  # Loki is up again but unhealthy
            receiver.start()
            await until(lambda: receiver.requests >= 3)
            assert read() == before and not receiver.entries
            assert _sample(agent, "shipper_pending_bytes") <= BOUND + CHUNK
            receiver.accept()
            await until(lambda: len(receiver.entries) >= 30_000, timeout=20)
            assert peak[0] <= BOUND + CHUNK, f"flow control held {peak[0]} bytes"
            print(f"  peak pending bytes {peak[0]} (bound {BOUND} + chunk {CHUNK})")

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        entries = receiver.entries
    assert_none_missing(entries, [m for p in pods for m in p.written], "loki down")
    assert_stream_order(entries)


def test_throttling_errors_stalls_and_resets_are_retried(tmp_path: Path) -> None:
    pod = PodLog(tmp_path, "flaky", "app-0", "app")

    async def phase(receiver: LokiReceiver, name: str) -> None:
        before = receiver.requests
        pod.lines(name, 300)
        await until(lambda: receiver.requests >= before + 2)  # the fault was met, and retried

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url, loki={"timeout": "300ms"})):
            pod.lines("warmup", 10)
            await until(lambda: len(receiver.entries) >= 10)
            receiver.fail(429, retry_after="1")
            before = receiver.requests
            pod.lines("throttled", 300)
            await until(lambda: receiver.requests > before)
            first = receiver.requests
            await asyncio.sleep(0.7)
            # Without Retry-After, the 50ms..500ms backoff would have retried several times.
            assert receiver.requests - first <= 1, "Retry-After: 1 not honoured"
            for status in (500, 503, 502):
                receiver.fail(status)
                await phase(receiver, f"http{status}")
            receiver.stall(0.6)  # beyond loki.timeout: the agent gives up and retries
            await phase(receiver, "stalled")
            receiver.reset()
            await phase(receiver, "reset")
            receiver.accept()
            await until(lambda: len({e.line for e in receiver.entries}) >= len(pod.written))
            await asyncio.sleep(0.7)  # the stalled requests complete, storing duplicates

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        entries = receiver.entries
    duplicates = assert_none_missing(entries, pod.written, "throttling and flakiness")
    assert duplicates <= 300 * 2  # only the batches held by the stalls, stored as they ended
    assert_stream_order(entries)


@pytest.mark.parametrize("suffix", [
    "77",
    "7",  # a long answer: its 'total ignored: N' tail lies past what is logged
], ids=["few-rejected", "many-rejected"])
def test_partial_400_counts_the_rejected_lines_and_positions_still_advance(
        tmp_path: Path, suffix: str) -> None:
    pod = PodLog(tmp_path, "reject", "app-0", "app")
    bad = lambda line: line.endswith(suffix)  # noqa: E731

    async def scenario(receiver: LokiReceiver) -> None:
        receiver.reject_lines(bad, "line too long")
        async with running(make_config(tmp_path, receiver.url)) as agent:
            pod.lines("first", 500)
            await until(lambda: {m for m in pod.written if not bad(m)}
                        <= {e.line for e in receiver.entries})
            pod.lines("later", 500)  # the agent is not wedged on the rejected batches
            kept = {m for m in pod.written if not bad(m)}
            await until(lambda: kept <= {e.line for e in receiver.entries})
            st = os.stat(pod.file)
            await until(lambda: agent.positions.offset(FileId(st.st_dev, st.st_ino))
                        == st.st_size)
            dropped = _sample(agent, "shipper_dropped_entries_total", reason="line_too_long")
            assert dropped == len([m for m in pod.written if bad(m)])

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        entries = receiver.entries
    kept = [m for m in pod.written if not bad(m)]
    assert assert_none_missing(entries, kept, "partial 400") == 0


def test_odd_answers_from_loki_are_retried_and_delivery_goes_on(tmp_path: Path) -> None:
    """An answer the client cannot read is a transport failure like a 503, never the end of the
    delivery task: once Loki answers properly again, everything arrives."""
    pod = PodLog(tmp_path, "odd", "app-0", "app")
    odd = [b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (128 * 1024) + b"\r\n\r\n",
           b"\x00" * (128 * 1024),
           b"HTTP/1.1 204 No Content\r\nContent-",
           b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)) as agent:
            for n, raw in enumerate(odd):
                receiver.answer_raw(raw)
                target = receiver.requests + 2  # met, and retried
                pod.lines(f"odd{n}", 50)
                await until(lambda: receiver.requests >= target)  # noqa: B023 (awaited here)
            receiver.accept()
            await until(lambda: {e.line for e in receiver.entries} >= set(pod.written))
            assert _sample(agent, "shipper_request_duration_seconds_count",
                           status_code="error") >= 2 * len(odd)

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        entries = receiver.entries
    assert assert_none_missing(entries, pod.written, "odd answers") == 0


def test_a_stalled_loki_does_not_hold_back_reading_below_the_bound(tmp_path: Path) -> None:
    """The retry of one batch must not keep other files from filling the buffer."""
    pods = [PodLog(tmp_path, "stall", f"app-{i}", f"c{i}") for i in range(4)]

    async def scenario(receiver: LokiReceiver) -> None:
        receiver.refuse()
        config = make_config(tmp_path, receiver.url, batch={"max_pending_bytes": "4MiB"})
        async with running(config) as agent:
            await asyncio.sleep(0.3)  # a push is failing now
            for pod in pods:
                pod.lines(pod.container, 1000)
            total = sum(os.path.getsize(p.file) for p in pods)
            await until(lambda: _sample(agent, "shipper_read_bytes_total") == total)
            receiver.accept()
            await until(lambda: len(receiver.entries) >= 4000)

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        entries = receiver.entries
    assert assert_none_missing(entries, [m for p in pods for m in p.written], "read ahead") == 0


@pytest.mark.parametrize(("fault", "says"), [
    ("404", "404 Not Found: check loki.url: Loki's push path is /loki/api/v1/push"),
    ("401", "401 Unauthorized: check the credentials"),
])
def test_a_misconfiguration_drops_nothing_holds_positions_and_fails_ready_at_once(
        tmp_path: Path, fault: str, says: str) -> None:
    """A wrong path or wrong credentials are not bad data: every line waits on disk, /ready
    says what to check at once (not after ready_push_failure_window), and once the cause is
    fixed everything is delivered."""
    pod = PodLog(tmp_path, "misconfigured", "app-0", "app")

    async def ready(agent: Agent) -> tuple[int, str]:
        return await asyncio.to_thread(get, agent.server.port or 0, "/ready")

    async def scenario(receiver: LokiReceiver) -> None:
        path = "/api/v1/push" if fault == "404" else "/loki/api/v1/push"  # /loki left out
        if fault == "401":
            receiver.fail(401, body="no org id")
        url = f"http://127.0.0.1:{receiver.port}{path}"
        config = make_config(tmp_path, url, server={"ready_push_failure_window": "1h"})
        async with running(config) as agent:
            pod.lines("held", 300)
            await until(lambda: receiver.requests >= 3)  # met, and retried
            status, why = await ready(agent)
            assert status == 503 and why.startswith(f"push answered HTTP {says}"), why
            st = os.stat(pod.file)
            assert agent.positions.offset(FileId(st.st_dev, st.st_ino)) in (None, 0)
            assert _sample(agent, "shipper_dropped_entries_total", reason="bad_request") == 0
            receiver.paths.add(path)  # fixed: the path is served, the tenant accepted
            receiver.accept()
            await until(lambda: {e.line for e in receiver.entries} >= set(pod.written))
            await until(lambda: agent.positions.offset(FileId(st.st_dev, st.st_ino))
                        == st.st_size)
            assert await ready(agent) == (200, "ready\n")

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        entries = receiver.entries
    assert assert_none_missing(entries, pod.written, "misconfiguration") == 0
