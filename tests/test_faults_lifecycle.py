"""Faults: SIGTERM while Loki is slow or while starting, and a positions directory that
cannot be written or a disk that takes seconds to write it."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipper import early_stop
from shipper.agent import Agent
from shipper.model import FileId
from tests.support.agent import make_config, running, start_subprocess, terminate, until
from tests.support.faults import (
    assert_none_missing,
    beyond_saved,
    get,
    line_ends,
    saved_positions,
    write_config,
)
from tests.support.kubelet import PodLog
from tests.support.loki_receiver import LokiReceiver

STALL = 0.4  # s per push: Loki is slow
DEADLINE = 1.0  # s: shutdown.deadline, shorter than the backlog takes to deliver


def test_sigterm_under_load_saves_exactly_what_was_acknowledged(tmp_path: Path) -> None:
    pods = [PodLog(tmp_path, "stop", f"app-{i}", f"c{i}") for i in range(2)]
    for pod in pods:
        pod.lines(pod.container, 5000)
    expected = [m for p in pods for m in p.written]
    positions = tmp_path / "positions.json"
    with LokiReceiver() as receiver:
        config = write_config(tmp_path, receiver.url, inputs={"read_chunk_bytes": "16KiB"},
                              batch={"max_bytes": "64KiB"},
                              shutdown={"deadline": f"{DEADLINE}s"})
        receiver.stall(STALL)
        agent = start_subprocess(config)
        try:
            assert receiver.wait_for(lambda e: len(e) > 1000, timeout=15)
        finally:
            stopping = time.monotonic()
            code, err = terminate(agent)
            stopped_in = time.monotonic() - stopping
        assert code == 0, err
        assert "shutdown deadline reached" in err  # the backlog was bigger than the deadline
        time.sleep(STALL + 0.2)  # the push cut off at the deadline is stored all the same
        before = [e.line for e in receiver.entries]
        ends = line_ends(p.file for p in pods)
        saved = saved_positions(positions)
        # Everything the positions cover was delivered: nothing acknowledged-but-unsaved is
        # skipped, and nothing unacknowledged is recorded as done.
        covered = [m for m in expected if ends[m][1] <= saved.get(ends[m][0], 0)]
        assert covered and set(covered) <= set(before)
        in_flight = beyond_saved(before, ends, saved)
        receiver.accept()
        agent = start_subprocess(config)
        try:
            assert receiver.wait_for(lambda e: len({x.line for x in e}) >= len(expected), 20)
            time.sleep(0.3)
        finally:
            code, err = terminate(agent)
        assert code == 0, err
    duplicates = assert_none_missing(receiver.entries, expected, "sigterm under load")
    print(f"  stopped in {stopped_in:.2f}s (deadline {DEADLINE}s); in flight at the deadline: "
          f"{in_flight}")
    assert duplicates == in_flight
    assert stopped_in < DEADLINE + 3  # the deadline bounds the stop (generous: CI is slow)


# The interpreter alone takes 25-50 ms here (its start and site, before any line of shipper
# runs): a signal then finds no handler, whatever the agent does. 0.1 s is the earliest moment
# that is after it even on a busy machine, and before the agent's loop handles the signal.
@pytest.mark.parametrize("delay", [0.1, 0.2, 0.5])
def test_sigterm_in_the_first_second_exits_promptly_with_0(tmp_path: Path, delay: float) -> None:
    pod = PodLog(tmp_path, "early", "app-0", "app")
    pod.lines("line", 1000)
    with LokiReceiver() as receiver:
        config = write_config(tmp_path, receiver.url)
        spawned = time.monotonic()
        agent = start_subprocess(config)
        time.sleep(max(0.0, spawned + delay - time.monotonic()))
        signalled = time.monotonic()
        code, err = terminate(agent)
        took = time.monotonic() - signalled
    print(f"SIGTERM {signalled - spawned:.3f}s after spawn: exit {code} in {took:.2f}s")
    assert code == 0, err
    assert took < 3


def test_unwritable_positions_keep_shipping_report_not_ready_and_recover(
        tmp_path: Path) -> None:
    pod = PodLog(tmp_path, "disk", "app-0", "app")
    directory = tmp_path / "state"
    positions = directory / "positions.json"

    async def ready(port: int) -> tuple[int, str]:
        return await asyncio.to_thread(get, port, "/ready")

    async def scenario(receiver: LokiReceiver) -> None:
        config = make_config(tmp_path, receiver.url, positions={"path": str(positions)})
        async with running(config) as agent:
            port = agent.server.port
            assert port is not None
            pod.lines("before", 100)
            await until(lambda: len(receiver.entries) >= 100)
            await until(lambda: positions.exists())
            assert (await ready(port))[0] == 200
            # The directory goes away and a regular file takes its name: as root, the one
            # sure way to make a write fail (permission bits do not stop root).
            directory.rename(tmp_path / "state.saved")
            directory.write_text("not a directory")
            pod.lines("during", 100)
            await until(lambda: len(receiver.entries) >= 200)  # shipping goes on
            await until(lambda: agent.positions.write_error is not None)
            status, why = await ready(port)
            assert status == 503 and "positions not writable" in why, why
            errors = agent.metrics.registry.get_sample_value(
                "shipper_positions_write_errors_total")
            await until(lambda: agent.metrics.registry.get_sample_value(
                "shipper_positions_write_errors_total") != errors)  # retried, still failing
            directory.unlink()
            (tmp_path / "state.saved").rename(directory)
            await until(lambda: agent.positions.write_error is None)
            assert (await ready(port))[0] == 200
            pod.lines("after", 100)
            await until(lambda: len(receiver.entries) >= 300)

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        entries = receiver.entries
    assert assert_none_missing(entries, pod.written, "positions unwritable") == 0
    st = pod.file.stat()
    assert saved_positions(positions) == {line_ends([pod.file])["after 0000099"][0]: st.st_size}


SLOW_DISK = 5.0  # s the first fsync of the positions file takes: several read ticks


@dataclass
class _Stall:
    """What was true while the disk held the positions write."""

    saving: dict[FileId, int]  # the offsets being written
    received: set[str]  # the lines Loki had when the write began
    requests_before: int
    requests_after: int = -1


def test_a_slow_positions_write_stalls_no_shipping_and_saves_only_acknowledged_offsets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pod = PodLog(tmp_path, "disk", "app-0", "app")
    positions = tmp_path / "positions.json"
    temp = positions.with_name("positions.json.tmp")
    stalls: list[_Stall] = []
    fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        if not stalls and os.readlink(f"/proc/self/fd/{fd}") == str(temp):
            stall = _Stall(saved_positions(temp), {e.line for e in receiver.entries},
                           receiver.requests)
            stalls.append(stall)
            time.sleep(SLOW_DISK)
            stall.requests_after = receiver.requests
        fsync(fd)

    writing = threading.Event()

    def kubelet() -> None:  # writes on, whatever the agent's loop is doing
        batch = 0
        while writing.is_set():
            pod.lines(f"b{batch:03d}", 20)
            batch += 1
            time.sleep(0.05)

    async def scenario() -> None:
        async with running(make_config(tmp_path, receiver.url)):
            writing.set()
            writer = threading.Thread(target=kubelet)
            writer.start()
            try:
                await until(lambda: bool(stalls) and stalls[0].requests_after >= 0,
                            timeout=SLOW_DISK + 10)
            finally:
                writing.clear()
                await asyncio.to_thread(writer.join)
            await until(lambda: len(receiver.entries) >= len(pod.written))

    monkeypatch.setattr(os, "fsync", slow_fsync)
    with LokiReceiver() as receiver:
        asyncio.run(scenario())
        entries = receiver.entries
    stall = stalls[0]
    pushed = stall.requests_after - stall.requests_before
    assert pushed >= 3, f"{pushed} pushes while the disk held the write for {SLOW_DISK}s"
    ends = line_ends([pod.file])
    assert stall.saving
    covered = {m for m, (file, end) in ends.items() if end <= stall.saving.get(file, 0)}
    assert covered <= stall.received  # only acknowledged lines are saved as done
    assert assert_none_missing(entries, pod.written, "slow positions disk") == 0
    # The final save at shutdown happened, after the slow one: everything is covered.
    assert saved_positions(positions) == {ends[pod.written[-1]][0]: pod.file.stat().st_size}


def test_a_sigterm_whose_exit_was_lost_during_start_up_stops_the_agent_once_it_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The early handler's SystemExit can be swallowed (raised inside a callback Python ignores
    exceptions of): the agent must still stop, at once and cleanly, not run on until a second
    SIGTERM that never comes."""
    pod = PodLog(tmp_path, "stop", "app-0", "app")
    pod.line("read, or not: either way the agent stops")
    monkeypatch.setattr(early_stop, "requested", True)

    async def scenario(receiver: LokiReceiver) -> None:
        agent = Agent(make_config(tmp_path, receiver.url))
        await asyncio.wait_for(agent.run(), timeout=10)  # no stop event: the signals' one

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
