"""Faults: many files at once, pods churning, and a file the agent may not read."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from shipper.agent import Agent
from tests.support.agent import make_config, running, start_subprocess, terminate, until
from tests.support.faults import (
    NOBODY,
    assert_none_missing,
    free_port,
    get,
    scrape,
    unprivileged_prefix,
    write_config,
)
from tests.support.kubelet import PodLog, cri_ts
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


def _unix_socket(path: Path) -> None:
    """A socket file left at `path` (bound where the 108-byte limit of its name is safe, then
    moved: a socket file outlives its socket and can be renamed like any other)."""
    short = Path(tempfile.mkdtemp(prefix="s")) / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(os.fspath(short))
    os.rename(short, path)
    short.parent.rmdir()


def _block_device(path: Path) -> bool:
    """A block device node at `path` (never opened), if this process may make one."""
    try:
        os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(7, 0))
    except OSError:
        return False
    return True


def _stop(agent: subprocess.Popen[bytes]) -> tuple[int, str, float]:
    """SIGTERM; the exit code, stderr and how long it took (a hung agent is killed: -9)."""
    started = time.monotonic()
    try:
        code, err = terminate(agent, timeout=10)
    except subprocess.TimeoutExpired:
        agent.kill()
        _, raw = agent.communicate()
        code, err = agent.returncode, raw.decode(errors="replace")
    return code, err, time.monotonic() - started


def test_fifos_sockets_devices_and_directories_are_skipped_and_never_block(
        tmp_path: Path) -> None:
    """Only regular files are read. Anything else that matches inputs.paths (or takes a
    tailed file's place at rotation, or lies beside it as a rotated generation) is skipped,
    logged once and counted by kind; it never blocks the agent, /healthz or SIGTERM."""
    ok = PodLog(tmp_path, "odd", "ok-0", "c")
    rotates_to_fifo = PodLog(tmp_path, "odd", "rot-0", "c")
    fifo_sibling = PodLog(tmp_path, "odd", "sib-0", "c")
    for pod in (ok, rotates_to_fifo, fifo_sibling):
        pod.lines(pod.pod, 100)
    logs = tmp_path / "var/log/containers"
    odd = {"not_regular_fifo": logs / "a-fifo_odd_c-1.log",
           "not_regular_socket": logs / "a-socket_odd_c-1.log",
           "not_regular_char_device": logs / "a-null_odd_c-1.log",
           "not_regular_directory": logs / "a-dir_odd_c-1.log"}
    os.mkfifo(odd["not_regular_fifo"])
    _unix_socket(odd["not_regular_socket"])
    os.symlink("/dev/null", odd["not_regular_char_device"])
    odd["not_regular_directory"].mkdir()
    if _block_device(logs / "a-disk_odd_c-1.log"):
        odd["not_regular_block_device"] = logs / "a-disk_odd_c-1.log"
    port = free_port()
    with LokiReceiver() as receiver:
        agent = start_subprocess(write_config(tmp_path, receiver.url, port))
        try:
            assert receiver.wait_for(lambda e: len(e) >= 300, timeout=15), "nothing shipped"
            assert get(port, "/healthz") == (200, "ok\n")
            # A successor that is a FIFO: the renamed file is still read to its end.
            rotated = rotates_to_fifo.file.with_name("0.log.20261127-090001")
            os.rename(rotates_to_fifo.file, rotated)
            os.mkfifo(rotates_to_fifo.file)
            with open(rotated, "ab") as late:  # the runtime's last writes to the old file
                late.write(f"{cri_ts(rotates_to_fifo.next_ts + 1)} stdout F late words\n"
                           .encode())
            rotates_to_fifo.written.append("late words")
            # A FIFO named like a rotated generation, newer than the file it sits beside.
            os.mkfifo(fifo_sibling.file.with_name("0.log.20261127-085959"))
            fifo_sibling.rotate()
            fifo_sibling.lines("after rotation", 50)
            ok.lines("still shipping", 50)
            assert receiver.wait_for(lambda e: len(e) >= 401, timeout=15)
            fifos = 'shipper_file_errors_total{reason="not_regular_fifo"}'
            deadline = time.monotonic() + 10  # drained, the tailer lets discovery report it
            while scrape(port).get(fifos) != 2:
                assert time.monotonic() < deadline, "the FIFO successor was not reported"
                time.sleep(0.05)
            # The FIFO gives way to a regular file again: it is found and read from its start.
            rotates_to_fifo.file.unlink()
            rotates_to_fifo.lines("regular again", 50)
            assert receiver.wait_for(lambda e: len(e) >= 451, timeout=15)
            time.sleep(1.2)  # more than two rescans (500ms): each looks at the paths again
            assert get(port, "/healthz") == (200, "ok\n")
            errors = {k: v for k, v in scrape(port).items()
                      if k.startswith("shipper_file_errors_total")}
        finally:
            code, err, stopped_in = _stop(agent)
        entries = receiver.entries
    assert code == 0 and stopped_in < 5, (code, stopped_in, err[-2000:])
    expected = {f'shipper_file_errors_total{{reason="{reason}"}}': 1.0 for reason in odd}
    expected['shipper_file_errors_total{reason="not_regular_fifo"}'] = 2.0  # and the successor
    assert errors == expected
    assert "Traceback" not in err
    for path in [*odd.values(), rotates_to_fifo.link]:
        complaints = [line for line in err.splitlines() if os.fspath(path) in line]
        assert len(complaints) == 1, (path, complaints)
    assert_none_missing(entries, [m for p in (ok, rotates_to_fifo, fifo_sibling)
                                  for m in p.written], "non-regular files")
