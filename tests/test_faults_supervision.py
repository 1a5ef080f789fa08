"""Faults: a crash injected into each long-running task of the agent. Each is logged with its
traceback at once, then the task is restarted (losing no line), or given up so that /healthz
fails and kubelet restarts the container."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import shipper.agent
from shipper.batch import Batcher
from shipper.discover import Discoverer
from shipper.frame import LineFramer, Lines
from shipper.kube.pod_cache import PodCache
from shipper.loki.pusher import LokiPusher
from shipper.model import Entry, FileId
from shipper.positions import Positions
from shipper.server import HealthServer
from shipper.supervise import Policy
from tests.support.agent import make_config, running, until
from tests.support.fake_kube import FakeKube, make_pod
from tests.support.faults import assert_none_missing, get, saved_positions
from tests.support.kubelet import PodLog
from tests.support.loki_receiver import LokiReceiver, ReceivedEntry


def crash_once(monkeypatch: pytest.MonkeyPatch, owner: type, name: str,
               when: Callable[[], bool] = lambda: True) -> None:
    """owner.name raises once, at the first call for which when() holds; otherwise it runs."""
    real = getattr(owner, name)
    crashed = False

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal crashed
        if crashed or not when():
            return real(*args, **kwargs)
        crashed = True
        raise RuntimeError(f"injected into {owner.__name__}.{name}")

    monkeypatch.setattr(owner, name, wrapper)


def restarted(caplog: pytest.LogCaptureFixture, task: str) -> list[logging.LogRecord]:
    """The reports of `task` failing and being restarted, each with its traceback."""
    found = [r for r in caplog.records
             if r.getMessage() == "task failed; restarting it" and vars(r)["task"] == task]
    assert all(r.exc_info for r in found)
    return found


def run_logged(scenario: Callable[[LokiReceiver], Coroutine[Any, Any, None]],
               caplog: pytest.LogCaptureFixture) -> list[ReceivedEntry]:
    """Run the scenario against a receiver, with errors captured; what the receiver got."""
    with LokiReceiver() as receiver, caplog.at_level(logging.ERROR):
        asyncio.run(scenario(receiver))
        return receiver.entries


async def healthz(port: int | None) -> tuple[int, str]:
    assert port is not None
    return await asyncio.to_thread(get, port, "/healthz")


async def unhealthy(port: int | None) -> str:
    """Wait until /healthz fails (as kubelet's liveness probe would see it); its answer."""
    answers: list[tuple[int, str]] = []

    async def poll() -> bool:
        answers.append(await healthz(port))
        return answers[-1][0] != 200

    deadline = asyncio.get_running_loop().time() + 10
    while not await poll():
        assert asyncio.get_running_loop().time() < deadline, f"/healthz still {answers[-1]}"
        await asyncio.sleep(0.05)
    assert answers[-1][0] == 500
    return answers[-1][1]


def file_id(path: Path) -> FileId:
    st = os.stat(path)
    return FileId(st.st_dev, st.st_ino)


def test_delivery_restarts_and_pushes_the_batch_in_flight_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The worst moment: Loki stored the batch, then the push failed. The batch is pushed
    again (its lines arrive twice, nothing is dropped) and settled once: positions reach the
    end of the file and the pending bytes return to 0, not below."""
    pod = PodLog(tmp_path, "sup", "app-0", "app")
    pod.lines("before", 100)
    real_push = LokiPusher.push
    in_flight: list[int] = []

    async def push(self: LokiPusher, streams: Mapping[str, Sequence[Entry]], entries: int,
                   line_bytes: int) -> object:
        result = await real_push(self, streams, entries, line_bytes)
        if not in_flight:
            in_flight.append(entries)
            raise RuntimeError("injected after Loki stored the batch")
        return result

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)) as agent:
            await until(lambda: len(receiver.entries) >= 100)
            monkeypatch.setattr(LokiPusher, "push", push)
            pod.lines("after", 300)
            await until(lambda: len({e.line for e in receiver.entries}) >= 400)
            size = os.path.getsize(pod.file)
            await until(lambda: agent.positions.offset(file_id(pod.file)) == size)
            await until(lambda: agent.flow.used == 0)
            assert await healthz(agent.server.port) == (200, "ok\n")

    entries = run_logged(scenario, caplog)
    assert in_flight and len(restarted(caplog, "deliver")) == 1
    assert assert_none_missing(entries, pod.written, "delivery crash") == in_flight[0]


def test_a_batch_failing_half_way_through_settling_fails_healthz(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its tickets could never settle, so the positions of its files would stop for good:
    kubelet must restart the agent, which then reads them again from the saved positions."""
    pod = PodLog(tmp_path, "sup", "app-0", "app")
    crash_once(monkeypatch, Batcher, "settle")

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)) as agent:
            pod.lines("line", 10)
            body = await unhealthy(agent.server.port)
            assert body.startswith("task deliver failed for good: Unrecoverable("), body

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))


def test_discovery_restarts_and_finds_new_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    first = PodLog(tmp_path, "sup", "first-0", "app")
    first.lines("first", 50)
    calls = itertools.count()
    # call 0 is the first scan at start; call 1, the discovery task's own first rescan
    crash_once(monkeypatch, Discoverer, "paths", when=lambda: next(calls) == 1)

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)):
            await until(lambda: len(receiver.entries) >= 50)
            later = PodLog(tmp_path, "sup", "later-0", "app")
            later.lines("later", 50)
            await until(lambda: len(receiver.entries) >= 100)

    run_logged(scenario, caplog)
    assert len(restarted(caplog, "discover")) == 1


def test_a_failed_tailer_reads_its_files_again_from_their_acknowledged_offsets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The tailer fails after consuming bytes it never handed on, while kubelet rotates the
    file and deletes the renamed one: the restarted tailer reads those lines again through
    the descriptor it kept, then the new file. Nothing lost, nothing twice."""
    pod = PodLog(tmp_path, "sup", "app-0", "app")
    pod.lines("acknowledged", 100)
    real_feed = LineFramer.feed
    crashed = False

    def feed(self: LineFramer, data: bytes) -> Lines | None:
        nonlocal crashed
        lines = real_feed(self, data)
        if not crashed and b"unacknowledged" in data:
            crashed = True
            pod.rotate().unlink()
            pod.lines("next file", 50)
            raise RuntimeError("injected after the read bytes were consumed")
        return lines

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)) as agent:
            await until(lambda: len(receiver.entries) >= 100)
            size = os.path.getsize(pod.file)
            await until(lambda: agent.positions.offset(file_id(pod.file)) == size)
            monkeypatch.setattr(LineFramer, "feed", feed)
            pod.lines("unacknowledged", 50)
            await until(lambda: len({e.line for e in receiver.entries}) >= 200)
            await asyncio.sleep(0.3)  # anything sent twice would arrive now

    entries = run_logged(scenario, caplog)
    assert crashed and len(restarted(caplog, f"tail {pod.link}")) == 1
    assert assert_none_missing(entries, pod.written, "tailer crash") == 0


def test_the_positions_writer_restarts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    pod = PodLog(tmp_path, "sup", "app-0", "app")
    crash_once(monkeypatch, Positions, "save")

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)):
            pod.lines("line", 100)
            size = os.path.getsize(pod.file)
            await until(lambda: saved_positions(tmp_path / "positions.json").get(
                file_id(pod.file)) == size)

    run_logged(scenario, caplog)
    assert len(restarted(caplog, "positions")) == 1


def test_the_pod_watch_restarts_and_metadata_arrives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    pod = PodLog(tmp_path, "shop", "api-0", "server")
    crash_once(monkeypatch, PodCache, "replace")
    with FakeKube() as kube, LokiReceiver() as receiver:
        kube.add_pod(make_pod("api-0", "shop", "node-a", uid=pod.uid, containers=("server",),
                              labels={"app": "storefront"}))
        config = make_config(tmp_path, receiver.url, kubernetes=kube.agent_section(tmp_path))

        async def scenario() -> None:
            async with running(config) as agent:
                await until(lambda: agent.watcher is not None and agent.watcher.synced)
                pod.lines("line", 20)
                await until(lambda: len(receiver.entries) >= 20)

        with caplog.at_level(logging.ERROR):
            asyncio.run(scenario())
        entries = receiver.entries
    assert len(restarted(caplog, "pod_watch")) == 1
    assert {e.labels["app"] for e in entries} == {"storefront"}  # from the API


def test_a_failing_request_is_answered_500_and_the_server_keeps_serving(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    crash_once(monkeypatch, HealthServer, "_route")

    async def scenario() -> None:
        async with running(make_config(tmp_path, "")) as agent:
            assert await healthz(agent.server.port) == (500, "failed\n")
            assert await healthz(agent.server.port) == (200, "ok\n")
            assert agent.metrics.task_failures.labels("server")._value.get() == 1

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    failed = [r for r in caplog.records if r.getMessage() == "request failed; answering 500"]
    assert len(failed) == 1 and failed[0].exc_info


def test_an_essential_task_that_keeps_failing_is_given_up_and_fails_healthz(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Discovery failing at each restart: /healthz names it, so kubelet restarts the
    container; meanwhile the files already open keep shipping."""
    monkeypatch.setattr(shipper.agent, "ESSENTIAL",
                        Policy(min_backoff=0.01, max_backoff=0.01, give_up_after=5))

    async def broken(self: Discoverer, *args: object) -> None:
        raise OSError("injected: inotify is gone")

    monkeypatch.setattr(Discoverer, "watch", broken)
    pod = PodLog(tmp_path, "sup", "app-0", "app")

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)) as agent:
            assert await unhealthy(agent.server.port) == (
                "task discover failed for good: OSError('injected: inotify is gone')\n")
            pod.lines("still shipping", 20)
            await until(lambda: len(receiver.entries) >= 20)

    run_logged(scenario, caplog)
    assert len(restarted(caplog, "discover")) == 4
    assert [r.levelname for r in caplog.records if vars(r).get("task") == "discover"][-1] \
        == "CRITICAL"
