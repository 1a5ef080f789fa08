"""Faults: kubelet rotates (and compresses) files while the agent is behind, or while it is down."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from shipper.agent import Agent
from tests.support.agent import make_config, running, until
from tests.support.faults import assert_none_missing, assert_stream_order
from tests.support.kubelet import PodLog
from tests.support.loki_receiver import LokiReceiver

BEHIND = {"inputs": {"read_chunk_bytes": "16KiB"},
          "batch": {"max_bytes": "64KiB", "max_pending_bytes": "256KiB"}}


def _open_files(agent: Agent) -> float:
    return agent.metrics.registry.get_sample_value("shipper_files_active") or 0.0


def test_rotations_while_loki_is_down_lose_no_generation(tmp_path: Path) -> None:
    pod = PodLog(tmp_path, "rot", "app-0", "app")

    async def scenario(receiver: LokiReceiver) -> None:
        receiver.refuse()
        async with running(make_config(tmp_path, receiver.url, **BEHIND)) as agent:
            for generation in range(4):
                pod.lines(f"gen{generation}", 8000)  # ~0.4 MiB: reading is held at the bound
                await until(lambda g=generation: _open_files(agent) == g + 1)  # successor open
                pod.rotate()
                pod.compress_rotated()  # older generations now exist only as .gz
            pod.lines("current", 100)
            await until(lambda: _open_files(agent) == 5)
            assert any(p.suffix == ".gz" for p in pod.rotated())
            receiver.start()
            await until(lambda: len({e.line for e in receiver.entries}) >= len(pod.written),
                        timeout=20)
            await until(lambda: _open_files(agent) == 1)  # drained generations are closed

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        entries = receiver.entries
    assert_none_missing(entries, pod.written, "rotations while down")
    assert_stream_order(entries)


@pytest.mark.parametrize("rotations", [1, 2])
def test_generations_rotated_while_the_agent_was_down_are_finished_first(
        tmp_path: Path, rotations: int) -> None:
    pod = PodLog(tmp_path, "rot", "app-0", "app")

    async def scenario(receiver: LokiReceiver) -> None:
        config = make_config(tmp_path, receiver.url)
        async with running(config):
            pod.lines("seen", 500)
            await until(lambda: len(receiver.entries) >= 500)
        for generation in range(rotations):  # the agent is down
            pod.lines(f"unread{generation}", 300)
            pod.rotate()  # kubelet keeps the newest rotated generation uncompressed
        pod.lines("current", 300)
        async with running(config):
            await until(lambda: len(receiver.entries) >= len(pod.written))
            await asyncio.sleep(0.3)  # a duplicate would arrive now

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        entries = receiver.entries
    assert assert_none_missing(entries, pod.written, f"{rotations} rotations while down") == 0
    order = [e.line.split()[0] for e in entries]
    generations = ["seen", *(f"unread{g}" for g in range(rotations)), "current"]
    assert order == sorted(order, key=generations.index), "a successor was read before its turn"


def test_rotated_files_over_the_bound_are_counted_and_named(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pod = PodLog(tmp_path, "rot", "app-0", "app")

    async def scenario(receiver: LokiReceiver) -> None:
        receiver.refuse()
        config = make_config(tmp_path, receiver.url, inputs={
            "read_chunk_bytes": "16KiB", "max_rotated_files": 1}, batch=BEHIND["batch"])
        async with running(config) as agent:
            for generation in range(3):  # max 1 rotated open: the two oldest are given up
                pod.lines(f"gen{generation}", 8000)
                await until(lambda g=generation: _open_files(agent) >= min(g + 1, 2))
                pod.rotate()
            pod.lines("current", 100)
            abandoned = "shipper_rotated_files_abandoned_total"
            await until(lambda: agent.metrics.registry.get_sample_value(abandoned) == 2)
            receiver.start()
            await until(lambda: any(e.line.startswith("current") for e in receiver.entries))

    with LokiReceiver() as receiver, caplog.at_level(logging.ERROR):
        asyncio.run(scenario(receiver))
    given_up = [r for r in caplog.records if "giving up" in r.getMessage()]
    # Named by the names they have now, not the path their successors took.
    assert [r.path for r in given_up] == [  # type: ignore[attr-defined]
        str(pod.file.with_name(f"0.log.20261127-09000{g}")) for g in (1, 2)]
    # Their descriptors were closed under a tailer waiting to read them: it must not read a
    # reused descriptor, nor fail.
    assert not [r for r in caplog.records if "tailer failed" in r.getMessage()]
