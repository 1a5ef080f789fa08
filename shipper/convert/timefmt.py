"""Timestamp layouts of the Collector (strptime with its own directives, Go reference times,
epoch units) as the formats shipper's timestamp options read."""

from __future__ import annotations

from shipper.convert.report import Unsupported

Token = tuple[str, str]  # ("lit", text) or ("dir", a Python strptime directive or a marker)
_NS_FRACTION = "frac9"  # nanoseconds: more digits than Python's %f takes
_OFFSET_HOURS = "offset_hh"  # ±HH alone: Python's %z wants minutes too

# The Collector's strptime directives that differ from Python's (pkg/stanza docs, timestamp.md)
_STRPTIME = {"o": "%m", "q": "%m", "e": "%d", "g": "%d", "l": "%I", "P": "%p", "L": "%f",
             "f": "%f", "s": _NS_FRACTION, "i": _OFFSET_HOURS, "j": "%z", "k": "%z",
             "D": "%m/%d/%y", "F": "%Y-%m-%d", "T": "%H:%M:%S", "r": "%I:%M:%S %p",
             "c": "%a %b %d %H:%M:%S %Y", "R": "%H:%M", "n": "\n", "t": "\t"}
_SAME = set("YymbBdaAHIpMSZz")

# Go reference-time chunks, longest first where one is a prefix of another (time/format.go)
_GOTIME = [("January", "%B"), ("Jan", "%b"), ("Monday", "%A"), ("Mon", "%a"), ("MST", "%Z"),
           ("2006", "%Y"), ("Z07:00:00", "%z"), ("-07:00:00", "%z"), ("Z07:00", "%z"),
           ("-07:00", "%z"), ("Z0700", "%z"), ("-0700", "%z"), ("Z07", _OFFSET_HOURS),
           ("-07", _OFFSET_HOURS), ("01", "%m"), ("02", "%d"), ("03", "%I"), ("04", "%M"),
           ("05", "%S"), ("06", "%y"), ("_2", "%d"), ("15", "%H"), ("1", "%m"), ("2", "%d"),
           ("3", "%I"), ("4", "%M"), ("5", "%S"), ("PM", "%p"), ("pm", "%p")]
_EPOCH = {"s": "unix", "ms": "unix_ms", "us": "unix_us", "ns": "unix_ns", "s.ms": "unix",
          "s.us": "unix", "s.ns": "unix"}
_RFC3339 = [("dir", "%Y"), ("lit", "-"), ("dir", "%m"), ("lit", "-"), ("dir", "%d"),
            ("lit", "T"), ("dir", "%H"), ("lit", ":"), ("dir", "%M"), ("lit", ":"),
            ("dir", "%S")]


def _strptime_tokens(layout: str, path: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(layout):
        if layout[i] != "%":
            tokens.append(("lit", layout[i]))
            i += 1
            continue
        code = layout[i + 1:i + 2]
        if code == "%":
            tokens.append(("lit", "%"))
        elif code in _SAME:
            tokens.append(("dir", "%" + code))
        elif code in _STRPTIME:
            expanded = _STRPTIME[code]
            if expanded.startswith("%") and len(expanded) > 2:  # a shorthand such as %F
                tokens += _strptime_tokens(expanded, path)
            else:
                tokens.append(("dir", expanded) if expanded.startswith("%") or expanded in (
                    _NS_FRACTION, _OFFSET_HOURS) else ("lit", expanded))
        else:
            raise Unsupported(path, f"unknown strptime directive %{code} in {layout!r}")
        i += 2
    return tokens


def _gotime_tokens(layout: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(layout):
        if layout[i] in ".," and layout[i + 1:i + 2] in ("0", "9"):
            digit = layout[i + 1]
            j = i + 1
            while j < len(layout) and layout[j] == digit:
                j += 1
            if not layout[j:j + 1].isdigit():  # a fraction of a second
                tokens += [("lit", layout[i]), ("dir", "%f" if j - i - 1 <= 6 else _NS_FRACTION)]
                i = j
                continue
        for chunk, directive in _GOTIME:
            if layout.startswith(chunk, i):
                tokens.append(("dir", directive))
                i += len(chunk)
                break
        else:
            tokens.append(("lit", layout[i]))
            i += 1
    return tokens


def _finish(tokens: list[Token], layout: str, path: str) -> str:
    """"rfc3339" for an RFC 3339 shape (shipper's parser takes any fraction, to the
    nanosecond), else the Python strptime pattern."""
    rest = tokens[len(_RFC3339):]
    if tokens[:len(_RFC3339)] == _RFC3339:
        if rest[:1] == [("lit", ".")] and rest[1:2] in ([("dir", "%f")], [("dir", _NS_FRACTION)]):
            rest = rest[2:]
        if rest in ([("lit", "Z")], [("dir", "%z")]):
            return "rfc3339"
    for kind, value in tokens:
        if kind == "dir" and value in (_NS_FRACTION, _OFFSET_HOURS):
            what = "nanoseconds" if value == _NS_FRACTION else "a ±HH offset without minutes"
            raise Unsupported(path, f"{layout!r} has {what}, which Python's strptime cannot "
                              "read outside an RFC 3339 timestamp")
    return "".join(value if kind == "dir" else value.replace("%", "%%") for kind, value in tokens)


def timestamp_format(layout_type: str, layout: str, path: str) -> str:
    """A Collector timestamp layout as shipper's `format`: rfc3339, unix, unix_ms, unix_us,
    unix_ns, or a Python strptime pattern."""
    if layout_type == "epoch":
        if layout not in _EPOCH:
            raise Unsupported(path, f"unknown epoch layout {layout!r} "
                              f"(known: {', '.join(_EPOCH)})")
        return _EPOCH[layout]
    if layout_type == "gotime":
        return _finish(_gotime_tokens(layout), layout, path)
    if layout_type in ("strptime", ""):
        return _finish(_strptime_tokens(layout, path), layout, path)
    raise Unsupported(path, f"unknown layout_type {layout_type!r} (strptime, gotime or epoch)")
