"""Rewrite stages: replace redacts the line or a field; set, move, copy, remove, retain and
flatten edit the fields, as the OpenTelemetry filelog operators add, move, copy, remove, retain
and flatten edit a log record (each stage's docstring says where it differs from its operator).

Fields are flat: a nested value extracted by the json stage is one field under its dotted path
(`user.id`), which is how flatten reads a "map". None of these stages fails or drops: a field
they are asked to read that is not there leaves the record as it was (the OpenTelemetry
operators count that as an error and send the entry on unchanged).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final

from shipper.pipeline.config import (
    CopyConfig,
    FieldListConfig,
    FlattenConfig,
    MoveConfig,
    ReplaceConfig,
    SetConfig,
)
from shipper.pipeline.record import Env, Record, RecordStage, StreamInfo

LINE: Final = "line"  # in move and copy, the line itself: a field of that name cannot be named


class _Stage(ABC):
    """What every stage here shares: no per-stream state, and no drops."""

    reason = "pipeline_drop"  # never used: these stages never drop

    def build(self, info: StreamInfo) -> RecordStage:
        return self

    @abstractmethod
    def apply(self, record: Record, env: Env) -> bool:
        """Edit the record in place."""


# -- replace ---------------------------------------------------------------------------------

_Replacer = str | Callable[[re.Match[str]], str]  # what re.sub takes


@dataclass(frozen=True, slots=True)
class _Preset:
    pattern: re.Pattern[str]
    may_match: Callable[[str], bool]  # cheap: False means the pattern cannot match, skip it
    replacer: Callable[[str], _Replacer]  # from the configured replacement text


def _literal(replacement: str) -> _Replacer:
    return replacement.replace("\\", "\\\\")  # a preset's groups are not part of its contract


def _after_key(replacement: str) -> _Replacer:
    return lambda m: m.group(1) + replacement  # "Bearer " or "password=" stays


# A run of 13 or more digits, single spaces or dashes between them (leftmost and greedy: all of
# it). Searched for only inside the stretches of digits, spaces and dashes the card preset's
# pattern finds: a loop over one character set, 3x cheaper over a line than this pattern.
_DIGIT_RUN: Final = re.compile(r"\d(?:[ -]?\d){12,}", re.ASCII)
_SEPARATOR: Final = re.compile("[ -]")


def _if_card(replacement: str) -> _Replacer:
    def one(run: re.Match[str]) -> str:
        return replacement if _holds_card(run.group()) else run.group()
    return lambda stretch: _DIGIT_RUN.sub(one, stretch.group())



def _holds_card(run: str) -> bool:
    """Whether a run of digits is a card number (13-19 digits passing the Luhn check), or
    holds one as groups written apart ("qty 1 4111 1111 1111 1111" or "... 1111 2025")."""
    groups = _SEPARATOR.split(run)
    for first in range(len(groups)):
        digits = ""
        for group in groups[first:]:
            digits += group
            if len(digits) > 19:
                break
            if len(digits) >= 13 and _luhn(digits):
                return True
    return False


def _luhn(digits: str) -> bool:
    total = 0
    for i, digit in enumerate(map(int, reversed(digits))):
        total += (digit * 2 - 9 if digit > 4 else digit * 2) if i % 2 else digit
    return total % 10 == 0


_SECRET_KEYS: Final = ("bearer", "token", "key", "secret", "passw")


def _always(text: str) -> bool:
    return True


def _has_secret_key(text: str) -> bool:
    low = text.lower()  # re.IGNORECASE costs 8 us on a 150-character line; this 0.6 us
    return any(key in low for key in _SECRET_KEYS)


_PRESETS: Final = {
    # user@example.co.uk: the local part in RFC 5322's characters but = ' / ? { | }, which
    # logs use around a value (email=ann@x.io keeps "email="); a top-level domain in letters
    # or punycode (xn--p1ai)
    "email": _Preset(re.compile(r"[A-Za-z0-9.!#$%&*+^_`~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                                r"\.(?:[Xx][Nn]--[A-Za-z0-9-]+|[A-Za-z]{2,})", re.ASCII),
                     lambda t: "@" in t, _literal),
    # a stretch that can hold a run of digits (_DIGIT_RUN), in which a Luhn check then tells
    # a card from an order number (9 in 10 fail it); 13 characters must all be digits for
    # that, so the 13 of "2024-05-01 12:00" are no candidate
    "card": _Preset(re.compile(r"[0-9](?:[0-9 -]{12,}[0-9]|[0-9]{12})"), _always, _if_card),
    # Authorization: Bearer <token of 8+ characters>, and token/api key/secret/password values
    # written key=value or "key": "value"; the key is kept, the value goes
    "bearer": _Preset(re.compile(
        r"""(\bbearer\s+(?=[A-Za-z0-9._~+/-]{8})|(?:token|api[_-]?key|secret(?:[_-]?(?:access"""
        r"""[_-]?)?key)?|passw(?:or)?d|access[_-]?key|private[_-]?key)["']?\s*[:=]\s*["']?)"""
        r"""([^\s"'&,;]+)""", re.ASCII | re.IGNORECASE), _has_secret_key, _after_key),
    # a JSON Web Token: header.payload.signature, base64url; the header always starts {"
    "jwt": _Preset(re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
                   lambda t: "eyJ" in t, _literal),
}


class ReplaceSpec(_Stage):
    """Replaces every match of `regex` (\\1 and \\g<name> in `replacement` refer to its groups)
    or of a preset in the line, or in `field` when given (a missing field: nothing to do).

    Presets, whose replacement is literal text: `email`; `card`, 13-19 digits with optional
    single spaces or dashes that pass the Luhn check (order numbers and timestamps mostly do
    not), also when written beside other digit groups; `bearer`, a `Bearer` token or the value
    after token, api_key, secret, password and the like (`key=value`, `"key": "value"`,
    `key: value`), the key kept; `jwt`, three base64url segments starting `eyJ`. Like the
    OpenTelemetry regex_replace operator, but on the line or any field."""

    def __init__(self, config: ReplaceConfig) -> None:
        self._field = config.field
        if config.preset:
            preset = _PRESETS[config.preset]
            self._pattern, self._may_match = preset.pattern, preset.may_match
            self._replacer = preset.replacer(config.replacement)
        else:
            self._pattern, self._may_match = re.compile(config.regex), _always
            self._replacer = config.replacement

    def apply(self, record: Record, env: Env) -> bool:
        if self._field:
            value = record.field(self._field)
            if value is not None and self._may_match(value):
                record.set_field(self._field, self._pattern.sub(self._replacer, value))
        elif self._may_match(record.line):
            record.line = self._pattern.sub(self._replacer, record.line)
        return True


# -- field operators -------------------------------------------------------------------------

def _take(record: Record, name: str) -> str | None:
    if name == LINE:
        line, record.line = record.line, ""
        return line
    return _remove(record, name)


def _read(record: Record, name: str) -> str | None:
    return record.line if name == LINE else record.field(name)


def _write(record: Record, name: str, value: str) -> None:
    if name == LINE:
        record.line = value
    else:
        record.set_field(name, value)


def _remove(record: Record, name: str) -> str | None:
    if record.fields is None:
        return None
    value = record.fields.pop(name, None)
    if not record.fields:
        record.fields = None  # no fields is None, as a record starts
    return value


class SetSpec(_Stage):
    """Sets fields to constants, replacing what they held (OpenTelemetry's add, several fields
    at once, constants only: no expressions)."""

    def __init__(self, config: SetConfig) -> None:
        self._fields = config.fields

    def apply(self, record: Record, env: Env) -> bool:
        for name, value in self._fields:
            record.set_field(name, value)
        return True


class _Transfer(_Stage):
    """What copy and move share: from where to where; `line` is the line itself."""

    moves: ClassVar[bool]  # the source goes (move) or stays (copy)

    def __init__(self, config: CopyConfig | MoveConfig) -> None:
        self._from, self._to = config.from_, config.to

    def apply(self, record: Record, env: Env) -> bool:
        value = (_take if self.moves else _read)(record, self._from)
        if value is not None:
            _write(record, self._to, value)
        return True


class CopySpec(_Transfer):
    """Copies `from_` to `to`, replacing what `to` held; either may be `line`. A missing
    `from_` changes nothing (OpenTelemetry's copy reports an error)."""

    moves = False


class MoveSpec(_Transfer):
    """Moves `from_` to `to` (a rename), replacing what `to` held; either may be `line`, and
    moving the line away leaves it empty (OpenTelemetry leaves the body empty). A missing
    `from_` changes nothing (OpenTelemetry's move reports an error)."""

    moves = True


class RemoveSpec(_Stage):
    """Removes the listed fields; missing ones are no error (OpenTelemetry's remove takes one
    field, or a whole group such as attributes). The line cannot be removed."""

    def __init__(self, config: FieldListConfig) -> None:
        self._fields = config.fields

    def apply(self, record: Record, env: Env) -> bool:
        for name in self._fields:
            _remove(record, name)
        return True


class RetainSpec(_Stage):
    """Keeps only the listed fields. The line is always kept (OpenTelemetry's retain also keeps
    a group, body, attributes or resource, when none of its fields is listed)."""

    def __init__(self, config: FieldListConfig) -> None:
        self._fields = config.fields

    def apply(self, record: Record, env: Env) -> bool:
        if record.fields is not None:
            kept = {name: value for name in self._fields
                    if (value := record.fields.get(name)) is not None}
            record.fields = kept or None
        return True


class FlattenSpec(_Stage):
    """Moves the children of `field` up one level, as OpenTelemetry's flatten does with a map:
    with `field: x`, a field `x.<rest>` becomes `<rest>`; with `field: a.x`, `a.x.<rest>` becomes
    `a.<rest>`. A moved field replaces one already named so. A field named exactly `field`
    holds a string, not a map, and is left as it is (OpenTelemetry reports an error)."""

    def __init__(self, config: FlattenConfig) -> None:
        self._prefix = config.field + "."
        parent, dot, _ = config.field.rpartition(".")
        self._parent = parent + dot  # "" at the top, else "a."

    def apply(self, record: Record, env: Env) -> bool:
        fields, prefix, cut = record.fields, self._prefix, len(self._prefix)
        if fields is not None and any(name.startswith(prefix) for name in fields):
            kept = {k: v for k, v in fields.items() if not k.startswith(prefix)}
            kept.update((self._parent + k[cut:], v) for k, v in fields.items()
                        if k.startswith(prefix))
            record.fields = kept
        return True
