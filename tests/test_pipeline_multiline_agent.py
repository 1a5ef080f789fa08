"""Multiline through the running agent: traces split across reads, CRI partials and rotation
arrive whole; a crash mid-trace loses nothing; SIGTERM ships an open group."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.support.agent import make_config, running, start_subprocess, terminate, until
from tests.support.faults import saved_positions, write_config
from tests.support.kubelet import PodLog
from tests.support.loki_receiver import LokiReceiver, ReceivedEntry
from tests.support.traces import LOGS, recorded

SPLIT = 40  # physical lines longer than this are written as CRI partials of 30 characters


def write_entry(pod: PodLog, entry: str) -> None:
    """An entry's lines as a runtime writes them: one CRI line each, long ones in parts."""
    for line in entry.split("\n"):
        if len(line) > SPLIT:
            pod.partial([line[i:i + 30] for i in range(0, len(line), 30)])
        else:
            pod.line(line)


def multiline(preset: str, max_wait: str = "500ms") -> list[dict[str, object]]:
    return [{"match": {"container": "app"},
             "stages": [{"multiline": {"preset": preset, "max_wait": max_wait}}]}]


def in_order(entries: list[ReceivedEntry]) -> list[str]:
    return [e.line for e in sorted(entries, key=lambda e: e.timestamp_ns)]


@pytest.mark.parametrize(("preset", "docker"), [(p, False) for p in LOGS] + [("python", True)])
def test_traces_arrive_whole_across_reads_partials_and_rotation(
        tmp_path: Path, preset: str, docker: bool) -> None:
    entries = LOGS[preset]()
    half = len(entries) // 2
    pod = PodLog(tmp_path, "shop", "api-0", "app", docker=docker)

    async def scenario(receiver: LokiReceiver) -> None:
        config = make_config(tmp_path, receiver.url, multiline(preset),
                             inputs={"read_chunk_bytes": "256B"})
        async with running(config):
            for entry in entries[:half]:
                write_entry(pod, entry)
            await until(lambda: len(receiver.entries) >= half - 1)
            pod.rotate()  # the old file's open group goes out when the file is drained
            for entry in entries[half:]:
                write_entry(pod, entry)
            await until(lambda: len(receiver.entries) >= len(entries))
            await asyncio.sleep(0.7)  # nothing more arrives: no entry was cut in two

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        received = receiver.entries
    assert in_order(received) == list(entries)


JAVA_TRACE = recorded("java_uncaught_worker.log")


def test_a_crash_mid_trace_loses_nothing_and_the_trace_arrives_whole(tmp_path: Path) -> None:
    pod = PodLog(tmp_path, "shop", "api-0", "app")
    lines = JAVA_TRACE.split("\n")
    with LokiReceiver() as receiver:
        config = write_config(tmp_path, receiver.url, pipeline=multiline("java", "1h"))
        agent = start_subprocess(config)
        try:
            pod.lines("before", 20)
            assert receiver.wait_for(lambda e: len(e) >= 20, timeout=15)
            for line in lines[: len(lines) // 2]:
                pod.line(line)
            time.sleep(1.0)  # read, held in the open group; positions written meanwhile
            saved = saved_positions(tmp_path / "positions.json")
            assert all(offset < pod.file.stat().st_size for offset in saved.values())
        finally:
            agent.send_signal(signal.SIGKILL)
            agent.communicate(timeout=10)
        for line in lines[len(lines) // 2:]:
            pod.line(line)
        pod.line("after")
        agent = start_subprocess(config)
        try:
            assert receiver.wait_for(lambda e: any(x.line == "after" for x in e), timeout=15)
        finally:
            assert terminate(agent)[0] == 0
        received = [e.line for e in receiver.entries]
    assert received.count(JAVA_TRACE) == 1
    assert not [line for line in received if line != JAVA_TRACE and line in JAVA_TRACE]
    assert {f"before {i:07d}" for i in range(20)} <= set(received)


def test_sigterm_ships_an_open_group_and_commits_it(tmp_path: Path) -> None:
    pod = PodLog(tmp_path, "shop", "api-0", "app")
    with LokiReceiver() as receiver:
        config = write_config(tmp_path, receiver.url, pipeline=multiline("java", "1h"))
        agent = start_subprocess(config)
        try:
            pod.line("ready")
            assert receiver.wait_for(lambda e: len(e) >= 1, timeout=15)
            write_entry(pod, JAVA_TRACE.rsplit("\n", 1)[0])  # not ended: the group stays open
            time.sleep(1.0)
            assert len(receiver.entries) == 1
        finally:
            code, _ = terminate(agent)
        assert code == 0
        assert [e.line for e in receiver.entries][1:] == [JAVA_TRACE.rsplit("\n", 1)[0]]
        saved = saved_positions(tmp_path / "positions.json")
        assert list(saved.values()) == [pod.file.stat().st_size]  # not sent again at restart
