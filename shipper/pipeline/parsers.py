"""Parse stages: json, logfmt and regex extract fields from the line; timestamp sets its time.

The data model every stage shares: `record.fields` maps names to string values (created lazily)
and every field still there at the end of the pipeline ships as structured metadata, its name
sanitised for Loki then; `record.line` is the line; `record.ts` is ns since the epoch. A record a
stage cannot parse is left exactly as it was and counted in `env.failed` under the stage's type
(a timestamp that does not parse under "timestamp", the rest of the record still processed).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from json.encoder import encode_basestring
from typing import ClassVar, Final

from shipper.pipeline.config import JsonConfig, LogfmtConfig, RegexConfig, TimestampConfig
from shipper.pipeline.record import Env, Record, RecordStage, StreamInfo

# -- timestamps ------------------------------------------------------------------------------

_RFC3339: Final = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
                             r"(?:[Zz]|([+-])(\d\d):(\d\d))", re.ASCII)
_DECIMAL: Final = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", re.ASCII)
_UNIX_SCALE: Final = {"unix": 9, "unix_ms": 6, "unix_us": 3, "unix_ns": 0}  # ns = v * 10**scale
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY: Final = _EPOCH.toordinal()
_DAY_NS: Final = 86_400 * 10**9
# Years 1-9999, what datetime and RFC 3339 can write: a unix value outside is most likely in the
# wrong unit (milliseconds read as seconds lands in the year 55000) and is refused.
_MIN_NS: Final = (date(1, 1, 1).toordinal() - _EPOCH_DAY) * _DAY_NS
_MAX_NS: Final = (date(9999, 12, 31).toordinal() + 1 - _EPOCH_DAY) * _DAY_NS - 1


def parse_timestamp(value: str, fmt: str) -> int | None:
    """`value` as ns since the epoch, or None if it does not parse. `fmt` is rfc3339 (any number
    of fraction digits, cut to ns; Z or +hh:mm; T or a space between date and time), unix,
    unix_ms, unix_us or unix_ns (a decimal number, fraction and exponent allowed, read exactly),
    or a strptime pattern (a result without a zone is UTC)."""
    if fmt == "rfc3339":
        return _rfc3339(value)
    scale = _UNIX_SCALE.get(fmt)
    if scale is not None:
        if _DECIMAL.fullmatch(value) is None:
            return None
        try:  # Decimal, not float: 1700000000.123456789 keeps its last digits
            ns = int(Decimal(value).scaleb(scale))
        except ArithmeticError:  # an exponent past Decimal's range
            return None
        return ns if _MIN_NS <= ns <= _MAX_NS else None
    try:
        parsed = datetime.strptime(value, fmt)
    except ValueError:
        return None
    delta = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def _rfc3339(value: str) -> int | None:
    m = _RFC3339.fullmatch(value)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = m.groups()
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_DAY
    except ValueError:  # month 13, February 30, year 0
        return None
    if int(hour) > 23 or int(minute) > 59 or int(second) > 59:
        return None
    seconds = days * 86_400 + int(hour) * 3600 + int(minute) * 60 + int(second)
    if sign:
        if int(off_h) > 23 or int(off_m) > 59:
            return None
        offset = int(off_h) * 3600 + int(off_m) * 60
        seconds -= offset if sign == "+" else -offset
    return seconds * 10**9 + (int(fraction[:9].ljust(9, "0")) if fraction else 0)


def _set_time(record: Record, env: Env, value: str, fmt: str) -> None:
    ns = parse_timestamp(value, fmt)
    if ns is None:
        env.fail("timestamp")  # the record keeps the time it was read with
    else:
        record.ts = ns


# -- decoding --------------------------------------------------------------------------------

class _JsonNumber(str):
    """A JSON number kept as the text it was written as: 1.50 stays 1.50 and 1e-7 stays 1e-7,
    where a float would print 1.5 and 1e-07 (Loki's own json parser keeps the text too)."""

    __slots__ = ()


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")  # Python would read NaN and Infinity


_DECODER: Final = json.JSONDecoder(parse_int=_JsonNumber, parse_float=_JsonNumber,
                                   parse_constant=_refuse_constant, strict=False)
_JSON_SPACE: Final = " \t\n\r"
_SURROGATE: Final = re.compile("[\ud800-\udfff]")  # a lone one, from a "\ud800" escape


def decode_object(text: str) -> dict[str, object] | None:
    """`text` as a JSON object, or None if it is not one. Numbers come back as their text
    (a str subclass), so a value is a str, bool, None, list or dict."""
    start = 0 if text[:1] == "{" else len(text) - len(text.lstrip(_JSON_SPACE))
    if text[start:start + 1] != "{":  # most non-JSON lines stop here, before any parsing
        return None
    try:  # the text starts with "{": what comes back is a dict
        parsed: tuple[dict[str, object], int] = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError):  # RecursionError: objects nested past the C stack
        return None
    obj, end = parsed
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        return None
    return obj


_LOGFMT_PAIR: Final = re.compile(  # separators, a key, then ="quoted" or =bare or nothing;
    # a line break ends a quoted value (go-logfmt: it ends the record); U+FFFD is an invalid key
    r'[\x00- ]*([^\x00- ="\ufffd]+)(?:=(?:("(?:[^"\\\n]|\\[^\n])*")|([^\x00- ="]*)))?')


def logfmt(text: str) -> Iterator[tuple[str, str]]:
    """Key/value pairs as go-logfmt (Promtail's and Loki's logfmt) decodes them: a bare key or
    `key=` has the value "", a quoted value is unescaped as a JSON string, bytes up to a space
    separate pairs. Raises ValueError at the first syntax error (a stray `=` or `"`, an
    unterminated quote), after yielding the pairs before it."""
    pos, end = 0, len(text)
    while pos < end:
        m = _LOGFMT_PAIR.match(text, pos)
        if m is None:  # only separators left, or a key would start with `=` or `"`
            if max(text[pos:]) > " ":
                raise ValueError(f"logfmt: no key at {pos}")
            return
        key, quoted, bare = m.groups()
        pos = m.end()
        if quoted is None and pos < end and text[pos] > " ":  # a bare key or value ran into
            raise ValueError(f"logfmt: unexpected {text[pos]!r} at {pos}")  # `=` or `"`
        yield key, _unquote(quoted) if quoted else bare or ""


def _unquote(quoted: str) -> str:
    return json.loads(quoted) if "\\" in quoted else quoted[1:-1]


# -- stages ----------------------------------------------------------------------------------

_Parsed = tuple[dict[str, str], str | None, str | None]  # fields, timestamp text, new line


class _Extract(ABC):
    """What json, logfmt and regex share: what they read, and where what they find goes."""

    stage: ClassVar[str]  # the stage type failures are counted under
    reason = "pipeline_drop"  # never used: these stages never drop

    def __init__(self, source: str, timestamp: TimestampConfig) -> None:
        self._source = source  # a field to parse instead of the line
        self._ts_format = timestamp.format

    def build(self, info: StreamInfo) -> RecordStage:
        return self  # no per-stream state

    @abstractmethod
    def _parse(self, text: str) -> _Parsed | None:
        """What `text` holds, or None if it is not what this stage parses."""

    def apply(self, record: Record, env: Env) -> bool:
        text = record.field(self._source) if self._source else record.line
        parsed = None if text is None else self._parse(text)  # None text: no source field
        if text is None or parsed is None:
            env.fail(self.stage)
            return True
        found, ts, line = parsed
        if "\\u" in text:  # Go decoders write U+FFFD for a lone surrogate escape; Python
            # keeps the surrogate, which cannot be encoded
            found = {_SURROGATE.sub("\ufffd", k): _SURROGATE.sub("\ufffd", v)
                     for k, v in found.items()}
            line = None if line is None else _SURROGATE.sub("\ufffd", line)
        if ts is not None:
            _set_time(record, env, ts, self._ts_format)
        if line is not None:
            record.line = line
        if found:
            if record.fields is None:
                record.fields = found
            else:
                record.fields.update(found)
        return True


_MISSING: Final = object()


class _Path:
    """A dotted path into a JSON object: `user.id`, `items.0.name`. A key may hold dots itself
    (`{"log.level": ...}`, as ECS writes): at each object, the rest of the path is tried as one
    key first. So a path names what the every-leaf extraction would name that value."""

    __slots__ = ("_steps",)

    def __init__(self, path: str) -> None:
        parts = path.split(".")
        self._steps = tuple((part, ".".join(parts[i:]), int(part) if part.isdecimal() else -1)
                            for i, part in enumerate(parts))

    def find(self, value: object) -> object:
        """The value at the path, or _MISSING."""
        for step, rest, index in self._steps:
            if isinstance(value, dict):
                if rest in value:
                    return value[rest]
                value = value.get(step, _MISSING)
            elif isinstance(value, list) and 0 <= index < len(value):
                value = value[index]
            else:
                return _MISSING
        return value


def _text(value: object) -> str:
    """A JSON value as a field: strings as they are, numbers, true, false and null as their
    JSON text, objects and arrays as compact JSON."""
    return str(value) if isinstance(value, str) else _compact(value)  # str(): a plain str


def _compact(value: object) -> str:
    if isinstance(value, _JsonNumber):
        return str(value)
    if isinstance(value, str):
        return encode_basestring(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{encode_basestring(k)}:{_compact(v)}"
                              for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_compact(v) for v in value) + "]"
    return "null" if value is None else "true" if value else "false"


def _leaves(obj: dict[str, object], prefix: str, skip: str | None, out: dict[str, str]) -> None:
    """Every leaf of `obj` under its dotted path; an array or an empty object is one leaf."""
    for key, value in obj.items():
        name = prefix + key
        if name == skip:
            continue
        if isinstance(value, dict) and value:
            _leaves(value, name + ".", skip, out)
        else:
            out[name] = _text(value)


class JsonSpec(_Extract):
    """Fields from a JSON object: `fields` maps a field name to a dotted path (a missing path
    sets nothing); without `fields`, every leaf under its dotted path ({"user":{"id":7}} gives
    user.id=7; keys that flatten to the same name: the later wins). `line` names the path whose
    value becomes the line (left out of the every-leaf fields). A line that is not a JSON
    object (a JSON string or number included) fails."""

    stage = "json"

    def __init__(self, config: JsonConfig) -> None:
        super().__init__(config.source, config.timestamp)
        self._fields = tuple((name, _Path(path)) for name, path in config.fields)
        self._ts = _Path(config.timestamp.source) if config.timestamp.source else None
        self._line = _Path(config.line) if config.line else None
        self._skip = config.line or None  # None: "" is a key JSON allows

    def _parse(self, text: str) -> _Parsed | None:
        obj = decode_object(text)
        if obj is None:
            return None
        found: dict[str, str] = {}
        try:
            if self._fields:
                for name, path in self._fields:
                    if (value := path.find(obj)) is not _MISSING:
                        found[name] = _text(value)
            else:
                _leaves(obj, "", self._skip, found)
            ts = _MISSING if self._ts is None else self._ts.find(obj)  # not None: JSON null
            line = _MISSING if self._line is None else self._line.find(obj)
            return (found, None if ts is _MISSING else _text(ts),
                    None if line is _MISSING else _text(line))
        except RecursionError:  # rendering an object nested nearly as deep as the stack
            return None


class LogfmtSpec(_Extract):
    """Fields from logfmt: `fields` maps a field name to a key; without it, every key (the
    `line` key aside). A repeated key: the later wins. A line with a syntax error, or without
    a single key=value pair, fails (go-logfmt would read `GET /health` as two bare keys)."""

    stage = "logfmt"

    def __init__(self, config: LogfmtConfig) -> None:
        super().__init__(config.source, config.timestamp)
        self._fields = config.fields
        self._ts = config.timestamp.source
        self._line = config.line

    def _parse(self, text: str) -> _Parsed | None:
        if "=" not in text:
            return None
        try:
            values = dict(logfmt(text))
        except ValueError:
            return None
        line = values.get(self._line) if self._line else None
        if self._fields:
            found = {name: values[key] for name, key in self._fields if key in values}
        else:
            found = values
            if self._line:
                found.pop(self._line, None)
        return found, values.get(self._ts) if self._ts else None, line


class RegexSpec(_Extract):
    """Fields from the named groups of `expression`, searched in the line: `fields` maps a
    field name to a group; without it, every named group under its own name (the `line`
    group aside). A group that took no part in the match sets nothing. No match fails."""

    stage = "regex"

    def __init__(self, config: RegexConfig) -> None:
        super().__init__(config.source, config.timestamp)
        self._pattern = re.compile(config.expression)
        self._fields = config.fields or tuple((group, group) for group in self._pattern.groupindex
                                              if group != config.line)
        self._ts = config.timestamp.source
        self._line = config.line

    def _parse(self, text: str) -> _Parsed | None:
        m = self._pattern.search(text)
        if m is None:
            return None
        groups = m.groupdict()  # .get: a timestamp or line group the expression lacks is unset
        found = {name: value for name, group in self._fields
                 if (value := groups.get(group)) is not None}
        return (found, groups.get(self._ts) if self._ts else None,
                groups.get(self._line) if self._line else None)


class TimestampSpec:
    """Sets the record's time from the field `source`, read in `format`. A missing field
    changes nothing; a value that does not parse fails and keeps the time."""

    reason = "pipeline_drop"  # never used: this stage never drops

    def __init__(self, config: TimestampConfig) -> None:
        self._source = config.source
        self._format = config.format

    def build(self, info: StreamInfo) -> RecordStage:
        return self

    def apply(self, record: Record, env: Env) -> bool:
        value = record.field(self._source)
        if value is not None:
            _set_time(record, env, value, self._format)
        return True
