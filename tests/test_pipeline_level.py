"""The level stage: Loki's detected_level, from a field or detected from the line."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shipper.model import FileId, Ticket
from shipper.pipeline.config import LEVELS, LevelConfig
from shipper.pipeline.level import LevelSpec, detect_level
from shipper.pipeline.record import Env, Record


def level_of(line: str, fields: dict[str, str] | None = None,
             config: LevelConfig | None = None) -> str:
    record = Record(0, line, Ticket(FileId(1, 1), 0), fields)
    assert LevelSpec(config or LevelConfig()).apply(record, Env(0.0, 0)) is True
    assert record.fields is not None and record.line == line
    return record.fields["detected_level"]


# Loki's normalizeLogLevel...
LOKI_NAMES = {"trace": "trace", "trc": "trace", "debug": "debug", "dbg": "debug",
              "info": "info", "inf": "info", "information": "info", "warn": "warn",
              "wrn": "warn", "warning": "warn", "error": "error", "err": "error",
              "critical": "critical", "fatal": "fatal"}
# ...and the other spellings real loggers use
MORE_NAMES = {"trce": "trace", "verbose": "trace", "finer": "trace", "finest": "trace",
              "dbug": "debug", "fine": "debug", "notice": "info", "eror": "error",
              "fail": "error", "severe": "error", "crit": "critical", "panic": "fatal",
              "dpanic": "fatal", "emerg": "critical", "emergency": "critical",
              "alert": "critical"}
NAMES = {**LOKI_NAMES, **MORE_NAMES}
# Loki's line scan words: in any case, standing alone
WORDS = {"trace": "trace", "debug": "debug", "fatal": "fatal", "critical": "critical",
         "error": "error", "err": "error", "warning": "warn", "warn": "warn", "info": "info"}
LEVEL_KEYS = ("level", "LEVEL", "Level", "log.level", "severity", "SEVERITY", "Severity",
              "SeverityText", "lvl", "LVL", "Lvl", "severity_text", "Severity_Text",
              "SEVERITY_TEXT")
KEYED_SHAPES = {
    "json": lambda k, v: json.dumps({"ts": "2024-05-01T12:00:00Z", k: v, "msg": "done"}),
    "json nested": lambda k, v: json.dumps({"ts": 1, "log": {k: v}, "msg": "done"}),
    "logfmt": lambda k, v: f'ts=2024-05-01T12:00:00Z {k}={v} msg="request done"',
    "logfmt quoted": lambda k, v: f'ts=2024-05-01T12:00:00Z {k}="{v}" msg=done',
    "logfmt any case": lambda k, v: f"ts=1 {k.swapcase()}={v.upper()} msg=done",
    "field": lambda k, v: "request done",  # the value is in an extracted field
}
WORD_SHAPES = {
    "bracket": lambda w: f"2024-05-01 12:00:00 [{w.upper()}] request done",
    "bracket lower": lambda w: f"[{w}] request done",
    "colon": lambda w: f"{w.upper()}: request done",
    "colon lower": lambda w: f"{w}: request done",
    "bare word": lambda w: f"2024-05-01T12:00:00Z {w.upper()} main.go:12 request done",
    "first word": lambda w: f"{w.capitalize()} request done",
    "in parens": lambda w: f"12:00:00 ({w}) request done",
    "after equals": lambda w: f"request done severity_name={w}",
}


@pytest.mark.parametrize("shape", KEYED_SHAPES)
@pytest.mark.parametrize("key", LEVEL_KEYS)
@pytest.mark.parametrize(("name", "level"), NAMES.items())
def test_every_name_under_every_level_key_in_every_shape(shape: str, key: str, name: str,
                                                         level: str) -> None:
    fields = {key: name.upper()} if shape == "field" else None
    assert level_of(KEYED_SHAPES[shape](key, name), fields) == level


@pytest.mark.parametrize("shape", WORD_SHAPES)
@pytest.mark.parametrize(("word", "level"), WORDS.items())
def test_every_loki_word_in_every_line_shape(shape: str, word: str, level: str) -> None:
    assert level_of(WORD_SHAPES[shape](word)) == level


@pytest.mark.parametrize(("line", "level"), [
    ("I1129 10:00:00.123456       1 controller.go:42] synced, no error", "info"),
    ("W1129 10:00:00.123456   12345 reflector.go:7] watch closed", "warn"),
    ('E0101 00:00:00.000000 7 main.go:1] "failed to get info" err="x"', "error"),
    ("F1231 23:59:59.999999 1 main.go:99] cannot start", "fatal"),
    ("E1129 10:00:00 foo.go:1] not a klog header: no microseconds", "unknown"),
])
def test_klog_header_wins_over_words_in_the_message(line: str, level: str) -> None:
    assert level_of(line) == level


@pytest.mark.parametrize(("line", "level"), [
    ("ERROR: failed to load user info", "error"),  # the earliest word, not Loki 2.9's info-first
    ("info: retrying after error", "info"),
    ("information about misc:error and xerror, errors, erroneous", "unknown"),
    ("debugger attached; interrupts and warnings disabled", "unknown"),
    ("stack trace follows", "trace"),  # as in Loki: any standalone level word counts
    ("severity=critical level=error msg=x", "error"),  # logfmt: the first key of Loki's list
    ('{"severity":"critical","level":"error"}', "critical"),  # JSON: document order
    ('{"a":{"level":"information"}}', "info"),  # one object down is looked into
    ('{"a":{"b":{"level":"information"}}}', "unknown"),  # two are not; "information" no word
    ('{"lEvEl":"information"}', "unknown"),  # JSON keys are matched exactly
    ('{"level":30,"msg":"disk full"}', "unknown"),  # only string values are levels
    ('{"level":5,"severity":"eror"}', "error"),  # ...so a number is passed over
    ('{"level":"banana","msg":"disk warning"}', "warn"),  # not a name: the words decide
    ('{"level":"warn", broken', "warn"),  # not JSON: the words
    ('severity=eror msg=unquoted "text" level=info', "error"),  # pairs before a syntax error
    ("GET /api/v1/items 200 12ms", "unknown"),
    ("", "unknown"),
])
def test_detection_follows_loki(line: str, level: str) -> None:
    assert level_of(line) == level


@pytest.mark.parametrize(("fields", "level"), [
    ({"level": "WARNING"}, "warn"),  # the record's fields come before the line
    ({"detected_level": "err", "level": "info"}, "error"),  # one already there stays
    ({"level": "nonsense", "lvl": "dbg"}, "debug"),  # not a name: the next field
    ({"severity_number": "17"}, "error"),  # OpenTelemetry SeverityNumber
    ({"severity_number": "24"}, "fatal"),
    ({"severity_number": "1"}, "trace"),
    ({"severity_number": "x"}, "info"),  # as Loki reads a number that is not one
    ({"severity_number": "99", "other": "x"}, "error"),  # outside 1-24: the line decides
    ({"msg": "warning"}, "error"),  # not a level field: the line decides
])
def test_fields_come_before_the_line(fields: dict[str, str], level: str) -> None:
    assert level_of("ERROR something failed", fields) == level


@pytest.mark.parametrize(("value", "level"), [
    ("Warning", "warn"), ("E", "error"), ("50", "error"), ("5", "debug"), ("13", "warn"),
    ("Notice", "warn"),  # the mapping comes before the built-in names (notice: info)
    ("banana", "info"), ("99", "info"),  # neither a name nor 1-24: detected (from the line)
])
def test_field_with_mapping_then_names_then_severity_numbers(value: str, level: str) -> None:
    config = LevelConfig(field="sev", mapping=(("e", "error"), ("50", "error"), ("NOTICE", "warn")))
    assert level_of("INFO request done", {"sev": value}, config) == level


def test_missing_field_is_detected_and_other_fields_are_kept() -> None:
    record = Record(0, "[WARN] low disk", Ticket(FileId(1, 1), 0),
                    {"app": "api", "detected_level": "info"})
    LevelSpec(LevelConfig(field="level")).apply(record, Env(0.0, 0))
    assert record.fields == {"app": "api", "detected_level": "info"}  # kept: Loki's step 1
    record.fields = {"app": "api"}
    LevelSpec(LevelConfig(field="level")).apply(record, Env(0.0, 0))
    assert record.fields == {"app": "api", "detected_level": "warn"}


def test_field_level_overwrites_an_earlier_detected_level() -> None:
    assert level_of("x", {"detected_level": "info", "s": "error"}, LevelConfig(field="s")) == \
        "error"


CANDIDATES = (*NAMES, *WORDS)


def has_candidate(text: str) -> bool:
    low = text.lower()
    return any(word in low for word in CANDIDATES)


@given(st.text().filter(lambda t: not has_candidate(t)))
def test_a_line_without_any_candidate_word_is_unknown(line: str) -> None:
    assert level_of(line) == "unknown"


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=12) | st.integers(), max_size=5),
       st.sampled_from(["json", "logfmt"]))
def test_structured_lines_without_candidates_are_unknown(obj: dict[str, object],
                                                         shape: str) -> None:
    line = (json.dumps(obj, ensure_ascii=False) if shape == "json" else
            " ".join(f"{k or 'k'}={json.dumps(str(v), ensure_ascii=False)}"
                     for k, v in obj.items()))
    assume(not has_candidate(line))
    assert level_of(line) == "unknown"


@given(st.text(), st.sampled_from(sorted(WORDS)), st.text(), st.sampled_from(' \t[("='),
       st.sampled_from(' \t])}:,!"='))
def test_a_standalone_word_is_found_in_any_text(before: str, word: str, after: str,
                                                left: str, right: str) -> None:
    assume(not has_candidate(before) and not has_candidate(after))  # it could come first
    assume(not re.match(r"[IWEF]\d", before))  # a klog header would
    assert level_of(f"{before}{left}{word.upper()}{right}{after}") == WORDS[word]


@given(st.dictionaries(st.sampled_from([*LEVEL_KEYS, "detected_level", "severity_number",
                                        "msg"]), st.text(max_size=10), max_size=4), st.text())
def test_always_one_of_lokis_levels(fields: dict[str, str], line: str) -> None:
    assert detect_level(fields, line) in LEVELS
    assert level_of(line, fields, LevelConfig(field="msg")) in LEVELS
