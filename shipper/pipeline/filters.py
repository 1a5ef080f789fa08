"""Filter stages: conditions over a record, for drop, keep and any stage's `when:`."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from shipper.pipeline.config import Condition
from shipper.pipeline.level import detect_level
from shipper.pipeline.record import Env, GroupStage, Record, RecordStage, StageSpec, StreamInfo

Predicate = Callable[[Record, Env], bool]


# A pattern that is plain text, maybe anchored with ^: str methods find it ~5x faster than re.
_LITERAL = re.compile(r"\^?(?:[^\\.^$*+?{}\[\]|()]|\\[^A-Za-z0-9])*")


def _literal(pattern: str) -> tuple[str, bool] | None:
    """(its text, whether anchored) when the pattern is plain text, maybe after a ^."""
    if not _LITERAL.fullmatch(pattern):
        return None
    anchored = pattern.startswith("^")
    return re.sub(r"\\(.)", r"\1", pattern[1:] if anchored else pattern), anchored


def finder(pattern: str) -> Callable[[str], bool]:
    """Whether re.search(pattern) finds something in a string."""
    literal = _literal(pattern)
    if literal is not None:
        text, anchored = literal
        return (lambda s: s.startswith(text)) if anchored else (lambda s: text in s)
    search = re.compile(pattern).search
    return lambda s: search(s) is not None


def _on_line(pattern: str) -> Predicate:
    """finder() on the record's line, a call shorter: this runs for most records."""
    literal = _literal(pattern)
    if literal is not None:
        text, anchored = literal
        if anchored:
            return lambda r, env: r.line.startswith(text)
        return lambda r, env: text in r.line
    search = re.compile(pattern).search
    return lambda r, env: search(r.line) is not None


def _both(first: Predicate, second: Predicate) -> Predicate:
    return lambda r, env: first(r, env) and second(r, env)


def _either(first: Predicate, second: Predicate) -> Predicate:
    return lambda r, env: first(r, env) or second(r, env)


def compile_condition(c: Condition) -> Predicate:
    """The condition as one predicate; its criteria and nested conditions compiled once, and
    chained by plain calls (a generator over them cost 9% of the typical pipeline)."""
    checks: list[Predicate] = []
    if c.line:
        checks.append(_on_line(c.line))
    if c.field:
        name = c.field
        if c.value is not None:
            value = c.value
            checks.append(lambda r, env: r.fields is not None and r.fields.get(name) == value)
        elif c.matches:
            matches = finder(c.matches)
            checks.append(lambda r, env: r.fields is not None and name in r.fields
                          and matches(r.fields[name]))
        else:
            checks.append(lambda r, env: r.fields is not None and name in r.fields)
    if c.level:
        # The level a level stage wrote, else detected here as that stage would (without
        # writing it): `drop: {level: [debug]}` works on its own.
        levels = frozenset(c.level)
        checks.append(lambda r, env: detect_level(r.fields, r.line) in levels)
    if c.older_than:
        age_ns = int(c.older_than * 1_000_000_000)
        checks.append(lambda r, env: env.now_ns - r.ts > age_ns)
    if c.all:
        checks.append(functools.reduce(_both, map(compile_condition, c.all)))
    if c.any:
        checks.append(functools.reduce(_either, map(compile_condition, c.any)))
    if c.not_ is not None:
        negated = compile_condition(c.not_)
        checks.append(lambda r, env: not negated(r, env))
    return functools.reduce(_both, checks)


class DropSpec:
    """`drop`: records for which the condition holds go no further; `keep`: only those do.
    Stateless, so one instance serves every stream."""

    reason = "pipeline_drop"

    def __init__(self, condition: Condition, *, keep: bool) -> None:
        self._holds = compile_condition(condition)
        self._keep = keep

    def build(self, info: StreamInfo) -> DropSpec:
        return self

    def apply(self, record: Record, env: Env) -> bool:
        return self._holds(record, env) is self._keep


class _When:
    def __init__(self, holds: Predicate, stage: RecordStage) -> None:
        self._holds = holds
        self._stage = stage
        self.reason = stage.reason

    def apply(self, record: Record, env: Env) -> bool:
        return self._stage.apply(record, env) if self._holds(record, env) else True


class WhenSpec:
    """Any record stage with `when:`: it applies to the records the condition holds for, and
    the others pass unchanged. (Not for multiline: a group cannot skip lines.)"""

    def __init__(self, condition: Condition, spec: StageSpec) -> None:
        self._holds = compile_condition(condition)
        self._spec = spec

    def build(self, info: StreamInfo) -> RecordStage | GroupStage:
        stage = self._spec.build(info)
        if isinstance(stage, GroupStage):
            raise TypeError("when: on a group stage")  # the config reader refuses it
        return _When(self._holds, stage)
