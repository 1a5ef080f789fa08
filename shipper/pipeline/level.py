"""Level stage: the record's severity as Loki's `detected_level` field, read from a field or
detected from the line by the rules Loki's distributor uses.

Loki's rules (grafana/loki `pkg/distributor/field_detection.go`, v3.7: `extractLogLevel`,
`detectLogLevelFromLogEntry`, `normalizeLogLevel`, `detectLevelFromLogLine`), in order:

1. a `detected_level` already there is kept (normalised);
2. else the first of Loki's level fields present (`level`, `LEVEL`, `Level`, `log.level`,
   `severity`, ..., `SEVERITY_TEXT`; in that order) among the record's fields, which Loki sees
   as structured metadata;
3. else a `severity_number` field, read as an OpenTelemetry SeverityNumber (1-4 trace ...
   21-24 fatal);
4. else the line: a JSON object line (first non-space `{`, last `}`) gives the first string
   value, in document order, whose key is a level field, looked for in the object and the
   objects directly in it; a line with `=` is read as logfmt and gives the value of the level
   field earliest in that list (keys compared without case; pairs after a syntax error are not
   read); a value that is not a level name falls through to
5. the earliest of the words trace, debug, fatal, critical, error, err, warning, warn, info
   (any case) standing alone: after the line start, a space, tab, newline, `[`, `(`, `{`, `"`
   or `=`, before the line end or one of those or `]`, `)`, `}`, `:`, `,`, `!`. So `[ERROR]`,
   `WARN:`, `level=warn` and a bare `INFO` all count, and `information` or `misc:error` do not.
6. else `unknown`, as Loki writes.

Names are normalised as Loki does (trc, dbg, inf, information, wrn, warning, err...), plus the
spellings of log15 (trce, dbug, eror, crit), zap (dpanic, panic), syslog (emerg, alert, notice),
.NET (fail), java.util.logging (severe, fine, finer, finest) and Serilog (verbose).

`fatal` is Loki's own level too: panic, dpanic and klog's F are written as `fatal`, emerg and
alert as `critical`. Where this differs from Loki: a field value that is not a level name is
passed over (Loki would store it as it is); and a klog header
(`E1129 10:00:00.123456   12 file.go:42] msg`: I, W, E, F) is read before the logfmt and word
rules, which would otherwise take the first level word of the message.
"""

from __future__ import annotations

import re
from typing import Final

from shipper.pipeline.config import LevelConfig
from shipper.pipeline.parsers import decode_object, logfmt
from shipper.pipeline.record import Env, Record, RecordStage, StreamInfo

DETECTED_LEVEL: Final = "detected_level"
UNKNOWN: Final = "unknown"

_LEVEL_FIELDS: Final = ("level", "LEVEL", "Level", "log.level", "severity", "SEVERITY",
                        "Severity", "SeverityText", "lvl", "LVL", "Lvl", "severity_text",
                        "Severity_Text", "SEVERITY_TEXT")  # Loki's, in its order
_FIELD_ORDER: Final = (DETECTED_LEVEL, *_LEVEL_FIELDS)
_FIELD_SET: Final = frozenset(_FIELD_ORDER)
_JSON_KEYS: Final = frozenset(_LEVEL_FIELDS)
_LOGFMT_RANK: Final = {name.lower(): rank  # reversed: the first field spelt so sets the rank
                       for rank, name in reversed(list(enumerate(_LEVEL_FIELDS)))}
_SEVERITY_NUMBER: Final = "severity_number"  # what Loki's OTLP receiver names it

_NAMES: Final = {  # lower-cased name: level
    "trace": "trace", "trc": "trace", "trce": "trace", "verbose": "trace", "finer": "trace",
    "finest": "trace",
    "debug": "debug", "dbg": "debug", "dbug": "debug", "fine": "debug",
    "info": "info", "inf": "info", "information": "info", "notice": "info",
    "warn": "warn", "wrn": "warn", "warning": "warn",
    "error": "error", "err": "error", "eror": "error", "fail": "error", "severe": "error",
    "critical": "critical", "crit": "critical", "emerg": "critical", "emergency": "critical",
    "alert": "critical", "fatal": "fatal", "panic": "fatal", "dpanic": "fatal",
}
_OTEL_BANDS: Final = ("trace", "debug", "info", "warn", "error", "fatal")  # 4 numbers each

_KLOG: Final = re.compile(r"([IWEF])\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ [^ \]]+:\d+\]", re.ASCII)
_KLOG_LEVELS: Final = {"I": "info", "W": "warn", "E": "error", "F": "fatal"}

# Step 5 as two searches, because a pattern that starts with a lookbehind is tried at every
# position (3x slower): the word at the very start, then a boundary character and the word.
_WORDS: Final = r'(trace|debug|fatal|critical|error|err|warning|warn|info)(?![^ \t\n\[\](){}:,!"=])'
_WORD_AT_START: Final = re.compile(_WORDS)
_WORD_AFTER: Final = re.compile(r'[ \t\n\[({"=]' + _WORDS)


def _level_name(value: str) -> str | None:
    """The level a name stands for (any case), or None."""
    return _NAMES.get(value.lower())


def _severity_number(value: str) -> str | None:
    """The level of an OpenTelemetry SeverityNumber, or None outside 1-24. Loki reads anything
    that is not an integer as info."""
    try:
        number = int(value)
    except ValueError:
        return "info"
    return _OTEL_BANDS[(number - 1) // 4] if 1 <= number <= 24 else None


def detect_level(fields: dict[str, str] | None, line: str) -> str:
    """The level of a record with these fields and this line, by steps 1-6 above."""
    if fields:
        if not _FIELD_SET.isdisjoint(fields):
            for name in _FIELD_ORDER:
                value = fields.get(name)
                if value is not None and (level := _level_name(value)):
                    return level
        number = fields.get(_SEVERITY_NUMBER)
        if number is not None and (level := _severity_number(number)):
            return level
    return _from_line(line)


def _from_line(line: str) -> str:
    klog = _KLOG.match(line)
    if klog:
        return _KLOG_LEVELS[klog.group(1)]
    stripped = line.strip()
    low = line.lower()
    if stripped[:1] == "{" and stripped[-1:] == "}":
        value = _json_value(line)
    elif "level=" in low or "lvl=" in low or "severity" in low:  # else no level key: decoding
        value = _logfmt_value(line)  # every word of a plain line as a bare key costs 10 us
    else:
        value = None
    return (value is not None and _level_name(value)) or _scan(low)


def _json_value(line: str) -> str | None:
    obj = decode_object(line)
    if obj is None:
        return None
    for key, value in obj.items():
        if type(value) is str:  # not a number, which decodes as a str subclass
            if key in _JSON_KEYS:
                return value
        elif isinstance(value, dict):
            for inner_key, inner in value.items():
                if type(inner) is str and inner_key in _JSON_KEYS:
                    return inner
    return None


def _logfmt_value(line: str) -> str | None:
    best, found = len(_LEVEL_FIELDS), None
    try:
        for key, value in logfmt(line):
            rank = _LOGFMT_RANK.get(key.lower(), best)
            if rank < best:
                best, found = rank, value
                if rank == 0:  # `level` ranks first: nothing later can beat it
                    break
    except ValueError:
        pass  # a syntax error ends the pairs: what was found before it stands
    return found


def _scan(low: str) -> str:
    """Step 5 over the lower-cased line."""
    m = _WORD_AT_START.match(low) or _WORD_AFTER.search(low)
    return UNKNOWN if m is None else _NAMES[m.group(1)]


class LevelSpec:
    """Writes `detected_level` (one of LEVELS) into the fields: from `field` when it holds a
    level (its value looked up in `mapping` first, then as a name or, if a number, an
    OpenTelemetry SeverityNumber), else detected as the module docstring says. A missing field
    or a value that is neither is not a failure: the level is detected instead."""

    reason = "pipeline_drop"  # never used: this stage never drops

    def __init__(self, config: LevelConfig) -> None:
        self._field = config.field
        self._mapping = {raw.lower(): level for raw, level in config.mapping}

    def build(self, info: StreamInfo) -> RecordStage:
        return self

    def apply(self, record: Record, env: Env) -> bool:
        level = None
        if self._field:
            value = record.field(self._field)
            if value is not None:
                level = (self._mapping.get(value.lower()) or _level_name(value)
                         or (_severity_number(value) if value.isdecimal() else None))
        record.set_field(DETECTED_LEVEL, level or detect_level(record.fields, record.line))
        return True
