"""Faults: SIGKILL of the agent process at several points, and unusable positions files."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.agent import make_config, running, start_subprocess, terminate, until
from tests.support.faults import (
    assert_none_missing,
    beyond_saved,
    line_ends,
    saved_positions,
    write_config,
)
from tests.support.kubelet import PodLog
from tests.support.loki_receiver import LokiReceiver

STALL = 1.0  # s the receiver holds a request in the mid-push scenario

Kill = Callable[[LokiReceiver, subprocess.Popen[bytes], int, Path], None]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def _kill_mid_read(receiver: LokiReceiver, proc: subprocess.Popen[bytes], total: int,
                   positions: Path) -> None:
    assert receiver.wait_for(lambda e: len(e) >= total // 3, timeout=15)
    _kill(proc)
    assert len(receiver.entries) < total, "the agent finished before the kill: not mid-read"


def _kill_mid_push(receiver: LokiReceiver, proc: subprocess.Popen[bytes], total: int,
                   positions: Path) -> None:
    assert receiver.wait_for(lambda e: len(e) >= total // 10, timeout=15)
    receiver.stall(STALL)
    before = receiver.requests
    deadline = time.monotonic() + 5
    while receiver.requests == before:  # a request is now held by the receiver
        assert time.monotonic() < deadline, "no push arrived while stalling"
        time.sleep(0.005)
    _kill(proc)
    time.sleep(STALL + 0.2)  # the receiver stores the held batch anyway, as Loki would


def _kill_after_positions_write(receiver: LokiReceiver, proc: subprocess.Popen[bytes],
                                total: int, positions: Path) -> None:
    receiver.stall(0.02)  # slow enough that several positions writes happen mid-stream
    assert receiver.wait_for(lambda e: len(e) >= total // 10, timeout=15)
    first = os.stat(positions).st_ino
    deadline = time.monotonic() + 5
    while os.stat(positions).st_ino == first:  # each write renames a new file into place
        assert time.monotonic() < deadline, "positions were not written again"
        time.sleep(0.001)
    _kill(proc)
    time.sleep(0.2)  # a request held (0.02 s) at the kill is stored anyway, as Loki would
    assert len(receiver.entries) < total, "the agent finished before the kill"


@pytest.mark.parametrize("kill", [_kill_mid_read, _kill_mid_push, _kill_after_positions_write],
                         ids=["mid-read", "mid-push", "after-positions-write"])
def test_sigkill_then_restart_loses_nothing(tmp_path: Path, kill: Kill) -> None:
    pods = [PodLog(tmp_path, "crash", f"writer-{i}", f"c{i}") for i in range(2)]
    for pod in pods:
        pod.lines(pod.container, 6_000)
    expected = [m for p in pods for m in p.written]
    positions = tmp_path / "positions.json"
    with LokiReceiver() as receiver:
        config = write_config(tmp_path, receiver.url,
                              inputs={"read_chunk_bytes": "32KiB"},
                              batch={"max_bytes": "32KiB", "max_pending_bytes": "256KiB"})
        agent = start_subprocess(config)
        try:
            kill(receiver, agent, len(expected), positions)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.communicate()
        before = receiver.entries
        allowed = beyond_saved([e.line for e in before],
                               line_ends(p.file for p in pods), saved_positions(positions))
        receiver.accept()
        agent = start_subprocess(config)
        try:
            assert receiver.wait_for(lambda e: len({x.line for x in e}) >= len(expected), 20)
            time.sleep(0.3)  # a late duplicate would arrive now
        finally:
            code, err = terminate(agent)
        assert code == 0, err
    duplicates = assert_none_missing(receiver.entries, expected, f"crash {kill.__name__}")
    print(f"  delivered before the kill={len(before)}, allowed duplicates={allowed}")
    assert duplicates <= allowed


@pytest.mark.parametrize("content", [
    b'{"version": 1, "files": [{"dev": 1',  # torn: cannot happen with rename, but disks lie
    b"\x00\x00\x00\x00",
    b'{"version": 99, "files": "a future format"}',
], ids=["truncated-json", "garbage", "future-version"])
def test_unusable_positions_are_moved_aside_and_files_read_from_start(
        tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture) -> None:
    pod = PodLog(tmp_path, "pos", "app-0", "app")
    pod.lines("before", 500)
    positions = tmp_path / "positions.json"
    positions.write_bytes(content)

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)):
            await until(lambda: len(receiver.entries) >= 500)
            pod.lines("after", 100)
            await until(lambda: len(receiver.entries) >= 600)

    with LokiReceiver() as receiver, caplog.at_level(logging.ERROR):
        asyncio.run(scenario(receiver))
    assert assert_none_missing(receiver.entries, pod.written, "positions unusable") == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("positions.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == content  # kept for a human to look at
    report = [r for r in caplog.records if r.getMessage().startswith("positions file unusable")]
    assert len(report) == 1
    assert report[0].moved_to == str(aside[0]) and report[0].error  # type: ignore[attr-defined]
    assert json.loads(positions.read_text())["version"] == 1  # written afresh


def test_future_version_is_not_trusted_even_if_it_parses(tmp_path: Path) -> None:
    """A newer format could mean anything: its offsets must not skip unread lines."""
    pod = PodLog(tmp_path, "pos", "app-0", "app")
    pod.lines("line", 300)
    st = os.stat(pod.file)
    (tmp_path / "positions.json").write_text(json.dumps({"version": 2, "files": [
        {"dev": st.st_dev, "ino": st.st_ino, "path": str(pod.file), "offset": st.st_size}]}))

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)):
            await until(lambda: len(receiver.entries) >= 300)

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
    assert assert_none_missing(receiver.entries, pod.written, "positions future version") == 0
