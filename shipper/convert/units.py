"""Values written the Go way (durations, byte sizes, RE2 regexes, $1 replacements) in the
forms shipper reads."""

from __future__ import annotations

import re

from shipper.convert.report import Unsupported

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                   "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.I)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024, "m": 1000**2,
               "mb": 1000**2, "mi": 1024**2, "mib": 1024**2, "g": 1000**3, "gb": 1000**3,
               "gi": 1024**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "ti": 1024**4,
               "tib": 1024**4}


def seconds(value: object, path: str) -> float:
    """A Go duration ("10s", "1m30s", "500ms"; a bare number is nanoseconds, as Go reads it)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value / 1e9
    if isinstance(value, str):
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        if body == "0":
            return 0.0
        parts = _GO_DURATION.findall(body)
        if parts and "".join(n + u for n, u in parts) == body:
            return sign * sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    raise Unsupported(path, f"expected a duration such as 10s or 500ms, got {value!r}")


def duration(secs: float) -> str:
    """Seconds written the way shipper's config reads them: 10s, 500ms, 5m, 1.5s."""
    ms = round(secs * 1000, 6)
    if ms < 1000 and ms == int(ms):
        return f"{int(ms)}ms"
    if secs == int(secs):
        whole = int(secs)
        return f"{whole // 3600}h" if whole % 3600 == 0 else (
            f"{whole // 60}m" if whole % 60 == 0 else f"{whole}s")
    return f"{secs:.6f}".rstrip("0") + "s"


def size(value: object, path: str) -> int:
    """A byte size as the Collector reads it: 1048576, 1MiB, 1mib, 1MB, 100kb."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and (m := _SIZE.match(value)):
        return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()])
    raise Unsupported(path, f"expected a size such as 1048576 or 1MiB, got {value!r}")


# -- regular expressions: Go's RE2 syntax to Python's re ------------------------------------

_POSIX = {"alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "ascii": "\\x00-\\x7f", "blank": " \\t",
          "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
          "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ",
          "upper": "A-Z", "word": "\\w", "xdigit": "0-9A-Fa-f"}
_GO_ONLY = re.compile(r"\\[pP]|\\C|\(\?[a-zA-Z]*U")


def go_regex(pattern: str, path: str) -> str:
    """An RE2 pattern rewritten for Python: (?<name>) named groups, \\z, [[:alpha:]] classes and
    \\Q...\\E quoting have Python spellings; Unicode classes (\\pL) and ungreedy mode do not."""
    if m := _GO_ONLY.search(pattern):
        raise Unsupported(path, f"the RE2 construct {m.group()!r} has no Python equivalent "
                          f"(in {pattern!r})")
    out = re.sub(r"\\Q(.*?)(?:\\E|$)", lambda q: re.escape(q.group(1)), pattern, flags=re.S)
    out = out.replace("(?<", "(?P<").replace("(?P<=", "(?<=").replace("(?P<!", "(?<!")
    out = re.sub(r"(?<!\\)((?:\\\\)*)\\z", r"\1\\Z", out)
    out = re.sub(r"\[:(\w+):\]", lambda c: _POSIX.get(c.group(1), c.group()), out)
    try:
        re.compile(out)
    except re.error as exc:
        raise Unsupported(path, f"not a regex Python reads: {exc} (in {pattern!r})") from None
    return out


def go_replacement(template: str) -> str:
    """A Go replacement ($1, ${1}, $name, ${name}, $$) as a Python one (\\g<1>, \\g<name>)."""
    def one(m: re.Match[str]) -> str:
        if m.group() == "$$":
            return "$"
        return f"\\g<{m.group(1) or m.group(2)}>"

    escaped = template.replace("\\", "\\\\")
    return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", one, escaped)
