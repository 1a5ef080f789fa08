"""Faults: many files at once, pods churning, and a file the agent may not read."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from shipper.agent import Agent
from tests.support.agent import make_config, running, start_subprocess, terminate, until
from tests.support.faults import (
    NOBODY,
    assert_none_missing,
    free_port,
    scrape,
    unprivileged_prefix,
    write_config,
)
from tests.support.kubelet import PodLog
from tests.support.loki_receiver import LokiReceiver


def _open_files(agent: Agent) -> float:
    return agent.metrics.registry.get_sample_value("shipper_files_active") or 0.0


def test_500_files_at_once(tmp_path: Path) -> None:
    pods = [PodLog(tmp_path, "many", f"pod-{i:03d}", "c") for i in range(500)]
    for pod in pods:
        pod.lines(pod.pod, 4)

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)) as agent:
            await until(lambda: len(receiver.entries) >= 2000)
            assert _open_files(agent) == 500
            for pod in pods:
                pod.lines(pod.pod + "-more", 2)
            await until(lambda: len(receiver.entries) >= 3000)
            await asyncio.sleep(0.3)

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        entries = receiver.entries
    assert assert_none_missing(entries, [m for p in pods for m in p.written], "500 files") == 0


def test_churning_pods_each_read_to_the_end_and_no_descriptor_leaks(tmp_path: Path) -> None:
    """A pod every 100 ms; each writes, is deleted with lines still unread, and is drained."""
    written: list[str] = []

    async def scenario(receiver: LokiReceiver) -> None:
        async with running(make_config(tmp_path, receiver.url)) as agent:
            alive: list[PodLog] = []
            for i in range(30):
                pod = PodLog(tmp_path, "churn", f"job-{i:02d}", "c", uid=f"uid-{i}")
                pod.lines(f"{pod.pod}", 50)
                alive.append(pod)
                if len(alive) > 5:
                    old = alive.pop(0)
                    # Deletion is only survivable once the agent holds the file open (not
                    # promised otherwise: README, delivery guarantees).
                    real = os.path.realpath(old.file)
                    await until(lambda real=real: real in agent.tailers)
                    old.lines(f"{old.pod}-last-words", 20)
                    old.delete()
                    written.extend(old.written)
                await asyncio.sleep(0.1)
            for pod in alive:
                written.extend(pod.written)
            with contextlib.suppress(AssertionError):  # the audit below names what is missing
                await until(lambda: len(receiver.entries) >= len(written))
            for pod in alive:
                pod.delete()
            await until(lambda: _open_files(agent) == 0)
            await until(lambda: not agent.tailers)

    with LokiReceiver() as receiver:
        asyncio.run(scenario(receiver))
        entries = receiver.entries
    assert assert_none_missing(entries, written, "churn") == 0
    assert not _open_under(tmp_path)  # no log file descriptor outlived its file


def _open_under(root: Path) -> list[str]:
    """This process's descriptors open on files under root (sockets and pipes left aside:
    receiver and inotify threads close theirs on their own schedule)."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(root)):
                targets.append(target)
    return targets


def test_unreadable_file_is_logged_once_counted_and_others_ship(shared_root: Path) -> None:
    prefix, agent_uid = unprivileged_prefix()
    readable = [PodLog(shared_root, "perm", f"ok-{i}", "c") for i in range(3)]
    locked = PodLog(shared_root, "perm", "secret-0", "c")
    for pod in (*readable, locked):
        pod.lines(pod.pod, 100)
    os.chown(locked.file, NOBODY if agent_uid == 0 else 0, -1)
    locked.file.chmod(0o600)
    os.chown(shared_root, agent_uid, -1)  # for positions.json
    port = free_port()
    with LokiReceiver() as receiver:
        config = write_config(shared_root, receiver.url, port)
        agent = start_subprocess(config, prefix=prefix)
        try:
            assert receiver.wait_for(lambda e: len(e) >= 300, timeout=15)
            for pod in readable:
                pod.lines(pod.pod + "-later", 100)
            assert receiver.wait_for(lambda e: len(e) >= 600, timeout=15)
            time.sleep(1.2)  # more than two rescans (500ms): each retries the file quietly
            errors = scrape(port)['shipper_file_errors_total{reason="permission_denied"}']
        finally:
            code, err = terminate(agent)
        assert code == 0, err
        entries = receiver.entries
    assert errors == 1
    complaints = [line for line in err.splitlines() if "cannot open file" in line]
    assert len(complaints) == 1 and os.fspath(locked.link) in complaints[0]
    assert_none_missing(entries, [m for p in readable for m in p.written], "unreadable file")
