"""Parsed Collector conditions as shipper's pipeline conditions (`line`, `field` with `value`
or `matches`, `level`, `all`/`any`/`not`), read in the scope of the operator they sit on."""

from __future__ import annotations

import re

from shipper.convert.expr import BoolOp, Call, Compare, Lit, Name, Node, Not, ParseError, Path
from shipper.convert.expr import parse as parse_expr
from shipper.convert.fields import Ref, Scope, parse_path
from shipper.convert.report import Unsupported
from shipper.convert.units import go_regex
from shipper.pipeline.level import DETECTED_LEVEL

Condition = dict[str, object]
_SPECIAL = re.compile(r"([.^$*+?{}\[\]\\|()])")

# OpenTelemetry severity numbers (logs data model) by Loki level: each level is one range.
_LEVEL_RANGES = {"unknown": range(0, 1), "trace": range(1, 5), "debug": range(5, 9),
                 "info": range(9, 13), "warn": range(13, 17), "error": range(17, 21),
                 "fatal": range(21, 25)}
_SEVERITY_BASE = {"UNSPECIFIED": 0, "TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13,
                  "ERROR": 17, "FATAL": 21}
_COMPARE = {"<": int.__lt__, "<=": int.__le__, ">": int.__gt__, ">=": int.__ge__,
            "==": int.__eq__, "!=": int.__ne__}


def _parts(condition: Condition, key: str) -> list[Condition]:
    inner = condition.get(key)
    if list(condition) == [key] and isinstance(inner, list):
        return [c for c in inner if isinstance(c, dict)]
    return [condition]


def all_of(*conditions: Condition | None) -> Condition | None:
    """All of them (None: no condition, always true)."""
    items = [part for c in conditions if c for part in _parts(c, "all")]
    return None if not items else items[0] if len(items) == 1 else {"all": items}


def any_of(conditions: list[Condition | None]) -> Condition | None:
    if not conditions or any(c is None for c in conditions):
        return None
    items = [part for c in conditions if c for part in _parts(c, "any")]
    return items[0] if len(items) == 1 else {"any": items}


def negate(condition: Condition) -> Condition:
    inner = condition.get("not")
    return inner if list(condition) == ["not"] and isinstance(inner, dict) else {"not": condition}


def literal(text: str) -> str:
    """`text` as a regex matching it exactly (re.escape also escapes spaces and dashes)."""
    return _SPECIAL.sub(r"\\\1", text)


def _why(ref: Ref) -> str:
    return {
        "raw": "it tests the runtime's raw line (the CRI or Docker envelope), which shipper "
               "parses before any stage runs",
        "source": f"it tests Kubernetes metadata ({ref.name}); shipper's conditions test the "
                  "line and extracted fields (a rule's match: selects by metadata)",
        "time": "it tests the runtime's timestamp, which shipper parses natively",
        "native": "it tests a detail of the runtime's envelope that shipper handles natively",
        "file": "it tests the log file's path, which shipper keeps in no field",
        "body": "it tests the whole parsed body",
    }.get(ref.kind, f"it tests {ref.kind}")


class Translator:
    def __init__(self, scope: Scope, where: str) -> None:
        self.scope, self.where = scope, where

    def fail(self, reason: str) -> Unsupported:
        return Unsupported(self.where, reason)

    def ref(self, node: Node) -> Ref:
        if not isinstance(node, Path):
            raise self.fail(f"expected a field, got {node}")
        ref = self.scope.resolve(parse_path(node.text, self.where))
        if ref.kind not in ("line", "field"):
            raise self.fail(f"cannot convert the condition: {_why(ref)}")
        return ref

    def regex(self, ref: Ref, pattern: str) -> Condition:
        regex = go_regex(pattern, self.where)
        return {"line": regex} if ref.kind == "line" else {"field": ref.name, "matches": regex}

    def convert(self, node: Node) -> Condition:
        if isinstance(node, BoolOp):
            items: list[Condition | None] = [self.convert(item) for item in node.items]
            joined = all_of(*items) if node.op == "and" else any_of(items)
            assert joined is not None  # a converted condition is never "always"
            return joined
        if isinstance(node, Not):
            return negate(self.convert(node.item))
        if isinstance(node, Call) and node.name == "IsMatch" and len(node.args) == 2 and \
                isinstance(node.args[1], Lit) and isinstance(node.args[1].value, str):
            return self.regex(self.ref(node.args[0]), node.args[1].value)
        if isinstance(node, Compare):
            return self.compare(node)
        raise self.fail(f"cannot convert the condition {node}")

    def compare(self, node: Compare) -> Condition:
        left, op, right = node.left, node.op, node.right
        if isinstance(left, Lit) and op in ("==", "!="):
            left, right = right, left
        if isinstance(left, Name) and left.name == "severity_number":
            levels = self.levels(op, right)
            if not levels:
                raise self.fail(f"{node} holds for no severity")
            if "fatal" in levels:  # shipper also writes critical (crit, emerg, alert)
                levels.append("critical")
            if "unknown" not in levels:
                return {"level": levels}
            # An entry no operator gave a severity is UNSPECIFIED (0) to the Collector: one
            # without a detected_level counts as unknown.
            return {"any": [{"level": levels}, {"not": {"field": DETECTED_LEVEL}}]}
        if not isinstance(right, Lit):
            raise self.fail(f"cannot convert the comparison {node}: one side must be a constant")
        ref, value = self.ref(left), right.value
        if op in ("matches", "contains", "startsWith", "endsWith") and isinstance(value, str):
            if op == "matches":
                return self.regex(ref, value)
            text = literal(value)
            pattern = {"contains": text, "startsWith": "^" + text, "endsWith": text + "$"}[op]
            return {"line": pattern} if ref.kind == "line" else {"field": ref.name,
                                                                  "matches": pattern}
        if op not in ("==", "!="):
            raise self.fail(f"cannot convert {op!r}: shipper compares text only for equality")
        if value is None:
            if ref.kind != "field":
                raise self.fail("the line always exists")
            exists: Condition = {"field": ref.name}
            return exists if op == "!=" else {"not": exists}
        text = str(value).lower() if isinstance(value, bool) else str(value)
        equal: Condition = ({"line": f"^{literal(text)}$"} if ref.kind == "line"
                            else {"field": ref.name, "value": text})
        return equal if op == "==" else {"not": equal}

    def levels(self, op: str, right: Node) -> list[str]:
        if isinstance(right, Name) and right.name.startswith("SEVERITY_NUMBER_"):
            m = re.fullmatch(r"SEVERITY_NUMBER_([A-Z]+?)([234]?)", right.name)
            if m is None or m.group(1) not in _SEVERITY_BASE:
                raise self.fail(f"unknown severity {right.name}")
            number = _SEVERITY_BASE[m.group(1)] + (int(m.group(2)) - 1 if m.group(2) else 0)
        elif isinstance(right, Lit) and isinstance(right.value, int) and \
                not isinstance(right.value, bool):
            number = right.value
        else:
            raise self.fail(f"cannot compare severity_number with {right}")
        if op not in _COMPARE:
            raise self.fail(f"cannot compare severity_number with {op!r}")
        chosen = []
        for level, numbers in _LEVEL_RANGES.items():
            hits = {_COMPARE[op](n, number) for n in numbers}
            if len(hits) == 2:
                raise self.fail(f"severity_number {op} {number} splits the {level} range "
                                f"({numbers.start}-{numbers.stop - 1}); shipper's levels are "
                                "whole ranges")
            if hits == {True}:
                chosen.append(level)
        return chosen


def translate(text: str, scope: Scope, where: str) -> Condition:
    """A condition written in the Collector's expr or OTTL, as a shipper condition."""
    try:
        node = parse_expr(text)
    except ParseError as exc:
        raise Unsupported(where, f"cannot read the expression {text!r}: {exc}") from None
    return Translator(scope, where).convert(node)
