"""Filter stages: conditions over a record, for drop, keep and any stage's `when:`."""

from __future__ import annotations

import re
from collections.abc import Callable

from shipper.pipeline.config import Condition
from shipper.pipeline.level import detect_level
from shipper.pipeline.record import Env, GroupStage, Record, RecordStage, StageSpec, StreamInfo

Predicate = Callable[[Record, Env], bool]


def compile_condition(c: Condition) -> Predicate:
    """The condition as one predicate; its criteria and nested conditions compiled once."""
    checks: list[Predicate] = []
    if c.line:
        search = re.compile(c.line).search
        checks.append(lambda r, env: search(r.line) is not None)
    if c.field:
        name = c.field
        if c.value is not None:
            value = c.value
            checks.append(lambda r, env: r.fields is not None and r.fields.get(name) == value)
        elif c.matches:
            found = re.compile(c.matches).search
            checks.append(lambda r, env: r.fields is not None and name in r.fields
                          and found(r.fields[name]) is not None)
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
        every = [compile_condition(n) for n in c.all]
        checks.append(lambda r, env: all(p(r, env) for p in every))
    if c.any:
        some = [compile_condition(n) for n in c.any]
        checks.append(lambda r, env: any(p(r, env) for p in some))
    if c.not_ is not None:
        negated = compile_condition(c.not_)
        checks.append(lambda r, env: not negated(r, env))
    if len(checks) == 1:
        return checks[0]
    return lambda r, env: all(p(r, env) for p in checks)


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
