"""Multiline stage: groups by first_line, continuation, last_line and the stack trace presets,
caps with both overflow settings, max_wait, and the ticket a group holds."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.model import FileId, Stream, Ticket
from shipper.pipeline.config import MultilineConfig, read_stage
from shipper.pipeline.multiline import MultilineSpec
from shipper.pipeline.record import Env, GroupStage, Record, StreamInfo
from tests.support.traces import LOGS, recorded

INFO = StreamInfo(Stream('{app="shop"}', (("app", "shop"),)), "stdout")


def config(**options: object) -> MultilineConfig:
    """Read as the agent reads `- multiline: {...}`, durations and sizes included."""
    read = read_stage("pipeline[0].stages[0]", {"multiline": options}).options
    assert isinstance(read, MultilineConfig)
    return read


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
    # A line before any first line starts a group all the same: the lines after it join it.
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


MODES = st.sampled_from([{"first_line": "^S"}, {"continuation": "^ "}, {"last_line": ";$"}])


@settings(max_examples=300, deadline=None)
@given(mode=MODES, max_lines=st.integers(1, 5), max_bytes=st.integers(2, 24),
       overflow=st.sampled_from(["split", "truncate"]),
       lines=st.lists(st.sampled_from(["S1", "S2", " a", " bé", "x;", " y;", "", "  "])),
       data=st.data())
def test_any_split_into_reads_gives_the_same_entries(
        mode: dict[str, str], max_lines: int, max_bytes: int, overflow: str,
        lines: list[str], data: st.DataObject) -> None:
    """Whatever the reads, the same entries and drops; after each read, the first line
    neither shipped nor dropped is the one whose ticket is held."""
    options = {**mode, "max_lines": max_lines, "max_bytes": max_bytes, "overflow": overflow}
    whole = Reader(stage(**options))
    expected = whole.run(*lines) + whole.flush(force=True)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(lines) - 1)))) if len(lines) > 1 else []
    split = Reader(stage(**options))
    got: list[str] = []
    tickets: list[Ticket] = []
    for start, end in itertools.pairwise([0, *cuts, len(lines)]):
        got += split.run(*lines[start:end])
        tickets += [split.tickets[-1]] * (end - start)
        done = sum(line.count("\n") + 1 for line in got) + sum(split.env.dropped.values())
        assert split.stage.held is (tickets[done] if done < end else None)
    assert got + split.flush(force=True) == expected
    assert split.env.dropped == whole.env.dropped


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
    assert read.run("b", "S") == ["a\nb"]
    assert read.stage.held is read.tickets[1]  # S, read second, pins the second read
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


# -- presets: real traces among ordinary lines ---------------------------------------------------

MAX_WAIT = 3.0


def replay(preset: str, entries: tuple[str, ...], cuts: list[int], wait: bool) -> None:
    """Reads the log's lines in runs ending at `cuts`, a ticket per run, checks after each
    that the first line not yet shipped is the one whose ticket is held (nothing is neither
    shipped nor held), and that `entries` come out, each under its first line's ticket.
    With `wait`, max_wait passes and the stage is flushed between runs."""
    lines = [line for entry in entries for line in entry.split("\n")]
    multiline = stage(preset=preset, max_wait=MAX_WAIT)
    env = Env(0.0, 0)
    tickets: list[Ticket] = []
    out: list[Record] = []
    for start, end in itertools.pairwise([0, *cuts, len(lines)]):
        ticket = Ticket(FileId(1, 1), end)
        tickets += [ticket] * (end - start)
        out += multiline.run([Record(i, lines[i], ticket) for i in range(start, end)], env)
        if wait:
            env.now += MAX_WAIT
            out += multiline.flush(env, False)
        shipped = sum(r.line.count("\n") + 1 for r in out)
        assert multiline.held is (tickets[shipped] if shipped < end else None)
        assert (multiline.deadline is None) is (multiline.held is None)
    out += multiline.flush(env, True)
    assert multiline.held is None
    assert [r.line for r in out] == list(entries)
    starts = list(itertools.accumulate((e.count("\n") + 1 for e in entries), initial=0))
    assert [(r.ts, r.ticket) for r in out] == [(i, tickets[i]) for i in starts[:-1]]


@pytest.mark.parametrize("preset", LOGS)
def test_each_trace_is_one_entry_and_each_other_line_its_own(preset: str) -> None:
    entries = LOGS[preset]()
    assert sum("\n" in entry for entry in entries) >= 3  # every line alone would fail
    lines = sum(entry.count("\n") + 1 for entry in entries)
    replay(preset, entries, [], wait=False)
    replay(preset, entries, list(range(1, lines)), wait=False)  # a read per line


@pytest.mark.parametrize("preset", LOGS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_whatever_the_reads(preset: str, data: st.DataObject) -> None:
    entries = LOGS[preset]()
    lines = sum(entry.count("\n") + 1 for entry in entries)
    cuts = sorted(data.draw(st.sets(st.integers(1, lines - 1))))
    replay(preset, entries, cuts, wait=False)


@pytest.mark.parametrize("preset", LOGS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_max_wait_between_events(preset: str, data: st.DataObject) -> None:
    """A group shipped by max_wait at a boundary between entries changes nothing."""
    entries = LOGS[preset]()
    bounds = list(itertools.accumulate(e.count("\n") + 1 for e in entries))[:-1]
    cuts = sorted(data.draw(st.sets(st.sampled_from(bounds))))
    replay(preset, entries, cuts, wait=True)


def test_a_blank_line_ends_a_java_trace_at_once() -> None:
    """Spring Boot and java.util.logging end a trace with a blank line: nothing waits."""
    entry = recorded("java_spring_boot.log")
    read = Reader(stage(preset="java"))
    assert read.run(*entry.split("\n")) == [entry]
    assert read.stage.held is None


NEXT = "2024-05-14 09:12:50.000 INFO next"
OTHER_SHAPES = [
    ("java", ["org.springframework.web.client.HttpClientErrorException$NotFound: 404 Not Found",
              "\tat org.springframework.web.client.RestTemplate.get(RestTemplate.java:9)"]),
    ("java", ['Exception in thread "main" java.lang.StackOverflowError', "\tat a.B.c(B.java:1)"]),
    ("java", ["kotlin.KotlinNullPointerException", "\tat com.example.AppKt.main(App.kt:3)"]),
    ("java", ["ERROR [main] c.e.Svc - failed", "java.lang.Error", "\tat a.B.c(B.java:1)",
              "Wrapped by: java.lang.RuntimeException: outer", "\tat a.B.d(B.java:2)"]),  # %rEx
    ("python", ["ERROR:root:request failed", "Traceback (most recent call last):",
                '  File "/app/main.py", line 3, in <module>', "    main()", "KeyboardInterrupt"]),
    ("go", ["panic: boom", "", "goroutine 1 [running, locked to thread]:", "main.main()",
            "\t/src/main.go:5 +0x25", "...additional frames elided..."]),
    ("go", ["runtime: goroutine stack exceeds 1000000000-byte limit",
            "runtime: sp=0xc020160398 stack=[0xc020160000, 0xc040160000]",
            "fatal error: stack overflow", "", "runtime stack:", "runtime.throw({0x4a3bfc?, 0x0?})",
            "\t/usr/local/go/src/runtime/panic.go:1077 +0x5c fp=0x7ffd5e1c sp=0x7ffd5e0c pc=0x4",
            "", "goroutine 1 [running]:", "main.f(...)", "\t/src/main.go:4 +0x2c"]),
    ("ruby", ["app.rb:1:in '<main>': unhandled exception", "\tfrom app.rb:3:in 'Kernel#load'"]),
    ("dotnet", ["Unhandled Exception: System.Data.SqlClient.SqlException (0x80131904): Timeout",
                "   at System.Data.SqlClient.SqlConnection.OnError(SqlException exception)",
                "--- End of stack trace from previous location where exception was thrown ---",
                "   at Shop.Db.Open()"]),  # .NET Framework
    ("dotnet", ["System.InvalidOperationException: Sequence contains no elements",  # WriteLine(e)
                "   at System.Linq.ThrowHelper.ThrowNoElementsException()"]),
]


@pytest.mark.parametrize(("preset", "lines"), OTHER_SHAPES)
def test_other_shapes_of_traces(preset: str, lines: list[str]) -> None:
    assert Reader(stage(preset=preset)).run(*lines, NEXT) == ["\n".join(lines), NEXT]


NOT_TRACES = [
    ("java", ["ERROR [main] c.e.Svc - failed", "  retrying in 5s", "com.example.Config: loaded"]),
    ("python", ["Error: file not found", "  File list follows", "CRITICAL: disk full", ""]),
    ("go", ["panicked: no", "goroutine 1 [running]:", "main.main()"]),
    ("ruby", ["Started (Rack)", "Completed 200 OK in 3ms (Views: 1.2ms)"]),
    ("dotnet", ["[09:12:44 ERR] Order 42 failed", "Exceptions: 0", "at noon"]),
]


@pytest.mark.parametrize(("preset", "lines"), NOT_TRACES)
def test_lines_that_only_look_like_traces_stay_alone(preset: str, lines: list[str]) -> None:
    read = Reader(stage(preset=preset))
    assert read.run(*lines, NEXT) + read.flush(force=True) == [*lines, NEXT]
