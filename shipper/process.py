"""Process stage: a file's entries through its pipeline, when it has one, into the sink."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from shipper.enrich import FileStreams
from shipper.metrics import Metrics
from shipper.model import Entry, Ticket
from shipper.pipeline.compile import Pipeline
from shipper.pipeline.record import Env
from shipper.pipeline.runner import FilePipeline, Output
from shipper.sink import Reservation, Sink

ENTRY_OVERHEAD = 24  # encoded bytes per entry besides line and metadata: tags, lengths, timestamp


def _overhead(entries: list[Entry]) -> int:
    return ENTRY_OVERHEAD + sum(len(k) + len(v) + 4 for k, v in entries[0][2].metadata)


def _shared_key(entries: list[Entry]) -> str | None:
    first = entries[0][2]
    return first.key if all(e[2] is first for e in entries) else None


def _not_in(these: list[Ticket], those: list[Ticket]) -> list[Ticket]:
    """The tickets of `these` beyond those in `those`, counted by identity."""
    left = Counter(map(id, those))
    out = []
    for ticket in these:
        if left[id(ticket)]:
            left[id(ticket)] -= 1
        else:
            out.append(ticket)
    return out


class FileProcess:
    """One file's hand-off to the sink. Without stages, a read's entries go straight on under
    its ticket. With stages, records a stage keeps back (an open multiline group) hold the
    ticket of the read they came from, so the file's position cannot pass them until they
    are placed: hold before placing, release after."""

    __slots__ = ("_clock", "_compiler", "_metrics", "_sink", "_stages", "_waiting", "delay")

    def __init__(self, sink: Sink, pipeline: Pipeline | None, metrics: Metrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sink = sink
        self._compiler = pipeline if pipeline is not None and pipeline.active else None
        self._metrics = metrics
        self._clock = clock
        self._stages: FilePipeline | None = None
        self.delay = 0.0  # seconds the reader must wait (rate_limit hold), then call resume()
        self._waiting: list[Output] = []  # placements held back until then, in file order

    def retarget(self, streams: FileStreams) -> None:
        """The file's metadata changed: its streams' stages may too. Stages that change give
        up what they kept (their open groups go out as they are)."""
        if self._compiler is None:
            return
        self._stages, retired = self._compiler.for_file(streams, self._stages)
        for stages in retired:
            env = self._env()
            before = stages.held()
            output = Output()
            output.add(stages, stages.flush(env, force=True))
            self._hand_on(before, stages.held(), output, env, None)

    def emit(self, ticket: Ticket, entries: list[Entry], streams: FileStreams,
             reservation: Reservation | None, line_bytes: int = -1) -> None:
        """Hand on a read's entries (tagged with `streams`' Streams, `line_bytes` in their
        lines if counted) under its ticket."""
        stages = self._stages
        if stages is None:
            if entries:
                self._sink.place(ticket, entries, _overhead(entries), streams.shared_key,
                                 reservation, line_bytes)
            return
        env = self._env()
        before = stages.held()
        output = stages.run(entries, ticket, env)
        self._hand_on(before, stages.held(), output, env, reservation)

    def resume(self) -> None:
        """The reader waited out `delay`: what a rate limit held back goes on."""
        self.delay = 0.0
        waiting, self._waiting = self._waiting, []
        for output in waiting:
            for ticket, entries in output.placements:
                self._sink.place(ticket, entries, _overhead(entries), _shared_key(entries),
                                 None)
                self._sink.release(ticket)

    def flush(self, *, force: bool) -> None:
        """Hand on what stages kept back and is now due (everything if `force`: the file is
        finished, or the agent stops)."""
        if force:
            self.resume()
        stages = self._stages
        if stages is None or (not force and (stages.deadline or float("inf")) > self._clock()):
            return
        env = self._env()
        before = stages.held()
        output = stages.flush(env, force)
        self._hand_on(before, stages.held(), output, env, None)

    @property
    def deadline(self) -> float | None:
        return None if self._stages is None else self._stages.deadline

    def _env(self) -> Env:
        return Env(self._clock(), time.time_ns())

    def _hand_on(self, before: list[Ticket], after: list[Ticket], output: Output, env: Env,
                 reservation: Reservation | None) -> None:
        sink = self._sink
        for ticket in _not_in(after, before):
            sink.hold(ticket)
        if env.delay or self._waiting:
            # A rate limit (hold) asks the reader to wait: these records wait with it, holding
            # their reads uncommitted, so the stream never runs ahead of its rate.
            for ticket, _ in output.placements:
                sink.hold(ticket)
            self._waiting.append(output)
            self.delay = max(self.delay, env.delay)
        else:
            for ticket, entries in output.placements:
                sink.place(ticket, entries, _overhead(entries), _shared_key(entries),
                           reservation)
        for ticket in _not_in(before, after):
            sink.release(ticket)
        for reason, count in env.dropped.items():
            self._metrics.dropped_entries.labels(reason).inc(count)
        for stage, count in env.failed.items():
            self._metrics.pipeline_failures.labels(stage).inc(count)
