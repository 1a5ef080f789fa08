"""The parse stages (json, logfmt, regex, timestamp) and parse_timestamp."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipper.model import FileId, Ticket
from shipper.pipeline.config import JsonConfig, LogfmtConfig, RegexConfig, TimestampConfig
from shipper.pipeline.parsers import (
    JsonSpec,
    LogfmtSpec,
    RegexSpec,
    TimestampSpec,
    logfmt,
    parse_timestamp,
)
from shipper.pipeline.record import Env, Record, RecordStage

TS = 1_000  # the time a record was read with, in tests


def run(stage: RecordStage, line: str, fields: dict[str, str] | None = None
        ) -> tuple[Record, Env]:
    record, env = Record(TS, line, Ticket(FileId(1, 1), 0), fields), Env(0.0, 0)
    assert stage.apply(record, env) is True  # these stages never drop
    return record, env


APP_LINE = ('{"time":"2024-05-01T12:00:00.123456Z","level":"warn","msg":"retrying",'
            '"attempt":3,"backoff_s":1.50,"tiny":1e-7,"ok":false,"err":null,'
            '"user":{"id":7,"roles":["admin","dev"]},"log.origin":"db.go:42","items":[{"sku":"A1"}]}')


# -- json ------------------------------------------------------------------------------------

def test_json_named_paths_render_values_as_their_json_text() -> None:
    spec = JsonSpec(JsonConfig(fields=(
        ("level", "level"), ("uid", "user.id"), ("role", "user.roles.1"), ("sku", "items.0.sku"),
        ("user", "user"), ("roles", "user.roles"), ("backoff", "backoff_s"), ("tiny", "tiny"),
        ("ok", "ok"), ("err", "err"), ("origin", "log.origin"), ("absent", "user.name"),
        ("past_end", "items.5.sku"))))
    record, env = run(spec, APP_LINE)
    assert record.fields == {
        "level": "warn", "uid": "7", "role": "dev", "sku": "A1",
        "user": '{"id":7,"roles":["admin","dev"]}', "roles": '["admin","dev"]',
        "backoff": "1.50", "tiny": "1e-7",  # as written, not as a float would print them
        "ok": "false", "err": "null", "origin": "db.go:42"}  # a missing path sets nothing
    assert all(type(v) is str for v in record.fields.values())
    assert (record.line, record.ts, env.failed) == (APP_LINE, TS, {})


def test_json_without_fields_extracts_every_leaf_under_its_dotted_path() -> None:
    record, _ = run(JsonSpec(JsonConfig()), '{"user":{"id":7,"tags":["a",1],"meta":{}},"n":2}')
    assert record.fields == {"user.id": "7", "user.tags": '["a",1]', "user.meta": "{}", "n": "2"}


def test_json_line_and_timestamp_come_from_paths() -> None:
    timestamp = TimestampConfig(source="time", format="rfc3339")
    record, env = run(JsonSpec(JsonConfig(timestamp=timestamp, line="msg")), APP_LINE)
    assert record.line == "retrying"
    assert record.ts == 1_714_564_800_123_456_000
    assert "msg" not in (record.fields or {})  # it became the line
    assert record.fields and record.fields["level"] == "warn" and env.failed == {}
    named, _ = run(JsonSpec(JsonConfig(fields=(("msg", "msg"),), line="msg")), APP_LINE)
    assert (named.line, named.fields) == ("retrying", {"msg": "retrying"})


def test_json_line_can_be_an_object_which_then_is_not_flattened() -> None:
    record, _ = run(JsonSpec(JsonConfig(line="user")), '{"user":{"id":7},"level":"info"}')
    assert (record.line, record.fields) == ('{"id":7}', {"level": "info"})


def test_json_unparsable_timestamp_keeps_the_time_and_the_fields() -> None:
    spec = JsonSpec(JsonConfig(timestamp=TimestampConfig(source="level")))
    record, env = run(spec, APP_LINE)
    assert record.ts == TS and env.failed == {"timestamp": 1}
    assert record.fields and record.fields["msg"] == "retrying"


@pytest.mark.parametrize("line", [
    "GET /healthz 200", '"a JSON string"', "42", '[{"a":1}]', '{"a":1', '{"a":1} trailing',
    '{"a":NaN}', '{"a":Infinity}', "{" * 100_000, '{"a":' * 100_000, ""])
def test_json_failure_leaves_the_record_as_it_was(line: str) -> None:
    record, env = run(JsonSpec(JsonConfig(line="a", timestamp=TimestampConfig("a"))), line)
    assert (record.line, record.ts, record.fields, env.failed) == (line, TS, None, {"json": 1})


def test_json_nested_deeper_than_the_stack_fails_without_raising() -> None:
    line = '{"a":' * 700 + "1" + "}" * 700  # parses; rendered as a field, it would recurse
    record, env = run(JsonSpec(JsonConfig(fields=(("a", "a"),))), line)  # 1400 frames deep
    assert (record.fields, env.failed) == (None, {"json": 1})


def test_json_tolerates_surrounding_whitespace_and_raw_control_characters() -> None:
    record, env = run(JsonSpec(JsonConfig()), '  {"msg":"tab\there"}\r\n')
    assert record.fields == {"msg": "tab\there"} and env.failed == {}


def test_json_parses_a_source_field_and_fails_when_it_is_missing() -> None:
    spec = JsonSpec(JsonConfig(source="payload", fields=(("id", "id"),)))
    record, env = run(spec, "plain", {"payload": '{"id":"x1"}'})
    assert record.fields == {"payload": '{"id":"x1"}', "id": "x1"} and env.failed == {}
    record, env = run(spec, '{"id":"from the line"}')
    assert record.fields is None and env.failed == {"json": 1}


def test_json_lone_surrogate_escapes_become_replacement_characters() -> None:
    record, _ = run(JsonSpec(JsonConfig(line="m")), '{"m":"a\\ud800b","k\\udfff":"v"}')
    assert record.line == "a\ufffdb" and record.fields == {"k\ufffd": "v"}
    record.line.encode()  # what the runner does next: must not raise


def test_json_merges_into_existing_fields_the_later_value_winning() -> None:
    record, _ = run(JsonSpec(JsonConfig()), '{"a":"new","b":"2"}', {"a": "old", "c": "3"})
    assert record.fields == {"a": "new", "c": "3", "b": "2"}


json_scalars = (st.none() | st.booleans() | st.integers() | st.text()
                | st.floats(allow_nan=False, allow_infinity=False))
json_keys = st.text().filter(lambda k: "." not in k)  # a dot would make two paths one name
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(json_keys, inner, max_size=3), max_leaves=12)


def reference_leaves(obj: dict[str, object], prefix: str = "") -> dict[str, str]:
    """What every-leaf extraction must give, written independently of the stage."""
    out: dict[str, str] = {}
    for key, value in obj.items():
        if isinstance(value, dict) and value:
            out.update(reference_leaves(value, f"{prefix}{key}."))
        elif isinstance(value, str):
            out[prefix + key] = value
        else:  # the JSON text json.dumps wrote for it
            out[prefix + key] = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return out


@given(st.dictionaries(json_keys, json_values, max_size=6), st.booleans())
def test_json_any_object_round_trips_its_leaves(obj: dict[str, object], ascii: bool) -> None:
    line = json.dumps(obj, ensure_ascii=ascii)
    leaves = reference_leaves(obj)
    record, env = run(JsonSpec(JsonConfig()), line)
    assert (record.fields or {}) == leaves and env.failed == {}
    # a path names the value the every-leaf extraction names so
    named, _ = run(JsonSpec(JsonConfig(fields=tuple((f"f{i}", name) for i, name
                                                    in enumerate(leaves)))), line)
    assert list((named.fields or {}).values()) == list(leaves.values())


# -- logfmt ----------------------------------------------------------------------------------

LOGFMT_LINE = ('ts=2024-05-01T12:00:00Z level=info msg="GET /api \\"items\\"\\n" status=200 '
               'cached bytes= level=warn path="/x?a=b"')


def test_logfmt_every_key_with_go_logfmt_values() -> None:
    record, env = run(LogfmtSpec(LogfmtConfig()), LOGFMT_LINE + "  ")
    assert record.fields == {"ts": "2024-05-01T12:00:00Z", "level": "warn",  # the later wins
                             "msg": 'GET /api "items"\n', "status": "200", "cached": "",
                             "bytes": "", "path": "/x?a=b"}
    assert env.failed == {}


def test_logfmt_named_keys_line_and_timestamp() -> None:
    spec = LogfmtSpec(LogfmtConfig(fields=(("status", "status"), ("absent", "nope")),
                                   timestamp=TimestampConfig("ts"), line="msg"))
    record, env = run(spec, LOGFMT_LINE)
    assert record.fields == {"status": "200"}
    assert (record.line, record.ts, env.failed) == ('GET /api "items"\n', 1_714_564_800 * 10**9,
                                                    {})
    every, _ = run(LogfmtSpec(LogfmtConfig(line="msg")), LOGFMT_LINE)
    assert every.fields and "msg" not in every.fields and every.line.startswith("GET")


@pytest.mark.parametrize("line", [
    "GET /healthz 200",  # no key=value pair: go-logfmt would make bare keys of every word
    'a=1 b="unterminated', 'a=1 b=x"y', "a=1 =b", 'a=1 "k"=v', "a==1", "a=b=c",
    'a="bad \\x escape"', "k\ufffd=v", ""])
def test_logfmt_failure_leaves_the_record_as_it_was(line: str) -> None:
    record, env = run(LogfmtSpec(LogfmtConfig()), line)
    assert (record.line, record.fields, env.failed) == (line, None, {"logfmt": 1})


@pytest.mark.parametrize(("text", "pairs"), [  # go-logfmt's own decoder test cases
    ("x= ", [("x", "")]), ("y=", [("y", "")]), ("y", [("y", "")]), ("y=f", [("y", "f")]),
    ('y="\\tf"', [("y", "\tf")]),
    ('a=1 b="bar" ƒ=2h3s r="esc\\t" d x=sf   ',
     [("a", "1"), ("b", "bar"), ("ƒ", "2h3s"), ("r", "esc\t"), ("d", ""), ("x", "sf")]),
    ("y=f  \n\x1e y=g", [("y", "f"), ("y", "g")]),
    ("y= d y=g", [("y", ""), ("d", ""), ("y", "g")]),
    ('y="f\\n"y=g', [("y", "f\n"), ("y", "g")])])
def test_logfmt_decodes_as_go_logfmt(text: str, pairs: list[tuple[str, str]]) -> None:
    assert list(logfmt(text)) == pairs


@pytest.mark.parametrize("text", [
    'a=1 b=x"y c=2', 'a=1 b"c=2', "a=1 b==2", 'a=1 b="open c=2', 'a=1 "b"=2', "a=1 =2"])
def test_logfmt_yields_the_pairs_before_a_syntax_error_then_raises(text: str) -> None:
    pairs = []
    with pytest.raises(ValueError):
        for pair in logfmt(text):
            pairs.append(pair)
    assert pairs == [("a", "1")]  # not b=x: go-logfmt does not report the pair it failed in


logfmt_keys = st.text(st.characters(codec="utf-8", min_codepoint=33,  # lines are UTF-8
                                    exclude_characters='="\ufffd'), min_size=1)


def quote(value: str) -> str:
    bare = value and all(c > " " and c not in '="' for c in value)
    return value if bare else json.dumps(value, ensure_ascii=False)


@given(st.lists(st.tuples(logfmt_keys, st.text()), min_size=1, max_size=8),
       st.sampled_from([" ", "  ", "\t"]))
def test_logfmt_generated_pairs_round_trip(pairs: list[tuple[str, str]], sep: str) -> None:
    line = sep.join(f"{key}={quote(value)}" for key, value in pairs)
    assert list(logfmt(line)) == pairs
    record, env = run(LogfmtSpec(LogfmtConfig()), line)
    assert record.fields == dict(pairs) and env.failed == {}


# -- regex -----------------------------------------------------------------------------------

ACCESS = '10.1.2.3 - - [01/May/2024:12:00:00 +0000] "GET /api/items HTTP/1.1" 200 512'
ACCESS_RE = (r'^(?P<ip>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+)'
             r'[^"]*" (?P<status>\d{3}) (?P<bytes>\d+)(?: "(?P<referer>[^"]*)")?')


def test_regex_every_named_group_that_took_part() -> None:
    record, env = run(RegexSpec(RegexConfig(expression=ACCESS_RE)), ACCESS)
    assert record.fields == {"ip": "10.1.2.3", "time": "01/May/2024:12:00:00 +0000",
                             "method": "GET", "path": "/api/items", "status": "200",
                             "bytes": "512"}  # referer did not take part: not set
    assert (record.line, env.failed) == (ACCESS, {})


def test_regex_named_fields_line_and_timestamp() -> None:
    spec = RegexSpec(RegexConfig(expression=ACCESS_RE, fields=(("code", "status"),),
                                 timestamp=TimestampConfig("time", "%d/%b/%Y:%H:%M:%S %z"),
                                 line="path"))
    record, env = run(spec, ACCESS)
    assert (record.fields, record.line) == ({"code": "200"}, "/api/items")
    assert record.ts == 1_714_564_800 * 10**9 and env.failed == {}
    every, _ = run(RegexSpec(RegexConfig(expression=ACCESS_RE, line="path")), ACCESS)
    assert every.fields and "path" not in every.fields


def test_regex_without_a_match_fails() -> None:
    record, env = run(RegexSpec(RegexConfig(expression=ACCESS_RE)), "not an access log line")
    assert (record.fields, env.failed) == (None, {"regex": 1})


# -- timestamp -------------------------------------------------------------------------------

def test_timestamp_stage_reads_a_field() -> None:
    spec = TimestampSpec(TimestampConfig(source="t", format="unix_ms"))
    assert run(spec, "x", {"t": "1714564800123"})[0].ts == 1_714_564_800_123_000_000
    record, env = run(spec, "x", {"t": "yesterday"})
    assert (record.ts, env.failed) == (TS, {"timestamp": 1})
    record, env = run(spec, "x")  # no such field: nothing to do, nothing failed
    assert (record.ts, env.failed) == (TS, {})


@pytest.mark.parametrize(("value", "fmt", "ns"), [
    ("2024-05-01T12:00:00Z", "rfc3339", 1_714_564_800 * 10**9),
    ("2024-05-01t12:00:00.5z", "rfc3339", 1_714_564_800_500_000_000),
    ("2024-05-01 14:00:00.123456789+02:00", "rfc3339", 1_714_564_800_123_456_789),
    ("2024-05-01T12:00:00.1234567891234-00:30", "rfc3339", 1_714_566_600_123_456_789),
    ("1969-12-31T23:59:59.999999999Z", "rfc3339", -1),
    ("1714564800", "unix", 1_714_564_800 * 10**9),
    ("1714564800.123456789", "unix", 1_714_564_800_123_456_789),
    ("1.7145648e9", "unix", 1_714_564_800 * 10**9),
    ("-1.5", "unix", -1_500_000_000),
    ("1714564800123", "unix_ms", 1_714_564_800_123_000_000),
    ("1714564800123456.7", "unix_us", 1_714_564_800_123_456_700),
    ("1714564800123456789", "unix_ns", 1_714_564_800_123_456_789),
    ("01/May/2024:14:00:00 +0200", "%d/%b/%Y:%H:%M:%S %z", 1_714_564_800 * 10**9),
    ("2024-05-01 12:00:00,250", "%Y-%m-%d %H:%M:%S,%f", 1_714_564_800_250_000_000),
])
def test_parse_timestamp(value: str, fmt: str, ns: int) -> None:
    assert parse_timestamp(value, fmt) == ns


@pytest.mark.parametrize(("value", "fmt"), [
    ("2024-13-01T00:00:00Z", "rfc3339"), ("2024-02-30T00:00:00Z", "rfc3339"),
    ("2024-05-01T24:00:00Z", "rfc3339"), ("2024-05-01T12:60:00Z", "rfc3339"),
    ("2024-05-01T12:00:60Z", "rfc3339"), ("2024-05-01T12:00:00+24:00", "rfc3339"),
    ("2024-05-01T12:00:00", "rfc3339"), ("0000-01-01T00:00:00Z", "rfc3339"),
    ("2024-05-01T12:00:00Z ", "rfc3339"), ("\uff12\uff10\uff12\uff14-05-01T12:00:00Z", "rfc3339"),
    ("1714564800123", "unix"),  # milliseconds read as seconds: the year 56000
    ("NaN", "unix"), ("1_000", "unix"), ("1e999999999", "unix"), ("", "unix_ms"),
    ("12", "%Y-%m-%d"), ("2024-05-01", "%Q"),
])
def test_parse_timestamp_refuses(value: str, fmt: str) -> None:
    assert parse_timestamp(value, fmt) is None


NS_RANGE = st.integers(-62_135_596_800 * 10**9, 253_402_300_799 * 10**9)  # years 1-9999


@given(NS_RANGE, st.integers(0, 9), st.integers(-23 * 60 - 59, 23 * 60 + 59), st.booleans())
def test_rfc3339_round_trips(ns: int, digits: int, offset_min: int, space: bool) -> None:
    ns -= ns % 10 ** (9 - digits)  # what `digits` fraction digits can hold
    seconds, frac = divmod(ns, 10**9)
    zone = timezone(timedelta(minutes=offset_min))
    local = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    try:
        local = local.astimezone(zone)
    except OverflowError:  # the offset pushes it past year 1 or 9999
        return
    text = (f"{local.year:04d}-{local.month:02d}-{local.day:02d}{' ' if space else 'T'}"
            f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}")
    if digits:
        text += "." + f"{frac:09d}"[:digits]
    hours, minutes = divmod(abs(offset_min), 60)
    text += f"{'-' if offset_min < 0 else '+'}{hours:02d}:{minutes:02d}" if offset_min else "Z"
    assert parse_timestamp(text, "rfc3339") == ns


@given(NS_RANGE, st.sampled_from([("unix", 9), ("unix_ms", 6), ("unix_us", 3),
                                  ("unix_ns", 0)]), st.integers(0, 9))
def test_unix_formats_round_trip(ns: int, unit: tuple[str, int], digits: int) -> None:
    fmt, scale = unit
    digits = min(digits, scale)
    ns -= ns % 10 ** (scale - digits)
    whole, frac = divmod(abs(ns), 10**scale)
    text = ("-" if ns < 0 else "") + str(whole)
    if digits:
        text += "." + f"{frac:0{scale}d}"[:digits]
    assert parse_timestamp(text, fmt) == ns


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_strptime_round_trips_naive_as_utc(when: datetime) -> None:
    ns = ((when - datetime(1970, 1, 1)) // timedelta(microseconds=1)) * 1000
    text = when.isoformat(timespec="microseconds")  # strftime writes year 999 as "999"
    assert parse_timestamp(text, "%Y-%m-%dT%H:%M:%S.%f") == ns
