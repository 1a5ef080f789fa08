"""Parse stage: raw CRI and Docker json-file lines become timestamped, joined, UTF-8-safe lines."""

from __future__ import annotations

import calendar
import io
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from mypy_extensions import i64

from shipper.model import Entry, Stream

# The cache key of a timestamp's seconds: its first 19 bytes, then "." if a fraction follows, then
# the zone unless it is "Z". So the common "Z" with a fraction is keyed by one slice, t[:20].
_SECONDS_RE = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.?(?:([+-])(\d\d):(\d\d))?")
# ns per unit of the last fraction digit, by number of fraction digits
_FRACTION_SCALE: tuple[int, ...] = tuple(10 ** (9 - digits) for digits in range(10))
# Called as a function: mypyc has no primitive for bytes.isascii, and as a method it was looked
# up by name at each call (measured: ~150 instructions a call more, on every CRI line of a chunk
# that holds one non-ASCII byte).
_IS_ASCII: Final = bytes.isascii
SAMPLE_BYTES: Final = 80  # of the last bad line, kept for the warning that reports it
# Bytes the CRI fast path compares, by value (compiled, a constant is no lookup).
_NL: Final = 10  # b"\n"
_SPACE: Final = 32
_DOT: Final = 46
_ZERO: Final = 48
_NINE: Final = 57
_Z: Final = 90
_F: Final = 70
_P: Final = 80


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
    start: int = 0  # file offset of the first part's line


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
        self.parsed_bytes = 0  # line bytes of the entries the last parse() returned
        self._max = max_line_bytes
        self._now_ns = now_ns
        # The last second seen (lines come in time order, so it nearly always hits): its
        # timestamp's key (see _timestamp) and ns since the epoch. One entry, not a dict: a
        # dict per file cost ~1 KiB of the 2,000-file budget.
        self._second = b""
        self._second_ns = 0
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
        offset + len(data). `parsed_bytes` is then the returned entries' line bytes."""
        self.parsed_bytes = 0
        if self.format is None:
            first = 0
            while first < len(data) and data[first] == _NL:
                first += 1
            if first < len(data):
                self.format = "docker" if data[first] == 123 else "cri"  # b"{"
        out: list[Entry] = []
        if self.format == "cri":
            self._parse_cri(data, offset, len(data) <= self._max and data.isascii(), out)
        elif self.format == "docker":
            self._parse_docker(data, offset, out)
        else:
            blank = data.count(b"\n")
            self.counts.lines += blank
            self.counts.blank += blank
        commit = offset + len(data)
        for partial in (self._stdout, self._stderr):
            if partial.parts and not partial.discarding:
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

    def _parse_cri(self, data: bytes, offset: int, plain: bool, out: list[Entry]) -> None:
        # The hot path (measured: ~6,600 instructions a line when it split the chunk into lines
        # and each line into fields). Lines come from a BytesIO's iterator (memchr, no
        # arguments to parse: bytes.find cost 1,300 instructions a call), and the common shape,
        # "<seconds>.<1-9 digits>Z std{out,err} {F,P} <message>", is read byte by byte in
        # place: no object per field, the fraction's digits summed here rather than by int().
        # Anything else takes _cri_line, which splits the line as before. `plain` says the
        # whole chunk is ASCII and shorter than max_line_bytes: no line needs _clean.
        # Positions and digits are i64, so mypyc does their arithmetic and comparisons in C
        # rather than on tagged ints (measured: -670 instructions a line).
        cap = self._max
        scale = _FRACTION_SCALE
        stdout, stderr = self._stdout, self._stderr
        stdout_parts, stderr_parts = stdout.parts, stderr.parts
        lines = blank = parsed = 0
        start = offset  # of the current line
        for line in io.BytesIO(data):
            size: i64 = len(line)
            end: i64 = size - 1 if line[size - 1] == _NL else size  # the last: maybe no \n
            lines += 1
            if not end:
                blank += 1
                start += size
                continue
            at: i64 = 20  # past "YYYY-MM-DDTHH:MM:SS."
            if at < end and line[at - 1] == _DOT:
                # startswith, not a slice and ==: no bytes object a line. A key of another
                # shape (a zone, no fraction) is another length, so it cannot pass for this one.
                second = self._second
                if ((len(second) == 20 and line.startswith(second))
                        or self._remember(line[:at])):
                    fraction: i64 = 0
                    digit: i64 = 0
                    while at < end and _ZERO <= (digit := line[at]) <= _NINE:
                        fraction = fraction * 10 + digit - _ZERO
                        at += 1
                    digits: i64 = at - 20
                    # "Z stdout F " or "Z stderr P ": 11 bytes, the message after them
                    if (0 < digits <= 9 and at + 10 <= end and line[at] == _Z
                            and line[at + 1] == _SPACE and line[at + 2] == 115  # b"s"
                            and line[at + 3] == 116 and line[at + 4] == 100  # b"td"
                            and line[at + 8] == _SPACE and (at + 10 == end
                                                            or line[at + 10] == _SPACE)):
                        o, u, t = line[at + 5], line[at + 6], line[at + 7]
                        tag = line[at + 9]
                        if o == 111 and u == 117 and t == 116:  # b"out"
                            partial, parts = stdout, stdout_parts
                        elif o == 101 and u == 114 and t == 114:  # b"err"
                            partial, parts = stderr, stderr_parts
                        else:
                            tag = 0  # neither: _cri_line says why
                        if tag in (_F, _P):
                            # int: ns since the epoch outgrow i64 in 2262
                            ts = self._second_ns + int(fraction * scale[digits])
                            msg = line[at + 11:end] if at + 10 < end else b""
                            if tag == _P:
                                self._add_part(partial, ts, msg, start, out)
                            elif parts:
                                self._complete(partial, msg, out)
                            elif plain or (len(msg) <= cap and _IS_ASCII(msg)):
                                out.append((ts, msg, partial.stream))
                                parsed += len(msg)
                            else:
                                self._append(out, ts, self._clean(msg), partial.stream)
                            start += size
                            continue
            self._cri_line(line[:end], start, out)
            start += size
        self.counts.lines += lines
        self.counts.blank += blank
        self.parsed_bytes += parsed

    def _remember(self, key: bytes) -> bool:
        """Whether `key` ("YYYY-MM-DDTHH:MM:SS.") is a valid second, now the one cached."""
        ns = self._seconds_ns(key)
        if ns is None:
            return False
        self._second, self._second_ns = key, ns
        return True

    def _cri_line(self, line: bytes, start: int, out: list[Entry]) -> None:
        """Any CRI line, split into its fields (the fast path in _parse_cri takes most)."""
        try:
            t, s, tag, msg = line.split(b" ", 3)
        except ValueError:
            fields = line.split(b" ")
            if len(fields) != 3:
                self._unparsable(line, out)
                return
            t, s, tag = fields  # "... stdout F" with the separator before the empty message
            msg = b""
        if s == b"stdout":
            partial = self._stdout
        elif s == b"stderr":
            partial = self._stderr
        else:
            self._unparsable(line, out)
            return
        ts = self._timestamp(t)
        if ts is None:
            self._unparsable(line, out)
        elif tag == b"F" or tag[:2] == b"F:":
            if partial.parts:
                self._complete(partial, msg, out)
            else:
                self._append(out, ts, self._clean(msg), partial.stream)
        elif tag == b"P" or tag[:2] == b"P:":
            self._add_part(partial, ts, msg, start, out)
        else:
            self._unparsable(line, out)

    def _append(self, out: list[Entry], ts: int, line: bytes, stream: Stream) -> None:
        out.append((ts, line, stream))
        self.parsed_bytes += len(line)

    def _parse_docker(self, data: bytes, offset: int, out: list[Entry]) -> None:
        lines = blank = 0
        start = offset  # of the current line
        for raw in io.BytesIO(data):
            size = len(raw)
            lines += 1
            line = raw[:-1] if raw[size - 1] == _NL else raw  # the last may have no newline
            if not line:
                blank += 1
            elif (record := self._docker_fast(line) or self._docker_json(line)) is None:
                self._unparsable(line, out)
            else:
                msg, full, partial, ts = record
                if not full:
                    self._add_part(partial, ts, msg, start, out)
                elif partial.parts:
                    self._complete(partial, msg, out)
                else:
                    self._append(out, ts, self._clean(msg), partial.stream)
            start += size
        self.counts.lines += lines
        self.counts.blank += blank

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
        # Escapes need JSON's own rules. find, not `in`: compiled, `in` asked the bytes for an
        # int first, raising and clearing a TypeError each time (measured: 3,600 instructions).
        if not _IS_ASCII(log) or log.find(b"\\") >= 0 or log.find(b'"') >= 0:
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

    def _add_part(self, partial: _Partial, ts: int, msg: bytes, start: int,
                  out: list[Entry]) -> None:
        """A part of a line, which starts at file offset `start`."""
        if partial.discarding:
            self.counts.discarded += len(msg)
            return
        if not partial.parts:
            partial.ts, partial.start, partial.size = ts, start, 0
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
        self._append(out, partial.ts, self._clean(line), partial.stream)

    def _unparsable(self, line: bytes, out: list[Entry]) -> None:
        self.counts.unparsable += 1
        self.bad_sample = line[:SAMPLE_BYTES]
        self._append(out, self._now_ns(), self._clean(line), self._stdout.stream)

    def _clean(self, line: bytes) -> bytes:
        """Cut to max_line_bytes at a character boundary and replace invalid UTF-8."""
        cap = self._max
        raw = line
        truncated = len(line) > cap
        if truncated:
            line = line[: _char_boundary(line, cap)]
        if not _IS_ASCII(line):
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
        end = len(t) - 1
        if 20 < end <= 29 and t[end] == _Z and t[:20] == self._second:
            # Docker's usual shape, in the cached second: the digits summed in place, as
            # _parse_cri does (isdigit and int() were two generic calls, ~1,000 instructions).
            units = 0  # of the last fraction digit
            for at in range(20, end):
                digit = t[at]
                if not _ZERO <= digit <= _NINE:
                    return None
                units = units * 10 + digit - _ZERO
            return self._second_ns + units * _FRACTION_SCALE[end - 20]
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
        if key != self._second and not self._remember(key):
            return None
        base = self._second_ns
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
        return seconds * 1_000_000_000
