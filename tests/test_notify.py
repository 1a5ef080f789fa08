"""Notifier: one event per armed file, directory changes, lost events, and life without inotify."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path

import pytest

from shipper import notify
from shipper.notify import Notifier
from tests.support.agent import until


def test_an_armed_file_reports_its_next_write_once_whatever_its_name(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    log.write_text("")

    async def scenario() -> None:
        notifier = Notifier()
        notifier.start()
        fired: list[str] = []
        fd = os.open(log, os.O_RDONLY)
        try:
            assert notifier.arm(fd, lambda: fired.append("write")) is not None
            with open(log, "a") as out:
                for n in range(100):  # one write() each, as a container runtime writes
                    out.write(f"line {n}\n")
                    out.flush()
            await until(lambda: fired == ["write"])
            await asyncio.sleep(0.05)
            assert fired == ["write"]  # one event for a hundred writes, until armed again
            log.rename(tmp_path / "0.log.1")  # rotated: still watched through the descriptor
            notifier.arm(fd, lambda: fired.append("renamed"))
            with open(tmp_path / "0.log.1", "a") as out:
                out.write("late\n")
            await until(lambda: fired[-1:] == ["renamed"])
            wd = notifier.arm(fd, lambda: fired.append("closed"))
            assert wd is not None
            notifier.disarm(wd)  # closed by its tailer: no call after that
            with open(tmp_path / "0.log.1", "a") as out:
                out.write("after\n")
            await asyncio.sleep(0.05)
            assert fired == ["write", "renamed"]
        finally:
            os.close(fd)
            notifier.close()

    asyncio.run(scenario())


def test_directories_report_what_appears_moves_and_goes_never_writes(tmp_path: Path) -> None:
    watched, other = tmp_path / "watched", tmp_path / "other"
    watched.mkdir()
    other.mkdir()
    (watched / "old.log").write_text("")

    async def scenario() -> None:
        notifier = Notifier()
        notifier.start()
        try:
            notifier.watch_dirs([str(watched), str(other)])
            (watched / "new.log").write_text("a line\n")
            (watched / "old.log").rename(watched / "old.log.1")
            assert await notifier.changes(5) == {
                str(watched / p) for p in ("new.log", "old.log", "old.log.1")}
            with open(watched / "new.log", "a") as out:
                out.write("another\n")  # a write is the file's business, not the directory's
            assert await notifier.changes(0.1) == set()
            notifier.watch_dirs([str(watched)])  # `other` no longer
            (other / "x.log").write_text("")
            (watched / "new.log").unlink()
            assert await notifier.changes(5) == {str(watched / "new.log")}
        finally:
            notifier.close()

    asyncio.run(scenario())


def test_lost_events_wake_every_armed_file_and_ask_for_a_rescan(tmp_path: Path) -> None:
    """The kernel's queue overflows (IN_Q_OVERFLOW): any file's one event may be lost."""
    queue = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    (tmp_path / "a.log").write_text("")
    crowd = tmp_path / "crowd"
    crowd.mkdir()

    async def scenario() -> None:
        notifier = Notifier()
        notifier.start()
        fired: list[str] = []
        fd = os.open(tmp_path / "a.log", os.O_RDONLY)
        try:
            notifier.watch_dirs([str(crowd)])
            for n in range(queue + 1):  # more events than the queue holds, none read meanwhile
                os.close(os.open(crowd / str(n), os.O_CREAT | os.O_WRONLY))
            notifier.arm(fd, lambda: fired.append("a.log"))  # its event could not be queued
            with open(tmp_path / "a.log", "a") as out:
                out.write("a line\n")
            await until(lambda: fired == ["a.log"])
            assert await notifier.changes(1) is None  # the discoverer rescans
        finally:
            os.close(fd)
            notifier.close()

    asyncio.run(scenario())


def test_without_inotify_nothing_is_reported_and_that_is_logged_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def no_more_instances(**_: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(notify, "INotify", no_more_instances)

    async def scenario() -> None:
        notifier = Notifier()
        notifier.start()
        notifier.start()  # a second try, as after a restart: not logged again
        assert notifier.arm(0, lambda: None) is None  # the tailer relies on rescans
        notifier.watch_dirs([str(tmp_path)])
        assert await notifier.changes(0.01) == set()
        notifier.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records] == [
        "inotify unavailable (fs.inotify.max_user_instances reached)"]
