"""Conditions, drop/keep and when:, as the config reader builds them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipper.model import FileId, Stream, Ticket
from shipper.pipeline.config import Condition, read_condition, read_stage
from shipper.pipeline.filters import DropSpec, WhenSpec, compile_condition, finder
from shipper.pipeline.record import Env, Record, StreamInfo

NOW_NS = 1_700_000_000 * 10**9
INFO = StreamInfo(Stream('{app="a"}', (("app", "a"),)), "stdout")


def record(line: str = "x", ts: int = NOW_NS, **fields: str) -> Record:
    return Record(ts, line, Ticket(FileId(1, 1), 0), dict(fields) or None)


def holds(raw: dict[str, object], r: Record) -> bool:
    return compile_condition(read_condition("c", raw))(r, Env(0.0, NOW_NS))


@pytest.mark.parametrize(("raw", "yes", "no"), [
    ({"line": "health"}, record("GET /healthz"), record("GET /api")),
    ({"field": "user", "value": "bot"}, record(user="bot"), record(user="bott")),
    ({"field": "user", "matches": "^b"}, record(user="bob"), record(user="alice")),
    ({"field": "user"}, record(user=""), record()),
    ({"level": ["debug", "trace"]}, record(detected_level="debug"), record(detected_level="info")),
    ({"level": ["debug"]}, record("DEBUG cache miss"), record("INFO cache hit")),  # detected
    ({"level": ["warn"]}, record("x", level="warning"), record("x", level="error")),
    ({"older_than": "1h"}, record(ts=NOW_NS - 3601 * 10**9), record(ts=NOW_NS - 3599 * 10**9)),
    ({"all": [{"line": "a"}, {"line": "b"}]}, record("ab"), record("a")),
    ({"any": [{"line": "a"}, {"line": "b"}]}, record("b"), record("c")),
    ({"not": {"line": "a"}}, record("b"), record("a")),
    ({"line": "x", "field": "k", "value": "v"}, record("x", k="v"), record("x", k="w")),
])
def test_each_criterion_holds_exactly_when_it_should(raw: dict[str, object], yes: Record,
                                                     no: Record) -> None:
    assert holds(raw, yes)
    assert not holds(raw, no)


@given(st.text(max_size=30), st.booleans())
def test_keep_is_the_inverse_of_drop(line: str, keep: bool) -> None:
    condition = Condition(line="[aeiou]")
    drop, kept = DropSpec(condition, keep=False), DropSpec(condition, keep=True)
    env = Env(0.0, NOW_NS)
    assert drop.apply(record(line), env) != kept.apply(record(line), env)
    assert drop.reason == kept.reason == "pipeline_drop"


def test_when_applies_a_stage_only_where_its_condition_holds() -> None:
    stage = read_stage("s", {"drop": {"line": "noise"}})
    assert isinstance(stage.options, Condition)
    guarded = WhenSpec(read_condition("w", {"field": "team", "value": "a"}),
                       DropSpec(stage.options, keep=False)).build(INFO)
    env = Env(0.0, NOW_NS)
    assert guarded.apply(record("noise", team="b"), env)  # not team a: the drop is skipped
    assert not guarded.apply(record("noise", team="a"), env)
    assert guarded.apply(record("signal", team="a"), env)


_PATTERN_PARTS = st.sampled_from(["a", "b", "{", " ", "\\{", "\\.", ".", "^", "[ab]", "a|b",
                                  "\\n", "x*", "(?i)", "é", "\\\\", "/"])


@given(st.lists(_PATTERN_PARTS, max_size=5).map("".join), st.text("ab{ .\n\\/éAB", max_size=12))
def test_a_finder_agrees_with_re_search(pattern: str, text: str) -> None:
    try:
        expected = re.search(pattern, text) is not None
    except re.error:  # e.g. a quantifier with nothing to repeat: the config reader refuses it
        return
    assert finder(pattern)(text) is expected
