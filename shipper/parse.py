"""Parse stage: raw CRI and Docker json-file lines become timestamped, joined, UTF-8-safe lines."""

from __future__ import annotations

import calendar
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from shipper.model import Entry, Stream

# The cache key of a timestamp's seconds: its first 19 bytes, then "." if a fraction follows, then
# the zone unless it is "Z". So the common "Z" with a fraction is keyed by one slice, t[:20].
_SECONDS_RE = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.?(?:([+-])(\d\d):(\d\d))?")
# ns per unit of the last fraction digit, by number of fraction digits
_FRACTION_SCALE: tuple[int, ...] = tuple(10 ** (9 - digits) for digits in range(10))
# Per file: lines come in time order, so a few recent seconds hit nearly always, and 500 files
# x 4096 cached seconds would have cost ~300 MiB on a node whose logs run for an hour.
_SECONDS_CACHE_MAX = 16
SAMPLE_BYTES: Final = 80  # of the last bad line, kept for the warning that reports it


@dataclass(slots=True)
class ParseCounts:
    """Cumulative counts; the tailer reads their deltas into metrics."""

    lines: int = 0  # raw lines seen
    unparsable: int = 0  # neither CRI nor Docker: shipped unchanged, read time, as stdout
    truncated: int = 0  # joined line longer than max_line_bytes: cut, counted once per entry
    invalid_utf8: int = 0  # entries whose invalid UTF-8 was replaced (U+FFFD)
    blank: int = 0  # empty raw lines: skipped, counted
    discarded: int = 0  # message bytes of a partial line's parts after its head was shipped


@dataclass(slots=True)
class _Partial:
    """One stream's line being joined from partial parts (CRI "P" lines, Docker records without
    a trailing newline). Pending while `parts` is non-empty, unless `discarding`: a line whose
    head was shipped keeps one empty marker in `parts` until its last part, so that the part
    reaches _complete through the `if parts` test every full line meets anyway (the hot loop
    pays nothing per line for discarding)."""

    stream: Stream  # where its lines go
    parts: list[bytes] = field(default_factory=list)
    size: int = 0  # bytes in parts; never past max_line_bytes for long (the head is shipped)
    discarding: bool = False  # its head was shipped: later parts are dropped up to the last
    ts: int = 0  # the first part's: a joined line takes it
    start: int = 0  # file offset of the first part's line, once index is resolved
    index: int = -1  # the first part's line index within the current parse() call, or -1


def _char_boundary(line: bytes, limit: int) -> int:
    """The largest cut <= limit (len(line) > limit) that does not split a UTF-8 character."""
    end = limit
    # a character has at most 3 continuation bytes (0b10xxxxxx); past that it was invalid anyway
    while end > 0 and end > limit - 3 and line[end] & 0xC0 == 0x80:
        end -= 1
    return end


class FileParser:
    """One per file. Detects the format from the first non-blank line (b'{' -> Docker json-file,
    else CRI) and joins partial lines per stream (stdout and stderr separately). Each line comes
    out as the entry it is, tagged with the Stream of its output (no per-line re-mapping)."""

    def __init__(self, max_line_bytes: int, stdout: Stream, stderr: Stream,
                 now_ns: Callable[[], int] = time.time_ns) -> None:
        self.format: str | None = None  # "cri" | "docker" once detected
        self.counts = ParseCounts()
        # The head of the last unparsable, truncated or invalid-UTF-8 line, as read: set on the
        # bad path only, so a good line costs nothing for it.
        self.bad_sample = b""
        self._max = max_line_bytes
        self._now_ns = now_ns
        self._seconds: dict[bytes, int] = {}  # seconds-part key -> ns since the epoch
        self._stdout = _Partial(stdout)
        self._stderr = _Partial(stderr)

    def retag(self, stdout: Stream, stderr: Stream) -> None:
        """Tag lines completed from now on differently (the pod's metadata arrived)."""
        self._stdout.stream, self._stderr.stream = stdout, stderr

    def parse(self, data: bytes, offset: int) -> tuple[list[Entry], int]:
        """`data` is whole lines, each ending in b'\\n', read from file offset `offset`.
        Returns the complete entries in file order, and the commit offset: every byte before it
        has become part of a returned entry. That is the file offset where the earliest line of
        a still-pending partial starts (a P line waiting for its F, across calls too), else
        offset + len(data)."""
        lines = data.split(b"\n")
        if not lines[-1]:
            lines.pop()  # the empty piece after the final newline
        self.counts.lines += len(lines)
        if self.format is None:
            first = next((line for line in lines if line), None)
            if first is not None:
                self.format = "docker" if first.startswith(b"{") else "cri"
        out: list[Entry] = []
        if self.format == "cri":
            self._parse_cri(lines, len(data) <= self._max and data.isascii(), out)
        elif self.format == "docker":
            self._parse_docker(lines, out)
        else:
            self.counts.blank += len(lines)
        commit = offset + len(data)
        for partial in (self._stdout, self._stderr):
            if partial.parts and not partial.discarding:
                if partial.index >= 0:
                    partial.start = offset + sum(map(len, lines[: partial.index])) + partial.index
                    partial.index = -1
                commit = min(commit, partial.start)
        return out, commit

    def flush(self) -> list[Entry]:
        """The file is finished (rotated and drained, or deleted): emit pending partials as they
        are."""
        out: list[Entry] = []
        for p in sorted((self._stdout, self._stderr), key=lambda p: p.start):
            if p.discarding:
                self._stop_discarding(p)  # its head is shipped: nothing pending
            elif p.parts:
                self._ship(p, out)
        return out

    def _parse_cri(self, lines: list[bytes], plain: bool, out: list[Entry]) -> None:
        # The hot path, so written for speed: locals instead of attributes, the common timestamp
        # shape parsed inline, and no call but split, isdigit and int for a full line. `plain`
        # says the whole chunk is ASCII and shorter than max_line_bytes: no line needs _clean.
        cap = self._max
        append = out.append
        seconds = self._seconds.get
        scale = _FRACTION_SCALE
        stdout, stderr = self._stdout, self._stderr
        stdout_parts, stderr_parts = stdout.parts, stderr.parts
        stdout_tag, stderr_tag = stdout.stream, stderr.stream
        blank = 0
        for i, line in enumerate(lines):
            if not line:
                blank += 1
                continue
            try:
                t, s, tag, msg = line.split(b" ", 3)
            except ValueError:
                fields = line.split(b" ")
                if len(fields) != 3:
                    self._unparsable(line, out)
                    continue
                t, s, tag = fields  # "... stdout F" with the separator before the empty message
                msg = b""
            if s == b"stdout":
                partial, parts, stream = stdout, stdout_parts, stdout_tag
            elif s == b"stderr":
                partial, parts, stream = stderr, stderr_parts, stderr_tag
            else:
                self._unparsable(line, out)
                continue
            # _timestamp's fast path inline: cached seconds, "Z", 1-9 fraction digits
            base = seconds(t[:20])
            if (base is not None and t[-1] == 90  # b"Z"
                    and (fraction := t[20:-1]).isdigit() and len(fraction) <= 9):
                ts = base + int(fraction) * scale[len(fraction)]
            else:
                parsed = self._timestamp(t)
                if parsed is None:
                    self._unparsable(line, out)
                    continue
                ts = parsed
            if tag == b"F" or tag[:2] == b"F:":
                if parts:
                    self._complete(partial, msg, out)
                elif plain or (len(msg) <= cap and msg.isascii()):
                    append((ts, msg, stream))
                else:
                    append((ts, self._clean(msg), stream))
            elif tag == b"P" or tag[:2] == b"P:":
                self._add_part(partial, ts, msg, i, out)
            else:
                self._unparsable(line, out)
        self.counts.blank += blank

    def _parse_docker(self, lines: list[bytes], out: list[Entry]) -> None:
        for i, line in enumerate(lines):
            if not line:
                self.counts.blank += 1
                continue
            record = self._docker_fast(line) or self._docker_json(line)
            if record is None:
                self._unparsable(line, out)
                continue
            msg, full, partial, ts = record
            if not full:
                self._add_part(partial, ts, msg, i, out)
            elif partial.parts:
                self._complete(partial, msg, out)
            else:
                out.append((ts, self._clean(msg), partial.stream))

    # A Docker record: (log without its final newline, whether it had one, its stream, time in
    # ns). A log without the newline is a partial: Docker splits long lines at 16 KiB.
    def _docker_fast(self, line: bytes) -> tuple[bytes, bool, _Partial, int] | None:
        """The common record without json.loads: Docker writes the keys in this order, and when
        the log is ASCII with nothing escaped but a final newline, its fields are plain slices.
        None sends the line to _docker_json, which gives the same answer, only slower."""
        end = line.rfind(b'","stream":"')
        if end < 0 or not line.startswith(b'{"log":"') or not line.endswith(b'"}'):
            return None
        full = line[end - 2:end] == b"\\n"
        log = line[8:end - 2] if full else line[8:end]
        if not log.isascii() or b"\\" in log or b'"' in log:  # escapes need JSON's own rules
            return None
        tail = line[end + 12:]  # b'stdout","time":"<timestamp>"}'
        if tail[6:16] != b'","time":"':
            return None
        stream = tail[:6]
        if stream == b"stdout":
            partial = self._stdout
        elif stream == b"stderr":
            partial = self._stderr
        else:
            return None
        ts = self._timestamp(tail[16:-2])
        return None if ts is None else (log, full, partial, ts)

    def _docker_json(self, line: bytes) -> tuple[bytes, bool, _Partial, int] | None:
        try:
            # strict=False: a raw control character in a string is taken as is, as the fast
            # path takes it
            record = json.loads(line, strict=False)
        except (ValueError, RecursionError):  # JSON and UTF-8 errors are ValueErrors
            return None
        if type(record) is not dict:
            return None
        log, stream, t = record.get("log"), record.get("stream"), record.get("time")
        if not (isinstance(log, str) and stream in ("stdout", "stderr") and isinstance(t, str)
                and t.isascii()):
            return None
        ts = self._timestamp(t.encode())
        if ts is None:
            return None
        full = log.endswith("\n")
        # surrogatepass: a "\ud800" escape decodes to a lone surrogate; _clean replaces it
        return (log[:-1].encode("utf-8", "surrogatepass") if full else
                log.encode("utf-8", "surrogatepass"), full,
                self._stdout if stream == "stdout" else self._stderr, ts)

    def _add_part(self, partial: _Partial, ts: int, msg: bytes, index: int,
                  out: list[Entry]) -> None:
        if partial.discarding:
            self.counts.discarded += len(msg)
            return
        if not partial.parts:
            partial.ts, partial.index, partial.size = ts, index, 0
        partial.parts.append(msg)
        partial.size += len(msg)
        if partial.size > self._max:
            # Longer than any line can be shipped: ship its head (truncated) now, so that the
            # commit offset passes it. A line whose last part never comes must not pin the file
            # (every restart would send all that follows again); the rest of it is dropped.
            self._ship(partial, out)
            partial.parts.append(b"")  # the marker
            partial.discarding = True

    def _complete(self, partial: _Partial, last: bytes, out: list[Entry]) -> None:
        if partial.discarding:  # the last part of a line whose head is shipped
            self.counts.discarded += len(last)
            self._stop_discarding(partial)
            return
        partial.parts.append(last)
        self._ship(partial, out)

    def _stop_discarding(self, partial: _Partial) -> None:
        partial.parts.clear()
        partial.discarding = False

    def _ship(self, partial: _Partial, out: list[Entry]) -> None:
        line = b"".join(partial.parts)
        partial.parts.clear()
        out.append((partial.ts, self._clean(line), partial.stream))

    def _unparsable(self, line: bytes, out: list[Entry]) -> None:
        self.counts.unparsable += 1
        self.bad_sample = line[:SAMPLE_BYTES]
        out.append((self._now_ns(), self._clean(line), self._stdout.stream))

    def _clean(self, line: bytes) -> bytes:
        """Cut to max_line_bytes at a character boundary and replace invalid UTF-8."""
        cap = self._max
        raw = line
        truncated = len(line) > cap
        if truncated:
            line = line[: _char_boundary(line, cap)]
        if not line.isascii():
            try:
                line.decode()
            except UnicodeDecodeError:
                self.counts.invalid_utf8 += 1
                self.bad_sample = raw[:SAMPLE_BYTES]
                line = line.decode(errors="replace").encode()
                if len(line) > cap:  # each replacement takes 3 bytes where 1-3 were
                    truncated = True
                    line = line[: _char_boundary(line, cap)]
        if truncated:
            self.counts.truncated += 1
            self.bad_sample = raw[:SAMPLE_BYTES]
        return line

    def _timestamp(self, t: bytes) -> int | None:
        """RFC3339 with 0-9 fraction digits and a 'Z' or +hh:mm zone, to exact ns; None if bad."""
        # the common shape first; _parse_cri has this inline
        base = self._seconds.get(t[:20])
        if (base is not None and t[-1] == 90  # b"Z"
                and (fraction := t[20:-1]).isdigit() and len(fraction) <= 9):
            return base + int(fraction) * _FRACTION_SCALE[len(fraction)]
        if t.endswith(b"Z"):
            zone, end = b"", len(t) - 1
        else:
            zone, end = t[-6:], len(t) - 6
        if end == 19:
            key, fraction = t[:19] + zone, b""
        elif 21 <= end <= 29:
            key, fraction = t[:20] + zone, t[20:end]  # t[:20] ends in "." or is refused
            if not fraction.isdigit():
                return None
        else:
            return None
        base = self._seconds.get(key)
        if base is None:
            base = self._seconds_ns(key)
            if base is None:
                return None
        return base + int(fraction) * _FRACTION_SCALE[len(fraction)] if fraction else base

    def _seconds_ns(self, key: bytes) -> int | None:
        m = _SECONDS_RE.fullmatch(key)
        if m is None:
            return None
        year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
        sign, zone_hours, zone_minutes = m.group(7, 8, 9)
        if not (year >= 1 and 1 <= month <= 12 and hour <= 23 and minute <= 59 and second <= 59
                and 1 <= day <= calendar.monthrange(year, month)[1]):
            return None
        seconds = calendar.timegm((year, month, day, hour, minute, second))
        if sign is not None:
            zone_hours, zone_minutes = int(zone_hours), int(zone_minutes)
            if zone_hours > 23 or zone_minutes > 59:
                return None
            # local time = UTC + offset, so UTC = local - offset
            zone = zone_hours * 3600 + zone_minutes * 60
            seconds -= zone if sign == b"+" else -zone
        if len(self._seconds) >= _SECONDS_CACHE_MAX:
            self._seconds.clear()
        ns = self._seconds[key] = seconds * 1_000_000_000
        return ns
