"""The process stage's ticket protocol: records a stage keeps back pin their file's position at
the read they came from, and release it once placed; drops settle; deadlines flush."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipper.batch import Batcher, FlowControl
from shipper.config import BatchConfig
from shipper.enrich import FileStreams
from shipper.metrics import Metrics
from shipper.model import Entry, FileId, Stream, Ticket
from shipper.pipeline.record import Env, Record, StreamInfo
from shipper.pipeline.runner import FilePipeline, StreamPipeline
from shipper.positions import Positions
from shipper.process import FileProcess
from shipper.sink import Sink

FILE = FileId(3, 4)
OUT = Stream('{app="a"}', (("app", "a"),), (("stream", "stdout"),))
ERR = Stream('{app="a"}', (("app", "a"),), (("stream", "stderr"),))
STREAMS = FileStreams(OUT, ERR, excluded=False, enriched=True, version=0)


@dataclass
class UntilEnd:
    """A group stage for the test: lines from START to END become one record."""

    max_wait: float = 5.0
    group: list[Record] = field(default_factory=list)
    last: float = 0.0

    def run(self, records: list[Record], env: Env) -> list[Record]:
        out = []
        for r in records:
            if self.group or r.line.startswith("START"):
                self.group.append(r)
                self.last = env.now
                if r.line == "END":
                    out.append(self._joined())
            else:
                out.append(r)
        return out

    def _joined(self) -> Record:
        first, lines = self.group[0], [r.line for r in self.group]
        self.group = []
        return Record(first.ts, "|".join(lines), first.ticket)

    def flush(self, env: Env, force: bool) -> list[Record]:
        due = self.group and (force or env.now - self.last >= self.max_wait)
        return [self._joined()] if due else []

    @property
    def deadline(self) -> float | None:
        return self.last + self.max_wait if self.group else None

    @property
    def held(self) -> Ticket | None:
        return self.group[0].ticket if self.group else None


class Compiler:
    """Stands in for Pipeline: every file gets the UntilEnd stage on stdout."""

    active = True

    def for_file(self, streams: FileStreams, previous: Any) -> tuple[FilePipeline, list[Any]]:
        return FilePipeline(StreamPipeline(StreamInfo(streams.stdout, "stdout"), [UntilEnd()],
                                           "k"),
                            StreamPipeline(StreamInfo(streams.stderr, "stderr"), [], "k")), []


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(*texts: str) -> list[Entry]:
    return [(i, t.encode(), OUT) for i, t in enumerate(texts)]


def test_an_open_group_pins_the_position_at_its_first_read_until_it_is_delivered(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = Metrics()
        positions = Positions(str(tmp_path / "p.json"), metrics)
        flow = FlowControl(10**9, metrics)
        batcher = Batcher(BatchConfig(size=1, timeout=60.0), flow, positions)
        sink = Sink(flow, batcher, positions)
        clock = Clock()
        process = FileProcess(sink, Compiler(), metrics, clock)  # type: ignore[arg-type]
        process.retarget(STREAMS)
        positions.open(FILE, "f", 0)

        def read(end: int, *texts: str) -> None:
            ticket = sink.ticket(FILE, end)
            process.emit(ticket, lines(*texts), STREAMS, None)
            sink.seal(ticket)

        async def deliver_all() -> list[str]:
            shipped = []
            while batcher.pending_entries:  # batch.size 1: every batch is due at once
                batch = await batcher.next_batch()
                assert batch is not None
                shipped += [e[1].decode() for es in batch.streams.values() for e in es]
                batcher.settle(batch)
            return shipped

        read(100, "a", "START b1")
        read(200, "b2")
        assert await deliver_all() == ["a"]
        assert positions.offset(FILE) == 0  # the group began in the first read: pinned there
        read(300, "END", "c")
        assert positions.offset(FILE) == 0  # placed, not yet acknowledged
        assert await deliver_all() == ["START b1|b2|END", "c"]
        assert positions.offset(FILE) == 300

        read(400, "START again")
        assert process.deadline == 5.0
        clock.now = 4.9
        process.flush(force=False)  # not yet due
        assert positions.offset(FILE) == 300
        clock.now = 5.0
        process.flush(force=False)  # max_wait passed: it goes as it is
        assert await deliver_all() == ["START again"]
        assert positions.offset(FILE) == 400 and process.deadline is None

    asyncio.run(scenario())
