"""End to end: real files in, real HTTP to a Loki-protocol receiver out."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import shipper.notify
from shipper.agent import READ_TICK
from shipper.model import FileId
from shipper.positions import Positions
from shipper.tail import Tailer
from tests.support.agent import (
    config_dict,
    make_config,
    running,
    start_subprocess,
    terminate,
    until,
)
from tests.support.kubelet import PodLog
from tests.support.loki_receiver import LokiReceiver, ReceivedEntry


def lines_of(entries: list[ReceivedEntry]) -> list[str]:
    return [e.line for e in entries]


def assert_exactly_once(entries: list[ReceivedEntry], expected: list[str]) -> None:
    counts = collections.Counter(lines_of(entries))
    missing = [line for line in expected if counts[line] == 0]
    repeated = {line: n for line, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} lines missing, e.g. {missing[:3]}"
    assert not repeated, f"lines repeated: {list(repeated.items())[:3]}"
    assert sorted(counts) == sorted(expected)


def test_cri_and_docker_lines_arrive_once_with_labels_metadata_and_timestamps(
        tmp_path: Path) -> None:
    api = PodLog(tmp_path, "shop", "api-7d9f8b6c5d-x7k2p", "api")
    legacy = PodLog(tmp_path, "ops", "legacy-0", "agent", docker=True)
    ts_first = api.line("hello from api")
    api.line("oops", stream="stderr")
    ts_joined = api.partial(["part one, ", "part two, ", "the end"])
    api.line("")  # an empty message is still a line
    api.line("café ✓ 日本語")
    legacy.line("docker says hi")
    legacy.partial(["split by docker ", "at 16k"], stream="stderr")

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)):
            await until(lambda: len(receiver.entries) >= 7)
            api.lines("later", 50)
            await until(lambda: len(receiver.entries) >= 57)

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        entries = receiver.entries
    assert_exactly_once(entries, api.written + legacy.written)
    by_line = {e.line: e for e in entries}
    first = by_line["hello from api"]
    assert first.labels == {"namespace": "shop", "container": "api", "app": "api"}
    assert first.metadata == {"pod": "api-7d9f8b6c5d-x7k2p", "node": "node-1", "stream": "stdout"}
    assert first.timestamp_ns == ts_first  # the line's own timestamp, to the nanosecond
    assert by_line["oops"].metadata["stream"] == "stderr"
    assert by_line["part one, part two, the end"].timestamp_ns == ts_joined
    docker = by_line["split by docker at 16k"]
    assert docker.labels == {"namespace": "ops", "container": "agent", "app": "legacy"}
    assert docker.metadata["stream"] == "stderr"


def test_rotation_truncation_and_deletion_while_running(tmp_path: Path) -> None:
    rotating = PodLog(tmp_path, "shop", "web-0", "web")
    truncated = PodLog(tmp_path, "shop", "cron-28391234-x7k2p", "job")
    doomed = PodLog(tmp_path, "shop", "gone-5d78c9869d-b2c4d", "app")

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)):
            rotating.lines("gen0", 300)
            truncated.lines("before-truncate", 10)
            doomed.lines("doomed", 20)
            await until(lambda: len(receiver.entries) >= 330)
            # Several rotations in a row, each renamed file getting lines after the rename too
            # (the runtime writes to its old descriptor until it reopens).
            for generation in range(1, 4):
                rotating.lines(f"gen{generation - 1}-tail", 5)
                rotated = rotating.rotate()
                with open(rotated, "a") as old:
                    old.write(f"2026-11-27T09:00:00.{generation:09d}Z stdout F late-{generation}\n")
                rotating.written.append(f"late-{generation}")
                rotating.lines(f"gen{generation}", 100)
            truncated.truncate()
            truncated.lines("after-truncate", 10)
            doomed.lines("last-words", 5)
            doomed.delete()
            expected = len(rotating.written) + len(truncated.written) + len(doomed.written)
            with contextlib.suppress(AssertionError):  # the check below says what is missing
                await until(lambda: len(receiver.entries) >= expected)
            await asyncio.sleep(0.5)  # anything extra (a duplicate) would show up by now

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        entries = receiver.entries
    assert_exactly_once(entries, rotating.written + truncated.written + doomed.written)


def test_restart_after_sigterm_neither_loses_nor_repeats(tmp_path: Path) -> None:
    pods = [PodLog(tmp_path, "load", f"writer-{i}", "main") for i in range(3)]
    with LokiReceiver() as receiver:
        config_file = tmp_path / "config.yaml"
        config_file.write_text(yaml.safe_dump(config_dict(tmp_path, receiver.url)))
        agent = start_subprocess(config_file)
        try:
            for round_ in range(5):
                for pod in pods:
                    pod.lines(f"{pod.pod}-r{round_}", 200)
                time.sleep(0.05)
            assert receiver.wait_for(lambda e: len(e) >= 400, timeout=15)
        finally:
            code, err = terminate(agent, signal.SIGTERM)
        assert code == 0, err
        assert '"msg": "stopped"' in err
        for pod in pods:
            pod.lines(f"{pod.pod}-while-down", 100)
        agent = start_subprocess(config_file)
        try:
            total = sum(len(p.written) for p in pods)
            assert receiver.wait_for(lambda e: len(e) >= total, timeout=20)
            time.sleep(0.5)
        finally:
            code, err = terminate(agent, signal.SIGTERM)
        assert code == 0, err
        assert_exactly_once(receiver.entries, [m for p in pods for m in p.written])


def test_a_new_file_with_a_gone_files_inode_number_is_read_from_its_start(
        tmp_path: Path) -> None:
    """ext4 soon hands a freed inode number to a new file (a restarted container's 1.log beside
    a deleted 0.log), while the gone file's position may still be tracked, waiting for its last
    batch to be acknowledged. The new file must start at 0, not at the gone file's offset."""
    staging = tmp_path / "staging"  # written here, linked where the agent looks only later
    pod = PodLog(staging, "shop", "api-0", "api")
    pod.lines("new", 200)
    link = tmp_path / pod.link.relative_to(staging)
    link.parent.mkdir(parents=True)

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)) as agent:
            st = pod.file.stat()
            # What a gone file with this inode number leaves behind, its offset well inside.
            agent.positions.open(FileId(st.st_dev, st.st_ino), "/gone/0.log", st.st_size // 2)
            os.symlink(pod.file, link)
            await until(lambda: len(receiver.entries) >= 200, timeout=5)

    with LokiReceiver() as receiver:
        with contextlib.suppress(AssertionError):  # the check below says what is missing
            asyncio.run(scenario(receiver))
        entries = receiver.entries
    assert_exactly_once(entries, pod.written)


def test_a_new_file_is_picked_up_by_inotify_within_a_second(tmp_path: Path) -> None:
    """The rescan is set to a minute here, so only inotify can explain a prompt pick-up."""
    async def scenario(receiver: LokiReceiver) -> float:
        config = make_config(tmp_path, receiver.url, inputs={"rescan_interval": "60s"},
                             batch={"size": 1, "timeout": "10s"})
        async with running(config):
            await asyncio.sleep(0.3)  # started; the first scan found nothing
            created = time.monotonic()
            pod = PodLog(tmp_path, "shop", "fresh-0", "app")
            pod.line("hello")
            await until(lambda: len(receiver.entries) == 1, timeout=5)
            return time.monotonic() - created

    with LokiReceiver() as receiver:
        took = asyncio.run(scenario(receiver))
    assert took < 1.5, f"picked up after {took:.2f}s"  # 1 s to notice, plus one push


def test_an_idle_file_is_read_at_its_next_write_and_a_busy_one_per_tick(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rescan is set to a minute here: only the file's own inotify watch explains a prompt
    read. Written one write() per line, it is read once per tick, not once per write."""
    pod = PodLog(tmp_path, "shop", "app-0", "app")
    pod.line("before")
    reads: list[int] = []
    read_chunk = Tailer._read_chunk

    def counted(self: Tailer, *args: Any) -> bool:
        reads.append(1)
        return read_chunk(self, *args)

    monkeypatch.setattr(Tailer, "_read_chunk", counted)

    async def scenario(receiver: LokiReceiver) -> tuple[float, float]:
        config = make_config(tmp_path, receiver.url, inputs={"rescan_interval": "60s"},
                             batch={"size": 1, "timeout": "10s"})
        async with running(config):
            await until(lambda: len(receiver.entries) == 1)
            await asyncio.sleep(0.3)  # idle since: its next write is watched
            written = time.monotonic()
            pod.line("after a pause")
            await until(lambda: len(receiver.entries) == 2, timeout=5)
            took = time.monotonic() - written
            reads.clear()
            started = time.monotonic()
            for n in range(400):  # ~2 s of single-line writes
                pod.line(f"busy {n}")
                await asyncio.sleep(0.005)
            await until(lambda: len(receiver.entries) == 402)
            return took, time.monotonic() - started

    with LokiReceiver() as receiver:
        took, busy = asyncio.run(scenario(receiver))
        entries = receiver.entries
    assert_exactly_once(entries, pod.written)
    assert took < READ_TICK + 0.5, f"read {took:.2f}s after the write"  # a tick, and a push
    ticks = busy / READ_TICK + 1
    assert len(reads) <= 2 * ticks + 2, f"{len(reads)} reads for 400 writes in {busy:.1f} s"


def test_idle_files_wake_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twenty files read to their end: no pass over any of them (a poll each was 20 wake-ups a
    second at 200 files), and no positions write, through two rescans."""
    pods = [PodLog(tmp_path, "idle", f"app-{n}", "app") for n in range(20)]
    for pod in pods:
        pod.line("the only line")
    passes: list[str] = []
    drain, save = Tailer._drain, Positions.save

    async def counted_drain(self: Tailer) -> bool:
        passes.append(self.path)
        return await drain(self)

    async def counted_save(self: Positions) -> bool:
        passes.append("positions")
        return await save(self)

    monkeypatch.setattr(Tailer, "_drain", counted_drain)
    monkeypatch.setattr(Positions, "save", counted_save)

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)):
            await until(lambda: len(receiver.entries) == 20)
            # The last passes (a tick after the read that found lines) and positions write.
            await asyncio.sleep(READ_TICK + 0.5)
            passes.clear()
            await asyncio.sleep(1.2)  # more than two rescans (500 ms)
            assert passes == []

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))


def test_without_inotify_the_rescans_find_and_read_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def no_more_instances(**_: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(shipper.notify, "INotify", no_more_instances)
    old = PodLog(tmp_path, "shop", "old-0", "app")
    old.line("first")

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)):  # a rescan every 500 ms
            await until(lambda: len(receiver.entries) == 1)
            old.line("second")
            new = PodLog(tmp_path, "shop", "new-0", "app")
            new.line("third")
            old.rotate()
            old.line("fourth")
            await until(lambda: len(receiver.entries) == 4, timeout=5)

    with LokiReceiver() as receiver, caplog.at_level(logging.WARNING):
        asyncio.run(scenario(receiver))
        entries = receiver.entries
    assert sorted(lines_of(entries)) == ["first", "fourth", "second", "third"]
    assert [r.getMessage() for r in caplog.records if r.name == "shipper.notify"] == [
        "inotify unavailable (fs.inotify.max_user_instances reached)"]
