"""Reading YAML into frozen config dataclasses, strictly: every key known, every value of its
field's type, units understood, and every error naming the key and the reason."""

from __future__ import annotations

import dataclasses
import keyword
import re
import typing
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

# Markers for values written with units in YAML: durations ("500ms", "10s", "5m") become float
# seconds, sizes ("256KiB", "1MiB" or a plain int) become int bytes.
DURATION = "duration"
SIZE = "size"
STRING_MAP = "string map"
Seconds = Annotated[float, DURATION]
Bytes = Annotated[int, SIZE]
# A mapping of names to strings, kept in order as pairs (frozen); a list of names maps each to
# itself: `fields: [a, b]` means `fields: {a: a, b: b}`.
StrMap = Annotated[tuple[tuple[str, str], ...], STRING_MAP]


class ConfigError(ValueError):
    """A config value is wrong: names the key and the reason."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config key '{key}': {reason}")
        self.key = key
        self.reason = reason


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2,
               "GB": 1000**3, "GiB": 1024**3}


def _duration(key: str, value: object) -> float:
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a duration such as 500ms, 10s or 5m, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ConfigError(key, f"expected a duration such as 500ms, 10s or 5m, got {value!r}")
    if seconds <= 0:
        raise ConfigError(key, f"duration must be positive, got {value!r}")
    return seconds


def _size(key: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE_RE.match(value)):
        size = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    else:
        raise ConfigError(key, f"expected a size in bytes such as 1048576 or 1MiB, got {value!r}")
    if size <= 0:
        raise ConfigError(key, f"size must be positive, got {value!r}")
    return size


def _string_map(key: str, value: object) -> tuple[tuple[str, str], ...]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple((v, v) for v in value)
    scalar = str | int | float | bool
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, scalar) for k, v in value.items()):
        raise ConfigError(key, f"expected a mapping of names to strings, got {value!r}")
    return tuple((k, str(v).lower() if isinstance(v, bool) else str(v))
                 for k, v in value.items())


def _convert(key: str, hint: Any, value: object) -> Any:
    origin = get_origin(hint)
    if origin is Annotated:
        marker = get_args(hint)[1]
        if marker == STRING_MAP:
            return _string_map(key, value)
        return _duration(key, value) if marker == DURATION else _size(key, value)
    if dataclasses.is_dataclass(hint):
        return build(key, typing.cast(type, hint), value)
    if origin is Literal:
        choices = get_args(hint)
        text = str(value).lower() if isinstance(value, bool | str) else value
        if text not in choices:
            raise ConfigError(key, f"expected one of {', '.join(map(str, choices))}, got {value!r}")
        return text
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, f"expected a list of strings, got {value!r}")
        return tuple(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(key, f"expected a positive integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(key, f"expected a positive number, got {value!r}")
        return float(value)
    if hint is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a bug here, not the user's


def build(prefix: str, cls: type, raw: object) -> Any:
    """A config dataclass from its YAML mapping: every key known, every value converted by its
    field's type. A field named like a Python keyword plus "_" (from_) is written without it."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(prefix or "<root>", f"expected a mapping, got {raw!r}")
    hints = get_type_hints(cls, include_extras=True)
    known = {f.name.removesuffix("_") if keyword.iskeyword(f.name.removesuffix("_")) else f.name:
             f.name for f in dataclasses.fields(cls)}
    for name in raw:
        if name not in known:
            where = f"{prefix}.{name}" if prefix else str(name)
            raise ConfigError(where, f"unknown key (known here: {', '.join(sorted(known))})")
    values = {known[name]: _convert(f"{prefix}.{name}" if prefix else name, hints[known[name]],
                                    raw[name])
              for name in raw}
    return cls(**values)


