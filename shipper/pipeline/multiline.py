"""Multiline stage: joins the lines of one event (a stack trace) into one entry, per stream.

A group is one record: its first line's timestamp, ticket, fields, labels and tenant, and
its lines joined by the separator. While a group is open, `held` is its first line's ticket,
so the read it came from stays uncommitted and a crash mid-group loses nothing.
"""

from __future__ import annotations

import re

from shipper.model import Ticket
from shipper.pipeline.config import MultilineConfig
from shipper.pipeline.presets import PRESETS, State, machine
from shipper.pipeline.record import Env, GroupStage, Record, StreamInfo

OVERFLOW = "multiline_overflow"  # the drop reason of a group's lines past a cap (truncate)


def _always(line: str) -> bool:
    return True


def _regex_machine(config: MultilineConfig) -> State:
    """The machine of a first_line, continuation or last_line regex, each found anywhere in
    the line (re.search: anchor it with ^ to match at the start only)."""
    if config.first_line:
        first = re.compile(config.first_line).search
        return machine((("start", _always, "group"),
                        ("group", lambda line: first(line) is None, "group")))
    if config.continuation:
        return machine((("start", _always, "group"),
                        ("group", re.compile(config.continuation).search, "group")))
    if config.last_line:
        last = re.compile(config.last_line).search
        return machine((("start group", last, "end"), ("start group", _always, "group")))
    raise ValueError("a multiline stage needs a preset, first_line, continuation or last_line")


def _size(line: str) -> int:
    return len(line) if line.isascii() else len(line.encode())  # UTF-8 bytes, cheaply


class MultilineSpec:
    """A multiline stage compiled once from its config: each stream gets its own groups."""

    def __init__(self, config: MultilineConfig) -> None:
        self._config = config
        self._start = machine(PRESETS[config.preset]) if config.preset else _regex_machine(config)

    def build(self, info: StreamInfo) -> GroupStage:
        return Multiline(self._start, self._config)


class Multiline:
    """The open group of one output stream of one file."""

    def __init__(self, start: State, config: MultilineConfig) -> None:
        self._start = start
        # Where the last line left the machine. It outlives a group shipped early (full, or
        # past max_wait), so that the rest of that event goes on as the next group.
        self._state = start
        self._group: list[Record] = []
        self._bytes = 0  # UTF-8 bytes of the group's lines joined
        self._last = 0.0  # env.now when its last line joined: max_wait counts from there
        self._dropping = False  # past a cap with overflow: truncate: the event's lines go
        self._separator = config.separator
        self._separator_bytes = _size(config.separator)
        self._max_lines = config.max_lines
        self._max_bytes = config.max_bytes
        self._max_wait = config.max_wait
        self._truncate = config.overflow == "truncate"

    def run(self, records: list[Record], env: Env) -> list[Record]:
        out: list[Record] = []
        now = env.now
        for record in records:
            self._feed(record, now, env, out)
        return out

    def flush(self, env: Env, force: bool) -> list[Record]:
        out: list[Record] = []
        if self._group and (force or env.now - self._last >= self._max_wait):
            self._ship(out)
        return out

    @property
    def deadline(self) -> float | None:
        return self._last + self._max_wait if self._group else None

    @property
    def held(self) -> Ticket | None:
        return self._group[0].ticket if self._group else None

    def _feed(self, record: Record, now: float, env: Env, out: list[Record]) -> None:
        line = record.line
        if self._state is not self._start:
            for test, state in self._state.rules:
                if test(line):
                    self._join(record, state, now, env, out)
                    return
            # The event is over: the line is examined afresh, and may start the next one.
            if self._group:
                self._ship(out)
            self._state = self._start
        for test, state in self._start.rules:
            if test(line):
                self._dropping = False  # a new event: nothing of it is dropped yet
                self._group = [record]
                self._bytes = _size(line)
                self._moved(state, now, out)
                return
        out.append(record)  # a line of its own

    def _join(self, record: Record, state: State, now: float, env: Env,
              out: list[Record]) -> None:
        size = _size(record.line)
        if self._group and self._bytes + self._separator_bytes + size > self._max_bytes:
            self._ship(out)  # full: the line would take it past max_bytes
            self._dropping = self._truncate
        if self._dropping:
            env.drop(OVERFLOW)
            self._state = state if state.rules else self._start
            return
        if self._group:
            self._group.append(record)
            self._bytes += self._separator_bytes + size
        else:  # the group was shipped early: the event goes on as a new one
            self._group = [record]
            self._bytes = size
        self._moved(state, now, out)

    def _moved(self, state: State, now: float, out: list[Record]) -> None:
        """A line joined the group and took it to `state`: ship it if it is done or full."""
        self._state = state
        self._last = now
        if not state.rules:  # a last line: nothing can follow it
            self._ship(out)
            self._state = self._start
        elif len(self._group) >= self._max_lines or self._bytes >= self._max_bytes:
            self._ship(out)
            self._dropping = self._truncate

    def _ship(self, out: list[Record]) -> None:
        group = self._group
        first = group[0]
        if len(group) > 1:
            first.line = self._separator.join([record.line for record in group])
        out.append(first)
        self._group = []
