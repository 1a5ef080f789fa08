"""Parse stage: CRI and Docker lines, partial joining, commit offsets, UTF-8 and truncation."""

from __future__ import annotations

import calendar
import itertools
import json
import re
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.model import Entry, Stream
from shipper.parse import FileParser

NOW = 42  # the injected read time of unparsable lines
T = b"2024-01-15T10:30:00.123456789Z"
T_NS = calendar.timegm((2024, 1, 15, 10, 30, 0)) * 10**9 + 123456789


def stream(name: str) -> Stream:
    return Stream(f'{{s="{name}"}}', (("s", name),))


OUT, ERR = stream("stdout"), stream("stderr")


def parser(max_line_bytes: int = 1024) -> FileParser:
    return FileParser(max_line_bytes, OUT, ERR, now_ns=lambda: NOW)


def cri(msg: bytes, stream: bytes = b"stdout", tag: bytes = b"F", ts: bytes = T) -> bytes:
    return b" ".join((ts, stream, tag, msg)) + b"\n"


def docker(log: str, stream: str = "stdout", ts: str = T.decode(), spaced: bool = False) -> bytes:
    """A json-file record as Docker writes it, or with spaces, which json.loads alone reads."""
    record = {"log": log, "stream": stream, "time": ts}
    separators = (", ", ": ") if spaced else (",", ":")
    return json.dumps(record, separators=separators).encode() + b"\n"


def run(p: FileParser, chunks: list[bytes],
        offset: int = 0) -> tuple[list[Entry], list[int]]:
    """Parse consecutive chunks; return all entries and the commit offset after each chunk."""
    entries: list[Entry] = []
    commits = []
    for chunk in chunks:
        out, commit = p.parse(chunk, offset)
        entries += out
        commits.append(commit)
        offset += len(chunk)
    return entries, commits


# --- CRI ---------------------------------------------------------------------------------------

def test_cri_full_lines_keep_message_spaces_and_stream() -> None:
    p = parser()
    data = cri(b"hello  world ") + cri(b"oops", b"stderr") + cri(b"tagged", tag=b"F:x")
    assert p.parse(data, 100) == ([(T_NS, b"hello  world ", OUT), (T_NS, b"oops", ERR),
                                   (T_NS, b"tagged", OUT)], 100 + len(data))
    assert p.format == "cri"
    assert p.counts.lines == 3 and p.counts.unparsable == 0


def test_empty_message_with_and_without_the_trailing_space() -> None:
    p = parser()
    out, _ = p.parse(T + b" stdout F \n" + T + b" stderr F\n", 0)
    assert out == [(T_NS, b"", OUT), (T_NS, b"", ERR)]
    assert p.counts.unparsable == 0


@pytest.mark.parametrize("line", [
    b"just some text",
    T + b" stdout",  # no tag
    T,
    T + b" stdin F x",  # not a stream
    T + b" stdout X x",  # not a tag
    T + b" stdout Fx x",
    b" stdout F x",  # empty timestamp
    b"\xff\xfe garbage \x00",
])
def test_missing_fields_and_garbage_ship_unchanged_at_read_time(line: bytes) -> None:
    p = parser()
    out, commit = p.parse(cri(b"ok") + line + b"\n", 0)
    expected = line.decode(errors="replace").encode()
    assert out == [(T_NS, b"ok", OUT), (NOW, expected, OUT)]
    assert p.counts.unparsable == 1 and commit == len(cri(b"ok")) + len(line) + 1


@pytest.mark.parametrize("ts", [
    b"2024-13-15T10:30:00Z",  # month 13
    b"2023-02-29T10:30:00Z",  # not a leap year
    b"2024-01-15T24:00:00Z",
    b"2024-01-15T10:60:00Z",
    b"2024-01-15T10:30:60Z",  # leap seconds are not accepted
    b"2024-01-15T10:30:00.1234567890Z",  # 10 fraction digits
    b"2024-01-15T10:30:00.Z",  # a point without digits
    b"2024-01-15T10:30:00.12a4Z",
    b"2024-01-15T10:30:00.+123Z",
    b"2024-01-15T10:30:00",  # no zone
    b"2024-01-15T10:30:00.5+0100",
    b"2024-01-15T10:30:00.5+24:00",
    b"2024-01-15T10:30:00+01:60",
    b"2024-01-15 10:30:00Z",
    b"0000-01-15T10:30:00Z",
    b"2024-1-15T10:30:00.000Z",
    b"\xd9\xa2024-01-15T10:30:00Z",  # a non-ASCII digit
])
def test_a_bad_timestamp_makes_the_line_unparsable(ts: bytes) -> None:
    p = parser()
    line = ts + b" stdout F msg"
    # a good line first, so that the bad ones also meet a warm seconds cache
    out, _ = p.parse(cri(b"ok") + line + b"\n", 0)
    assert out == [(T_NS, b"ok", OUT), (NOW, line.decode(errors="replace").encode(), OUT)]
    assert p.counts.unparsable == 1


@pytest.mark.parametrize(("ts", "fields", "fraction_ns"), [
    (b"2024-01-15T10:30:00Z", (2024, 1, 15, 10, 30, 0), 0),
    (b"2024-01-15T10:30:00.1Z", (2024, 1, 15, 10, 30, 0), 100_000_000),
    (b"2024-01-15T10:30:00.123Z", (2024, 1, 15, 10, 30, 0), 123_000_000),
    (b"2024-01-15T10:30:00.000123Z", (2024, 1, 15, 10, 30, 0), 123_000),
    (b"2024-01-15T10:30:00.999999999Z", (2024, 1, 15, 10, 30, 0), 999_999_999),
    (b"2024-01-15T10:30:00.000000001Z", (2024, 1, 15, 10, 30, 0), 1),
    (b"2024-01-15T11:30:00.123456789+01:00", (2024, 1, 15, 10, 30, 0), 123_456_789),
    (b"2024-01-15T05:00:00-05:30", (2024, 1, 15, 10, 30, 0), 0),
    (b"2024-01-15T10:30:00.5-00:00", (2024, 1, 15, 10, 30, 0), 500_000_000),
    (b"2024-01-01T00:30:00.25+01:00", (2023, 12, 31, 23, 30, 0), 250_000_000),
    (b"2024-02-29T23:59:59.999999999Z", (2024, 2, 29, 23, 59, 59), 999_999_999),
    (b"1969-12-31T23:59:59.5Z", (1969, 12, 31, 23, 59, 59), 500_000_000),
])
def test_timestamps_are_exact_to_the_nanosecond(ts: bytes, fields: tuple[int, ...],
                                                fraction_ns: int) -> None:
    expected = calendar.timegm(fields) * 10**9 + fraction_ns
    # twice: the second line's seconds come from the cache
    out, _ = parser().parse(cri(b"a", ts=ts) * 2, 0)
    assert out == [(expected, b"a", OUT)] * 2
    out, _ = parser().parse(docker("b\n", ts=ts.decode()) * 2
                            + docker("c\n", ts=ts.decode(), spaced=True), 0)
    assert out == [(expected, b"b", OUT)] * 2 + [(expected, b"c", OUT)]


def test_more_distinct_seconds_than_the_cache_holds_all_parse_right() -> None:
    base = calendar.timegm((2024, 1, 1, 0, 0, 0))
    lines = []
    for s in range(5000):
        y, mo, d, h, mi, sec = time.gmtime(base + s)[:6]
        lines.append(cri(b"x", ts=b"%04d-%02d-%02dT%02d:%02d:%02d.5Z" % (y, mo, d, h, mi, sec)))
    out, _ = parser().parse(b"".join(lines), 0)
    assert [ts for ts, _, _ in out] == [(base + s) * 10**9 + 500_000_000 for s in range(5000)]


# --- partial lines and the commit offset --------------------------------------------------------

def test_partials_join_per_stream_across_calls_with_the_first_parts_timestamp() -> None:
    t2 = b"2024-01-15T10:30:01Z"
    chunks = [
        cri(b"out-1 ", tag=b"P") + cri(b"err-1 ", b"stderr", b"P"),
        cri(b"out-2 ", tag=b"P:x", ts=t2) + cri(b"whole", b"stderr", b"F", ts=t2),
        cri(b"out-3", ts=t2) + cri(b"err-2", b"stderr", ts=t2),
    ]
    entries, _ = run(parser(), chunks)
    assert entries == [(T_NS, b"err-1 whole", ERR),
                       (T_NS, b"out-1 out-2 out-3", OUT),
                       (T_NS + 876543211, b"err-2", ERR)]


def test_commit_offset_holds_at_the_first_pending_part_until_its_full_part_arrives() -> None:
    p = parser()
    done_out, done_err = cri(b"o"), cri(b"e", b"stderr")
    out_p, err_p = cri(b"a", tag=b"P"), cri(b"b", b"stderr", b"P")
    first = done_out + out_p + done_err + err_p
    out, commit = p.parse(first, 1000)
    assert out == [(T_NS, b"o", OUT), (T_NS, b"e", ERR)]
    assert commit == 1000 + len(done_out)  # where the stdout P line starts
    end = 1000 + len(first)
    out, commit = p.parse(b"noise\n", end)
    assert out == [(NOW, b"noise", OUT)]
    assert commit == 1000 + len(done_out)  # nothing after a pending part is committed
    end += len(b"noise\n")
    out, commit = p.parse(cri(b"A"), end)
    assert out == [(T_NS, b"aA", OUT)]
    assert commit == 1000 + len(done_out + out_p + done_err)  # on to the pending stderr part
    end += len(cri(b"A"))
    out, commit = p.parse(cri(b"B", b"stderr"), end)
    assert out == [(T_NS, b"bB", ERR)]
    assert commit == end + len(cri(b"B", b"stderr"))


def test_flush_emits_pending_partials_in_file_order_and_empties_the_parser() -> None:
    p = parser()
    t2 = b"2024-01-15T10:30:01Z"
    p.parse(cri(b"e1", b"stderr", b"P", ts=t2) + cri(b"o1", tag=b"P"), 0)
    p.parse(cri(b"o2", tag=b"P") + cri(b"e2", b"stderr", b"P"), 50)
    assert p.flush() == [(T_NS - 123456789 + 10**9, b"e1e2", ERR),
                         (T_NS, b"o1o2", OUT)]
    assert p.flush() == []
    assert p.parse(cri(b"next"), 200) == ([(T_NS, b"next", OUT)], 200 + len(cri(b"next")))


def test_unparsable_lines_between_parts_do_not_disturb_the_join() -> None:
    entries, _ = run(parser(), [cri(b"a", tag=b"P") + b"garbage\n" + b"\n" + cri(b"b")])
    assert entries == [(NOW, b"garbage", OUT), (T_NS, b"ab", OUT)]


# --- Docker json-file ---------------------------------------------------------------------------

def test_docker_records_and_partial_records_joined_per_stream() -> None:
    p = parser()
    t2 = "2024-01-15T10:30:01.5Z"
    data = (docker("full line\n") + docker("part 1 ", "stderr") + docker("quote \" é\n")
            + docker("part 2 ", "stderr", t2) + docker("part 3\n", "stderr", t2))
    out, commit = p.parse(data, 0)
    assert p.format == "docker"
    assert out == [(T_NS, b"full line", OUT), (T_NS, "quote \" é".encode(), OUT),
                   (T_NS, b"part 1 part 2 part 3", ERR)]
    assert commit == len(data)
    out, commit = p.parse(docker("pending", "stderr"), len(data))
    assert out == [] and commit == len(data)
    assert p.flush() == [(T_NS, b"pending", ERR)]


@pytest.mark.parametrize("record", [
    {"log": "x\n", "stream": "stdout"},
    {"log": "x\n", "time": T.decode()},
    {"stream": "stdout", "time": T.decode()},
    {"log": 5, "stream": "stdout", "time": T.decode()},
    {"log": "x\n", "stream": "stdin", "time": T.decode()},
    {"log": "x\n", "stream": "stdout", "time": 1705314600},
    {"log": "x\n", "stream": "stdout", "time": "yesterday"},
    {"log": "x\n", "stream": ["stdout"], "time": T.decode()},
    {"log": "x\n", "stream": "stdout", "time": T.decode() + "x"},
    {"log": "x\n", "stream": "stdout", "tim": T.decode()},
    ["not", "an", "object"],
])
def test_docker_records_with_missing_or_wrong_fields_are_unparsable(record: object) -> None:
    p = parser()
    line = json.dumps(record, separators=(",", ":")).encode()
    out, _ = p.parse(docker("ok\n") + line + b"\n" + b"{not json\n", 0)
    assert out == [(T_NS, b"ok", OUT), (NOW, line, OUT), (NOW, b"{not json", OUT)]
    assert p.counts.unparsable == 2


def test_docker_records_with_attrs_are_read() -> None:
    line = json.dumps({"log": "x\n", "stream": "stderr", "attrs": {"tag": "a"}, "time": T.decode()},
                      separators=(",", ":")).encode()
    assert parser().parse(line + b"\n", 0)[0] == [(T_NS, b"x", ERR)]


def test_docker_lone_surrogate_escape_is_replaced() -> None:
    p = parser()
    out, _ = p.parse(b'{"log":"a\\ud800b\\n","stream":"stdout","time":"' + T + b'"}\n', 0)
    # the surrogate's three bytes are three invalid sequences to a UTF-8 decoder
    assert out == [(T_NS, "a\ufffd\ufffd\ufffdb".encode(), OUT)]
    assert p.counts.invalid_utf8 == 1


def test_format_is_detected_once_from_the_first_non_blank_line() -> None:
    p = parser()
    out, _ = p.parse(b"\n\n" + docker("d\n") + cri(b"c"), 0)
    assert out == [(T_NS, b"d", OUT), (NOW, cri(b"c")[:-1], OUT)]
    p = parser()
    assert p.parse(b"\n", 0) == ([], 1) and p.format is None
    out, _ = p.parse(cri(b"c") + docker("d\n"), 1)
    assert p.format == "cri"
    assert out == [(T_NS, b"c", OUT), (NOW, docker("d\n")[:-1], OUT)]
    assert p.counts.blank == 1 and p.counts.lines == 3


# --- UTF-8, truncation, blank lines -------------------------------------------------------------

def test_a_multibyte_character_split_across_two_parts_comes_out_intact() -> None:
    euro = "€".encode()  # three bytes
    p = parser()
    entries, _ = run(p, [cri(b"price " + euro[:1], tag=b"P"), cri(euro[1:2], tag=b"P"),
                         cri(euro[2:] + b"5")])
    assert entries == [(T_NS, "price €5".encode(), OUT)]
    assert p.counts.invalid_utf8 == 0


def test_invalid_utf8_is_replaced_and_counted_per_entry() -> None:
    p = parser()
    out, _ = p.parse(cri(b"a\xffb\xc3") + cri("ok é".encode()) + cri(b"\xe2\x82", tag=b"P")
                     + cri(b"x\x80"), 0)
    assert out == [(T_NS, "a\ufffdb\ufffd".encode(), OUT), (T_NS, "ok é".encode(), OUT),
                   (T_NS, "\ufffdx\ufffd".encode(), OUT)]
    assert p.counts.invalid_utf8 == 2


def test_truncation_cuts_at_a_character_boundary_and_counts_once() -> None:
    p = parser(max_line_bytes=10)
    e_acute = "é".encode()
    out, _ = p.parse(cri(b"123456789" + e_acute + b"tail") + cri(b"1234567890")
                     + cri(b"12345678" + e_acute + b"x"), 0)
    assert out == [(T_NS, b"123456789", OUT), (T_NS, b"1234567890", OUT),
                   (T_NS, b"12345678" + e_acute, OUT)]
    assert p.counts.truncated == 2


def test_a_partial_line_past_the_limit_ships_its_head_at_once_and_the_commit_passes_it(
        ) -> None:
    p = parser(max_line_bytes=50)
    chunks = [cri(b"%02d-456789" % i, tag=b"P") for i in range(200)] + [cri(b"end"), cri(b"next")]
    entries, commits = run(p, chunks)
    # parts are joined until past the limit (six of nine bytes), and that head is cut to 50
    head = b"".join(b"%02d-456789" % i for i in range(6))[:50]
    assert entries == [(T_NS, head, OUT), (T_NS, b"next", OUT)]
    ends = list(itertools.accumulate(map(len, chunks)))
    assert commits[:5] == [0] * 5  # pending until its head is shipped...
    assert commits[5:] == ends[5:]  # ...then nothing of it holds the commit back
    assert p.counts.truncated == 1 and p.counts.lines == 202
    later = sum(len(b"%02d-456789" % i) for i in range(6, 200)) + len(b"end")
    assert p.counts.discarded == later  # the parts after the head, up to the last
    assert p.flush() == []


def test_docker_records_without_newline_past_the_limit_ship_their_head_and_drop_the_rest(
        ) -> None:
    p = parser(max_line_bytes=20)
    records = [docker("a" * 15, "stderr"), docker("b" * 15, "stderr"), docker("c" * 15, "stderr"),
               docker("d\n", "stderr"), docker("after\n", "stderr")]
    entries, commits = run(p, records)
    assert entries == [(T_NS, b"a" * 15 + b"b" * 5, ERR), (T_NS, b"after", ERR)]
    ends = list(itertools.accumulate(map(len, records)))
    assert commits == [0, *ends[1:]]  # pending only until the second record ships its head
    assert p.counts.truncated == 1 and p.counts.discarded == 15 + 1


def test_a_dropped_line_on_one_stream_leaves_the_other_streams_join_and_commit_alone() -> None:
    p = parser(max_line_bytes=10)
    overlong, pending = cri(b"o" * 11, tag=b"P"), cri(b"e1", b"stderr", b"P")
    out, commit = p.parse(overlong + pending, 0)
    assert out == [(T_NS, b"o" * 10, OUT)]
    assert commit == len(overlong)  # held where the stderr part starts, not at the stdout one
    rest = cri(b"more", tag=b"P") + cri(b"e2", b"stderr") + cri(b"tail") + cri(b"new")
    out, commit = p.parse(rest, commit + len(pending))
    assert out == [(T_NS, b"e1e2", ERR), (T_NS, b"new", OUT)]
    assert commit == len(overlong + pending + rest)
    assert p.counts.discarded == len(b"moretail")


def test_a_restart_inside_a_dropped_line_reads_its_rest_as_a_line_of_its_own() -> None:
    first = parser(max_line_bytes=10)
    head = cri(b"0123456789ab", tag=b"P")
    out, commit = first.parse(head, 0)
    assert out == [(T_NS, b"0123456789", OUT)] and commit == len(head)
    again = parser(max_line_bytes=10)  # resumes at the commit, knowing nothing of the line
    out, _ = again.parse(cri(b"cd", tag=b"P") + cri(b"ef"), commit)
    assert out == [(T_NS, b"cdef", OUT)]


def test_each_joined_line_has_the_whole_limit_to_itself() -> None:
    p = parser(max_line_bytes=50)
    entries, _ = run(p, [cri(b"a" * 30, tag=b"P"), cri(b"b" * 10)] * 2)
    assert entries == [(T_NS, b"a" * 30 + b"b" * 10, OUT)] * 2
    assert p.counts.truncated == 0


def test_the_partial_buffer_stays_bounded_while_parts_keep_coming() -> None:
    p = parser(max_line_bytes=1024)
    part = cri(b"x" * 10_000, tag=b"P")
    shipped: list[Entry] = []
    tracemalloc.start()
    try:
        held = tracemalloc.get_traced_memory()[0]
        for i in range(200):
            shipped += p.parse(part, i * len(part))[0]
        held = tracemalloc.get_traced_memory()[0] - held
    finally:
        tracemalloc.stop()
    assert held < 50_000  # two 10 kB parts at most, not 200
    assert shipped == [(T_NS, b"x" * 1024, OUT)] and p.flush() == []


def test_invalid_bytes_that_grow_when_replaced_are_still_cut_to_the_limit() -> None:
    p = parser(max_line_bytes=8)
    out, _ = p.parse(cri(b"\xff" * 8) + b"\xfe" * 20 + b"\n", 0)
    assert out == [(T_NS, "\ufffd\ufffd".encode(), OUT), (NOW, "\ufffd\ufffd".encode(),
                                                                OUT)]
    assert p.counts.truncated == 2 and p.counts.invalid_utf8 == 2


def test_the_head_of_the_last_bad_line_is_kept_as_a_sample() -> None:
    p = parser(max_line_bytes=100)
    p.parse(cri(b"fine"), 0)
    assert p.bad_sample == b""
    junk = b"\x00junk " + b"j" * 200
    p.parse(junk + b"\n", 0)
    assert p.bad_sample == junk[:80]  # unparsable: the raw line
    p.parse(cri(b"bad \xff utf8"), 0)
    assert p.bad_sample == b"bad \xff utf8"  # invalid UTF-8: the message as read
    p.parse(cri(b"L" * 150), 0)
    assert p.bad_sample == b"L" * 80  # truncated
    p.parse(cri(b"fine again"), 0)
    assert p.bad_sample == b"L" * 80  # until the next bad line


def test_blank_lines_are_skipped_and_counted() -> None:
    p = parser()
    out, commit = p.parse(b"\n" + cri(b"a") + b"\n\n", 0)
    assert out == [(T_NS, b"a", OUT)] and commit == len(cri(b"a")) + 3
    assert p.counts.blank == 3 and p.counts.lines == 4
    assert p.parse(b"", 99) == ([], 99)


# --- properties ---------------------------------------------------------------------------------

def chunked(lines: list[bytes], cuts: list[int]) -> list[bytes]:
    """Whole lines grouped into chunks, cut before the line indexes in `cuts`."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(lines)}), len(lines)]
    return [b"".join(lines[a:b]) for a, b in itertools.pairwise(bounds)]


no_newline = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b""))
line_chars = st.characters(exclude_characters="\n", exclude_categories=["Cs"])  # encodable
text = st.text(line_chars, max_size=12)
timestamps = st.sampled_from([T, b"2024-01-15T10:30:00Z", b"2024-01-15T10:30:00.5+02:00",
                              b"2024-01-15T10:30:01.000001Z"])
KINDS = ("cri_full", "cri_partial", "cri_bad_ts", "cri_invalid_utf8", "docker_full",
         "docker_partial", "docker_missing_field", "garbage", "blank")


@st.composite
def mixed_lines(draw: st.DrawFn, kinds: tuple[str, ...] = KINDS) -> list[bytes]:
    """Lines of every kind; each non-blank one carries a unique <id:N> token to trace it."""
    lines = []
    for i, kind in enumerate(draw(st.lists(st.sampled_from(kinds), max_size=40))):
        token = f"<id:{i}>"
        stream = draw(st.sampled_from(["stdout", "stderr"]))
        msg = draw(text) + token + draw(text)
        ts = draw(timestamps)
        if kind in ("cri_full", "cri_partial", "cri_bad_ts"):
            tag = b"F" if kind != "cri_partial" else b"P"
            lines.append(cri(msg.encode(), stream.encode(), tag,
                             ts if kind != "cri_bad_ts" else b"2024-02-30T00:00:00Z"))
        elif kind == "cri_invalid_utf8":
            lines.append(cri(draw(no_newline) + token.encode(), stream.encode(), ts=ts))
        elif kind in ("docker_full", "docker_partial"):
            lines.append(docker(msg + ("\n" if kind == "docker_full" else ""), stream,
                                ts.decode()))
        elif kind == "docker_missing_field":
            lines.append(json.dumps({"log": msg, "time": ts.decode()}).encode() + b"\n")
        elif kind == "garbage":
            lines.append(draw(no_newline) + token.encode() + draw(no_newline) + b"\n")
        else:
            lines.append(b"\n")
    return lines


def ids(entries: list[Entry]) -> list[int]:
    return [int(m) for _, line, _ in entries for m in re.findall(rb"<id:(\d+)>", line)]


def check_line(line: bytes, max_line_bytes: int) -> None:
    line.decode()  # valid UTF-8
    assert len(line) <= max_line_bytes


@settings(max_examples=200, deadline=None)
@given(st.lists(no_newline, max_size=30), st.lists(st.integers(0, 30)), st.integers(1, 64))
def test_random_bytes_never_raise_and_come_out_valid_and_bounded(
        raw: list[bytes], cuts: list[int], max_line_bytes: int) -> None:
    lines = [r + b"\n" for r in raw]
    p = FileParser(max_line_bytes, OUT, ERR, now_ns=lambda: NOW)
    entries, _ = run(p, chunked(lines, cuts))
    for _, line, stream in entries + p.flush():
        check_line(line, max_line_bytes)
        assert stream in (OUT, ERR)
    assert p.counts.lines == len(lines)
    assert p.counts.blank == raw.count(b"")


@settings(max_examples=300, deadline=None)
@given(mixed_lines(), st.lists(st.integers(0, 40)), st.integers(0, 10_000))
def test_every_raw_line_is_blank_or_in_exactly_one_entry_and_commits_are_safe(
        lines: list[bytes], cuts: list[int], offset: int) -> None:
    big = 1 << 20  # no truncation: every id token survives
    p = FileParser(big, OUT, ERR, now_ns=lambda: NOW)
    starts = [offset + sum(map(len, lines[:i])) for i in range(len(lines))]
    returned: list[int] = []
    last_commit, end = offset, offset
    for chunk in chunked(lines, cuts):
        out, commit = p.parse(chunk, end)
        end += len(chunk)
        returned += ids(out)
        for _, line, _ in out:
            check_line(line, big)
        # every line wholly before the commit offset is in a returned entry ...
        assert last_commit <= commit <= end
        assert {i for i, s in enumerate(starts) if s < commit and lines[i] != b"\n"} <= set(
            returned)
        # ... and a commit short of the end is the start of a line still pending
        if commit < end:
            assert starts.index(commit) not in returned
        last_commit = commit
    flushed = p.flush()
    for _, line, _ in flushed:
        check_line(line, big)
    returned += ids(flushed)
    assert sorted(returned) == [i for i, line in enumerate(lines) if line != b"\n"]
    assert p.counts.lines == len(lines)
    assert p.counts.blank == lines.count(b"\n")


@settings(max_examples=200, deadline=None)
@given(mixed_lines(), st.lists(st.integers(0, 40)), st.lists(st.integers(0, 40)),
       st.integers(8, 64))
def test_chunking_does_not_change_the_output(lines: list[bytes], cuts_a: list[int],
                                             cuts_b: list[int], max_line_bytes: int) -> None:
    def everything(cuts: list[int]) -> tuple[list[Entry], tuple[int, ...]]:
        p = FileParser(max_line_bytes, OUT, ERR, now_ns=lambda: NOW)
        entries, _ = run(p, chunked(lines, cuts))
        c = p.counts
        return entries + p.flush(), (c.lines, c.unparsable, c.truncated, c.invalid_utf8, c.blank)

    assert everything(cuts_a) == everything(cuts_b)


@settings(max_examples=200, deadline=None)
@given(mixed_lines(("cri_full", "cri_partial", "blank")), st.lists(st.integers(0, 40)),
       st.integers(0, 40))
def test_restarting_from_the_commit_offset_loses_no_line(
        lines: list[bytes], cuts: list[int], crash_after: int) -> None:
    chunks = chunked(lines, cuts)
    first = parser()
    before, commits = run(first, chunks[:crash_after])
    commit = commits[-1] if commits else 0
    data = b"".join(lines)
    after = parser()
    rest, _ = after.parse(data[commit:], commit)
    assert set(ids(before + rest + after.flush())) == {
        i for i, line in enumerate(lines) if line != b"\n"}


json_text = st.text(st.characters(exclude_categories=["Cs"]) | st.sampled_from('"\\\n\t/'),
                   max_size=20)


@settings(max_examples=300, deadline=None)
@given(json_text, st.sampled_from(["stdout", "stderr"]), timestamps, st.booleans())
def test_docker_records_read_the_same_with_or_without_json_loads(
        log: str, stream: str, ts: bytes, ensure_ascii: bool) -> None:
    def parse(spaced: bool) -> list[Entry]:
        record = {"log": log, "stream": stream, "time": ts.decode()}
        separators = (", ", ": ") if spaced else (",", ":")
        line = json.dumps(record, separators=separators, ensure_ascii=ensure_ascii).encode()
        p = parser()
        return p.parse(line + b"\n", 0)[0] + p.flush()

    assert parse(spaced=False) == parse(spaced=True)


@settings(max_examples=300, deadline=None)
@given(no_newline | json_text.map(lambda s: s.replace("\n", "").encode()),
       st.sampled_from([b"stdout", b"stderr", b"stdin"]))
def test_near_miss_docker_lines_are_records_exactly_when_json_says_so(
        log: bytes, stream: bytes) -> None:
    line = b'{"log":"' + log + b'","stream":"' + stream + b'","time":"' + T + b'"}'
    try:
        record = json.loads(line, strict=False)
        assert record["stream"] in ("stdout", "stderr")
        text = record["log"].removesuffix("\n").encode("utf-8", "surrogatepass")
        expected = [(T_NS, text.decode(errors="replace").encode(),
                     OUT if record["stream"] == "stdout" else ERR)]
    except (ValueError, KeyError, AssertionError):
        expected = [(NOW, line.decode(errors="replace").encode(), OUT)]
    p = parser(max_line_bytes=1 << 20)
    out, _ = p.parse(line + b"\n", 0)
    assert out + p.flush() == expected


@settings(max_examples=300, deadline=None)
@given(st.text(line_chars, max_size=40), st.lists(st.integers(0, 200)), st.integers(1, 48))
def test_valid_utf8_is_cut_to_the_longest_whole_character_prefix(
        msg: str, cuts: list[int], max_line_bytes: int) -> None:
    raw = msg.encode()
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(raw)}), len(raw)]
    parts = [raw[a:b] for a, b in itertools.pairwise(bounds)]
    lines = [cri(part, tag=b"P") for part in parts[:-1]] + [cri(parts[-1])]
    p = parser(max_line_bytes)
    entries, _ = run(p, lines)
    expected = max((msg[:k].encode() for k in range(len(msg) + 1)
                    if len(msg[:k].encode()) <= max_line_bytes), key=len)
    assert entries == [(T_NS, expected, OUT)]
    assert p.counts.truncated == (len(raw) > max_line_bytes)
    assert p.counts.invalid_utf8 == 0


def test_a_long_running_file_keeps_a_small_timestamp_cache() -> None:
    """Hours of logs (a distinct second per line here) must not grow a parser without bound:
    a node tails hundreds of files for days."""
    parser = FileParser(1024, OUT, ERR)
    data = b"".join(
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_700_000_000 + i)).encode()
        + b".5Z stdout F x\n" for i in range(20_000))
    parser.parse(data[: len(data) // 2], 0)  # warm up: allocations that stay anyway
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    entries, _ = parser.parse(data[len(data) // 2:], 0)
    del entries
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # Up to ~130 KB is CPython's free list of 2,000 spare tuples; 4,096 cached seconds were ~650 KB.
    assert retained < 300_000, f"{retained} bytes kept after parsing 10,000 seconds of lines"


def test_lines_carry_the_tags_given_and_a_retag_applies_to_pending_partials() -> None:
    out_a, err_a, out_b, err_b = (stream(n) for n in ("out-a", "err-a", "out-b", "err-b"))
    p = FileParser(1024, out_a, err_a, now_ns=lambda: NOW)
    entries, _ = p.parse(b"2024-01-01T00:00:00Z stdout F one\n"
                         b"2024-01-01T00:00:00Z stderr P two \n", 0)
    assert [e[2] for e in entries] == [out_a]
    p.retag(out_b, err_b)  # the pod's metadata arrived: its streams changed
    entries, _ = p.parse(b"2024-01-01T00:00:01Z stderr F halves\ngarbage\n", 0)
    assert [(e[1], e[2]) for e in entries] == [(b"two halves", err_b), (b"garbage", out_b)]
