"""Positions: advance only through settled tickets; atomic, versioned, corrupt files set aside."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from shipper import positions as positions_module
from shipper.metrics import Metrics
from shipper.model import FileId
from shipper.positions import VERSION, Positions
from tests.support.agent import until

FILE = FileId(7, 42)


def test_offset_advances_only_through_the_settled_prefix(tmp_path: Path) -> None:
    positions = Positions(str(tmp_path / "p.json"), Metrics())
    positions.open(FILE, "/var/log/containers/a.log", 100)
    first, second, third = (positions.issue(FILE, end) for end in (200, 300, 400))
    for t in (first, second, third):
        positions.hold(t)  # in a batch
        positions.seal(t)
    positions.release(third)  # acknowledged out of order: must not jump over the others
    assert positions.offset(FILE) == 100
    positions.release(first)
    assert positions.offset(FILE) == 200
    positions.release(second)
    assert positions.offset(FILE) == 400


def test_a_ticket_settles_only_once_sealed_and_released_by_every_holder(tmp_path: Path) -> None:
    positions = Positions(str(tmp_path / "p.json"), Metrics())
    positions.open(FILE, "a", 0)
    ticket = positions.issue(FILE, 50)
    positions.hold(ticket)  # one batch
    positions.hold(ticket)  # and an open multiline group
    positions.release(ticket)
    positions.release(ticket)
    assert positions.offset(FILE) == 0  # not sealed: its reader may still place entries
    positions.seal(ticket)
    assert positions.offset(FILE) == 50
    with pytest.raises(RuntimeError):
        positions.hold(ticket)  # settled and committed: holding it again is a bug


def test_an_empty_chunk_settles_when_sealed(tmp_path: Path) -> None:
    positions = Positions(str(tmp_path / "p.json"), Metrics())
    positions.open(FILE, "a", 0)
    positions.seal(positions.issue(FILE, 10))
    assert positions.offset(FILE) == 10


def test_save_and_load_round_trip_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state" / "positions.json"
    positions = Positions(str(path), Metrics())
    positions.open(FILE, "/var/log/pods/x/0.log", 1234)
    assert asyncio.run(positions.save())
    raw = json.loads(path.read_text())
    assert raw["version"] == VERSION
    assert raw["files"] == [{"dev": 7, "ino": 42, "path": "/var/log/pods/x/0.log", "offset": 1234}]
    assert not (tmp_path / "state" / "positions.json.tmp").exists()
    assert Positions(str(path), Metrics()).load() == {FILE: ("/var/log/pods/x/0.log", 1234)}


def test_finished_file_is_forgotten_once_settled(tmp_path: Path) -> None:
    positions = Positions(str(tmp_path / "p.json"), Metrics())
    positions.open(FILE, "a", 0)
    ticket = positions.issue(FILE, 10)
    positions.hold(ticket)
    positions.seal(ticket)
    positions.finish(FILE)
    assert positions.offset(FILE) == 0  # still tracked: its last chunk is in flight
    positions.release(ticket)
    assert positions.offset(FILE) is None


@pytest.mark.parametrize("content", ["{not json", json.dumps({"version": VERSION + 1, "files": []}),
                                     json.dumps([1, 2]), json.dumps({"version": VERSION})])
def test_corrupt_or_future_file_is_moved_aside_and_reported(
        tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "positions.json"
    path.write_text(content)
    assert Positions(str(path), Metrics()).load() == {}
    assert not path.exists()
    aside = list(tmp_path.glob("positions.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == content
    assert "positions file unusable" in caplog.text


def test_unwritable_directory_is_counted_and_retried(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    metrics = Metrics()
    positions = Positions(str(blocker / "positions.json"), metrics)
    positions.open(FILE, "a", 5)
    assert not asyncio.run(positions.save())
    assert positions.write_error
    assert metrics.positions_write_errors._value.get() == 1
    blocker.unlink()
    assert asyncio.run(positions.save())  # retried on the next call, and recovers
    assert positions.write_error is None


def test_writes_leave_the_loop_free_one_at_a_time_newest_last(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.json"
    positions = Positions(str(path), Metrics())
    positions.open(FILE, "a", 0)
    first, second = positions.issue(FILE, 10), positions.issue(FILE, 20)
    for ticket in (first, second):
        positions.hold(ticket)  # in a batch
        positions.seal(ticket)
    held = threading.Event()  # the disk answers once set
    started: list[int] = []  # offsets, as each write begins
    write = positions_module.write_atomically

    def slow_disk(target: Path, body: bytes) -> None:
        started.append(json.loads(body)["files"][0]["offset"])
        assert held.wait(10)
        write(target, body)

    monkeypatch.setattr(positions_module, "write_atomically", slow_disk)

    async def scenario() -> None:
        positions.release(first)  # acknowledged
        saver = asyncio.create_task(positions.save())
        await until(lambda: started == [10])  # the loop runs while the disk holds the write
        saver.cancel()  # as at shutdown: the write in flight goes on
        positions.release(second)
        final = asyncio.create_task(positions.save())
        await asyncio.sleep(0.2)
        assert started == [10]  # waits for the write in flight: never two at once
        held.set()
        assert await final
        assert started == [10, 20]  # the newer snapshot lands last
        assert await positions.save()
        assert started == [10, 20]  # unchanged: not written again

    asyncio.run(scenario())
    assert Positions(str(path), Metrics()).load() == {FILE: ("a", 20)}


def test_the_saver_is_woken_only_by_a_moved_offset(tmp_path: Path) -> None:
    positions = Positions(str(tmp_path / "p.json"), Metrics())
    positions.open(FILE, "a", 0)

    async def changed(within: float) -> bool:
        try:
            await asyncio.wait_for(positions.changed(), within)
        except TimeoutError:
            return False
        return True

    async def scenario() -> None:
        assert await changed(1)  # a new file
        assert await positions.save()
        assert not await changed(0.05)  # nothing since that save: nothing to wake for
        ticket = positions.issue(FILE, 10)
        positions.hold(ticket)
        positions.seal(ticket)
        assert not await changed(0.05)  # read, not yet acknowledged: the offset stays
        positions.release(ticket)
        assert await changed(1)

    asyncio.run(scenario())
