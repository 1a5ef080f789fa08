"""Multiline stage: groups by first_line, continuation, last_line and the stack trace presets,
caps with both overflow settings, max_wait, and the ticket a group holds."""

from __future__ import annotations

import pytest

from shipper.model import FileId, Stream, Ticket
from shipper.pipeline.config import MultilineConfig, read_stage
from shipper.pipeline.multiline import MultilineSpec
from shipper.pipeline.record import Env, GroupStage, Record, StreamInfo

INFO = StreamInfo(Stream('{app="shop"}', (("app", "shop"),)), "stdout")


def config(**options: object) -> MultilineConfig:
    """Read as the agent reads `- multiline: {...}`, durations and sizes included."""
    options_ = read_stage("pipeline[0].stages[0]", {"multiline": options}).options
    assert isinstance(options_, MultilineConfig)
    return options_


def stage(**options: object) -> GroupStage:
    return MultilineSpec(config(**options)).build(INFO)


class Reader:
    """Hands lines to a stage as the runner does: one ticket per read, time from env.now."""

    def __init__(self, stage: GroupStage, now: float = 0.0) -> None:
        self.stage = stage
        self.env = Env(now, 0)
        self.tickets: list[Ticket] = []

    def run(self, *lines: str) -> list[str]:
        ticket = Ticket(FileId(1, 1), len(self.tickets))
        self.tickets.append(ticket)
        records = [Record(i, line, ticket) for i, line in enumerate(lines)]
        return [r.line for r in self.stage.run(records, self.env)]

    def flush(self, force: bool = False) -> list[str]:
        return [r.line for r in self.stage.flush(self.env, force)]


# -- modes -----------------------------------------------------------------------------------

def test_first_line_closes_the_open_group_and_starts_the_next() -> None:
    read = Reader(stage(first_line=r"^\d{4}-"))
    # A line before any first line starts a group of its own, as Promtail's firstline does.
    assert read.run("orphan", "  more of it", "2024-05-14 a", "  x", "  y", "2024-05-14 b",
                    "  z") == ["orphan\n  more of it", "2024-05-14 a\n  x\n  y"]
    assert read.stage.held is read.tickets[0]
    assert read.flush(force=True) == ["2024-05-14 b\n  z"]
    assert read.stage.held is None


def test_regexes_are_searched_anywhere_in_the_line_unless_anchored() -> None:
    lines = ("12:00 INFO up", "12:01 ERROR down", "  detail")
    assert Reader(stage(first_line="ERROR")).run(*lines) == ["12:00 INFO up"]
    assert Reader(stage(first_line="^ERROR")).run(*lines) == []  # one group so far


def test_continuation_appends_matching_lines_and_others_start_a_group() -> None:
    read = Reader(stage(continuation=r"^\s"))
    assert read.run("  orphan", "a", "  1", "  2", "b", "c", "  3") == [
        "  orphan", "a\n  1\n  2", "b"]
    assert read.flush(force=True) == ["c\n  3"]


def test_last_line_ends_its_group_at_once() -> None:
    read = Reader(stage(last_line=r";$"))
    assert read.run("a", "b;", "c;", "d") == ["a\nb;", "c;"]
    assert read.stage.held is read.tickets[0]  # d waits for its last line
    assert read.run("e;") == ["d\ne;"]
    assert read.stage.held is None


def test_the_separator_joins_the_lines() -> None:
    read = Reader(stage(continuation=r"^\s", separator=" | "))
    assert read.run("a", " 1", "b") == ["a |  1"]


def test_a_group_is_its_first_record_with_the_lines_joined() -> None:
    multiline = stage(first_line="^S")
    first, second = Ticket(FileId(1, 1), 10), Ticket(FileId(1, 1), 20)
    head = Record(5, "S", first, {"trace_id": "t1"}, {"team": "a"}, "tenant-a")
    assert multiline.run([head], Env(0.0, 0)) == []
    [group] = multiline.run([Record(6, " 1", second, {"x": "y"}), Record(7, "S", second)],
                            Env(1.0, 0))
    assert group == Record(5, "S\n 1", first, {"trace_id": "t1"}, {"team": "a"}, "tenant-a")


def test_each_stream_gets_its_own_group() -> None:
    spec = MultilineSpec(config(first_line="^S"))
    out, err = Reader(spec.build(INFO)), Reader(spec.build(INFO))
    assert out.run("S out", " 1") == err.run("S err") == []
    assert out.flush(force=True) == ["S out\n 1"]
    assert err.flush(force=True) == ["S err"]


def test_a_spec_needs_a_mode() -> None:
    with pytest.raises(ValueError, match="preset, first_line, continuation or last_line"):
        MultilineSpec(MultilineConfig())


# -- caps ------------------------------------------------------------------------------------

LINES = ("S", "1", "2", "3", "4", "5", "6", "S2", "7")


def test_max_lines_split_ships_the_full_group_and_goes_on_with_a_new_one() -> None:
    read = Reader(stage(first_line="^S", max_lines=3))
    assert read.run(*LINES) == ["S\n1\n2", "3\n4\n5", "6"]
    assert read.flush(force=True) == ["S2\n7"]
    assert read.env.dropped == {}


def test_max_lines_truncate_drops_the_rest_of_the_group_and_counts_it() -> None:
    read = Reader(stage(first_line="^S", max_lines=3, overflow="truncate"))
    assert read.run(*LINES) == ["S\n1\n2"]
    assert read.env.dropped == {"multiline_overflow": 4}
    assert read.flush(force=True) == ["S2\n7"]  # the next group is whole


def test_max_bytes_counts_utf8_bytes_of_the_joined_line() -> None:
    # "S é" is 4 bytes, "é12" 4, with the separator 9; one more line would make 11.
    read = Reader(stage(first_line="^S", max_bytes=10))
    assert read.run("S é", "é12", "x", "S") == ["S é\né12", "x"]
    read = Reader(stage(first_line="^S", max_bytes=10, overflow="truncate"))
    assert read.run("S é", "é12", "x", "y", "S") == ["S é\né12"]
    assert read.env.dropped == {"multiline_overflow": 2}


def test_a_line_longer_than_max_bytes_goes_alone_and_at_once() -> None:
    read = Reader(stage(first_line="^S", max_bytes=8))
    assert read.run("S 123456789", "a", "b") == ["S 123456789"]
    assert read.flush(force=True) == ["a\nb"]


# -- max_wait, held, flush -------------------------------------------------------------------

def test_max_wait_counts_from_the_last_line_of_the_group() -> None:
    read = Reader(stage(first_line="^S", max_wait="3s"), now=10.0)
    assert read.run("S", " 1") == []
    assert read.stage.deadline == 13.0
    read.env.now = 12.0
    assert read.flush() == []
    assert read.run(" 2") == []
    assert read.stage.deadline == 15.0
    read.env.now = 14.9
    assert read.flush() == []
    read.env.now = 15.0
    assert read.flush() == ["S\n 1\n 2"]
    assert read.stage.deadline is None
    assert read.stage.held is None
    assert read.flush(force=True) == []


def test_an_event_paused_past_max_wait_goes_on_as_a_new_group() -> None:
    read = Reader(stage(preset="java", max_wait="1s"))
    assert read.run("java.lang.IllegalStateException: boom", "\tat a.B.c(B.java:1)") == []
    read.env.now = 1.0
    assert read.flush() == ["java.lang.IllegalStateException: boom\n\tat a.B.c(B.java:1)"]
    # Its frames are not scattered one per entry: they form the next group.
    assert read.run("\tat a.B.d(B.java:2)", "\tat a.B.e(B.java:3)", "INFO done") == [
        "\tat a.B.d(B.java:2)\n\tat a.B.e(B.java:3)", "INFO done"]


def test_held_is_the_ticket_of_the_open_groups_first_line() -> None:
    read = Reader(stage(first_line="^S"))
    assert read.run("a") == []
    assert read.stage.held is read.tickets[0]
    assert read.run("b", "S") == ["a\nb"]  # a's group ships under a's ticket...
    assert read.stage.held is read.tickets[1]  # ...and S, read second, pins the second read
    assert read.run(" 1") == []
    assert read.stage.held is read.tickets[1]
    assert read.flush(force=True) == ["S\n 1"]
    assert read.stage.held is None


def test_force_flush_ships_the_open_group_whatever_the_time() -> None:
    read = Reader(stage(first_line="^S", max_wait="1h"))
    assert read.flush(force=True) == []
    assert read.run("S", " 1") == []
    assert read.flush() == []
    assert read.flush(force=True) == ["S\n 1"]
