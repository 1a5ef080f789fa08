"""End to end: /metrics, /healthz and /ready over real HTTP while the agent ships to a
Loki-protocol receiver, and the agent's own logs on stderr."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from shipper.agent import Agent
from shipper.logs import JsonFormatter
from shipper.metrics import Metrics
from tests.support.agent import (
    config_dict,
    make_config,
    running,
    start_subprocess,
    terminate,
    until,
)
from tests.support.kubelet import PodLog
from tests.support.loki_receiver import LokiReceiver


async def get(agent: Agent, path: str, method: str = "GET") -> tuple[int, str, str]:
    """(status, content type, body) of a request to the agent's server, from a thread so the
    agent's loop keeps running while the stdlib client waits."""
    url = f"http://127.0.0.1:{agent.server.port}{path}"

    def fetch() -> tuple[int, str, str]:
        request = urllib.request.Request(url, method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                return r.status, r.headers["Content-Type"], r.read().decode()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.headers["Content-Type"], e.read().decode()

    return await asyncio.to_thread(fetch)


class Scrape:
    """One /metrics answer, parsed by prometheus_client's own parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def value(self, name: str, **labels: str) -> float | None:
        """The sample with exactly these labels, or None when the series is absent."""
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        return found[0] if found else None

    def series(self, name: str) -> list[dict[str, str]]:
        return [s.labels for s in self.samples if s.name == name]


async def scrape(agent: Agent) -> Scrape:
    status, ctype, body = await get(agent, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    return Scrape(body)


async def scrape_until(agent: Agent, predicate: Callable[[Scrape], bool],
                       timeout: float = 5.0) -> Scrape:
    """Scrape until predicate(scrape) holds: a counter moves just after the receiver answers."""
    latest: list[Scrape] = []

    async def poll() -> None:
        while True:
            latest[:] = [await scrape(agent)]
            if predicate(latest[0]):
                return
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"metrics never matched; last scrape:\n{latest[0].text}") from None
    return latest[0]


def test_counters_over_http_equal_what_loki_received(tmp_path: Path) -> None:
    api = PodLog(tmp_path, "shop", "api-7d9f8b6c5d-x7k2p", "api")
    api.lines("hello", 150)
    for i in range(10):
        api.line(f"oops {i}", stream="stderr")

    async def scenario(receiver: LokiReceiver) -> Scrape:
        async with running(make_config(tmp_path, receiver.url)) as agent:
            await until(lambda: len(receiver.entries) >= 160, timeout=5)
            got = await scrape_until(agent, lambda s: s.value(
                "shipper_sent_entries_total") == len(receiver.entries))
            path = str(api.link)
            size = api.file.stat().st_size
            got = await scrape_until(agent, lambda s: s.value(
                "shipper_file_acked_bytes", path=path) == size)
            assert await get(agent, "/healthz") == (200, "text/plain", "ok\n")
            assert (await get(agent, "/ready"))[0] == 200
            assert (await get(agent, "/nope"))[0] == 404
            assert (await get(agent, "/metrics", method="POST"))[0] == 405
            return got

    with LokiReceiver() as receiver:
        s = asyncio.run(scenario(receiver))
        received, requests = receiver.entries, receiver.requests
    assert len(received) == 160
    assert s.value("shipper_sent_entries_total") == 160
    assert s.value("shipper_sent_bytes_total") == sum(len(e.line.encode()) for e in received)
    assert s.value("shipper_read_lines_total") == 160
    assert s.value("shipper_read_bytes_total") == api.file.stat().st_size
    assert s.value("shipper_request_duration_seconds_count", status_code="204") == requests
    assert s.value("shipper_file_bytes", path=str(api.link)) == api.file.stat().st_size
    assert s.value("shipper_files_active") == 1
    assert s.value("shipper_pending_bytes") == 0
    assert s.series("shipper_dropped_entries_total") == []
    assert s.value("shipper_build_info", version="0.1.0", python_version=s.series(
        "shipper_build_info")[0]["python_version"], node="node-1") == 1
    resident = s.value("process_resident_memory_bytes")
    assert resident is not None and resident > 0
    assert s.value("process_cpu_seconds_total") is not None
    assert "_created" not in s.text  # no OpenMetrics creation-time series in the text format


def test_rejected_lines_are_counted_as_drops_by_reason(tmp_path: Path) -> None:
    pod = PodLog(tmp_path, "shop", "web-0", "web")

    async def scenario(receiver: LokiReceiver) -> Scrape:
        async with running(make_config(tmp_path, receiver.url)) as agent:
            # Loki's partial 400: the other entries of each batch are stored.
            receiver.reject_lines(lambda line: line.startswith("huge"))
            for i in range(30):
                pod.line(f"fine {i}")
                if i % 6 == 0:
                    pod.line(f"huge {i}")
            await until(lambda: len(receiver.entries) >= 30, timeout=5)
            await scrape_until(agent, lambda s: s.value(
                "shipper_dropped_entries_total", reason="line_too_long") == 5)
            # A 400 that counts nothing: the whole batch is dropped, as bad_request.
            receiver.fail(400, body="invalid push request")
            pod.lines("refused", 7)
            return await scrape_until(agent, lambda s: s.value(
                "shipper_dropped_entries_total", reason="bad_request") == 7)

    with LokiReceiver() as receiver:
        s = asyncio.run(scenario(receiver))
        received = receiver.entries
    assert sorted(e.line for e in received) == sorted(f"fine {i}" for i in range(30))
    assert s.value("shipper_sent_entries_total") == 30
    assert s.value("shipper_dropped_entries_total", reason="line_too_long") == 5
    assert s.value("shipper_dropped_entries_total", reason="bad_request") == 7
    dropped_bytes = s.value("shipper_dropped_bytes_total", reason="bad_request")
    assert dropped_bytes == sum(len(f"refused {i:07d}") for i in range(7))
    assert s.value("shipper_request_duration_seconds_count", status_code="400") is not None
    assert s.value("shipper_batch_retries_total") == 0  # a 400 is never retried


def test_ready_flips_while_pushes_fail_longer_than_the_window(tmp_path: Path) -> None:
    pod = PodLog(tmp_path, "shop", "web-0", "web")

    async def ready(agent: Agent) -> tuple[int, str]:
        status, _, body = await get(agent, "/ready")
        return status, body

    async def scenario(receiver: LokiReceiver) -> None:
        config = make_config(tmp_path, receiver.url, server={
            "listen": "127.0.0.1:0", "ready_push_failure_window": "300ms"})
        async with running(config) as agent:
            assert await ready(agent) == (200, "ready\n")
            receiver.fail(503)
            pod.line("during the outage")
            seen: list[tuple[int, str]] = []

            async def poll_ready(status: int) -> None:
                while (answer := await ready(agent))[0] != status:
                    await asyncio.sleep(0.05)
                seen.append(answer)

            await asyncio.wait_for(poll_ready(503), 5)
            assert seen[-1] == (503, "pushes failing for over 0.3s\n")
            assert await get(agent, "/healthz") == (200, "text/plain", "ok\n")  # alive all along
            receiver.accept()
            await asyncio.wait_for(poll_ready(200), 5)
            assert [e.line for e in receiver.entries] == ["during the outage"]
            s = await scrape(agent)
            retries = s.value("shipper_batch_retries_total")
            assert retries is not None and retries >= 1
            assert s.value("shipper_request_duration_seconds_count", status_code="503") == retries

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))


def test_a_deleted_files_series_disappear(tmp_path: Path) -> None:
    doomed = PodLog(tmp_path, "shop", "gone-5d78c9869d-b2c4d", "app")
    staying = PodLog(tmp_path, "shop", "web-0", "web")
    doomed.lines("last words", 20)
    staying.lines("still here", 5)

    async def scenario(receiver: LokiReceiver) -> Scrape:
        async with running(make_config(tmp_path, receiver.url)) as agent:
            await until(lambda: len(receiver.entries) >= 25, timeout=5)
            before = await scrape_until(agent, lambda s: len(s.series("shipper_file_bytes")) == 2
                                        and len(s.series("shipper_file_acked_bytes")) == 2)
            assert {"path": str(doomed.link)} in before.series("shipper_file_acked_bytes")
            doomed.delete()
            return await scrape_until(agent, lambda s: s.value("shipper_files_active") == 1)

    with LokiReceiver() as receiver:
        s = asyncio.run(scenario(receiver))
    for gauge in ("shipper_file_bytes", "shipper_file_acked_bytes"):
        assert s.series(gauge) == [{"path": str(staying.link)}], gauge


def test_per_file_series_are_read_at_each_scrape_one_per_path() -> None:
    sizes = [("/c/a.log", 100), ("/c/b.log", 7)]
    acked = [("/c/a.log", 900), ("/c/b.log", 7), ("/c/a.log", 40)]  # a's rotated file first
    metrics = Metrics()
    metrics.per_file.read_from(lambda: sizes, lambda: acked)
    s = Scrape(metrics.exposition().decode())
    assert s.value("shipper_file_bytes", path="/c/a.log") == 100
    assert s.value("shipper_file_acked_bytes", path="/c/a.log") == 40  # the successor's
    sizes.pop()
    acked[:] = acked[:1]
    s = Scrape(metrics.exposition().decode())
    assert s.series("shipper_file_bytes") == [{"path": "/c/a.log"}]
    assert s.value("shipper_file_acked_bytes", path="/c/a.log") == 900


def test_own_logs_are_json_lines_per_event_without_secrets(tmp_path: Path) -> None:
    password = "s3cr3t-Pa55word"
    (tmp_path / "password").write_text(password)
    pods = [PodLog(tmp_path, "load", f"writer-{i}", "main") for i in range(2)]
    with LokiReceiver() as receiver:
        raw = config_dict(tmp_path, receiver.url, log={"level": "debug"})
        raw["loki"]["basic_auth"] = {"username": "shipper",
                                     "password_file": str(tmp_path / "password")}
        config_file = tmp_path / "config.yaml"
        config_file.write_text(yaml.safe_dump(raw))
        receiver.fail(503, body=f"upstream said no (Authorization: Basic {password})")
        agent = start_subprocess(config_file)
        try:
            for pod in pods:
                pod.lines(pod.pod, 250)
            deadline = time.monotonic() + 10
            while receiver.requests < 3:  # refused pushes store nothing: wait_for would not wake
                assert time.monotonic() < deadline, "the agent never pushed"
                time.sleep(0.02)
            receiver.accept()
            assert receiver.wait_for(lambda e: len(e) >= 500, timeout=10)
        finally:
            code, err = terminate(agent, signal.SIGTERM)
    assert code == 0, err
    events = [json.loads(line) for line in err.splitlines()]  # every line is one JSON event
    assert all({"ts", "level", "logger", "msg"} <= e.keys() for e in events)
    messages = [e["msg"] for e in events]
    assert "started" in messages and messages[-1] == "stopped"
    assert "push failing, retrying until Loki accepts" in messages
    assert {e["level"] for e in events} >= {"debug", "info", "warning"}  # log.level: debug
    assert len(events) < 50, "one line per event, never one per shipped line"
    assert "s3cr3t" not in err and "Pa55word" not in err
    assert "Basic <redacted>" in err  # Loki's answer is still logged, masked


def test_rotation_keeps_the_live_files_series(tmp_path: Path) -> None:
    pod = PodLog(tmp_path, "shop", "web-0", "web")
    pod.lines("before", 10)

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)) as agent:
            await until(lambda: len(receiver.entries) >= 10, timeout=5)
            pod.rotate()
            pod.lines("after", 10)
            await until(lambda: len(receiver.entries) >= 20, timeout=5)
            # The renamed file is let go after ROTATION_GRACE; the live one's lag must stay.
            await scrape_until(agent, lambda s: s.value("shipper_files_active") == 1)
            await asyncio.sleep(0.3)
            s = await scrape(agent)
            live = {"path": str(pod.link)}
            assert s.value("shipper_file_acked_bytes", **live) == pod.file.stat().st_size

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))


def test_formatter_masks_secret_fields_and_keeps_one_line_per_event() -> None:
    try:
        raise RuntimeError("connect to https://bob:hunter2@loki:3100 failed\nsecond line")
    except RuntimeError as exc:
        record = logging.LogRecord("shipper.test", logging.ERROR, __file__, 1,
                                   "push failed: %s", (exc,), sys.exc_info())
    record.__dict__.update(password="hunter2", bearer_token_file="/var/run/token",
                           headers=["Authorization: Bearer abcdefgh12345678"], attempts=3)
    line = JsonFormatter().format(record)
    assert "\n" not in line and "hunter2" not in line and "abcdefgh12345678" not in line
    event = json.loads(line)
    assert event["password"] == "<redacted>"
    assert event["bearer_token_file"] == "/var/run/token"  # a path is worth logging
    assert event["attempts"] == 3 and event["level"] == "error"
    assert "https://<redacted>@loki:3100" in event["msg"]
    assert "RuntimeError" in event["exception"]
