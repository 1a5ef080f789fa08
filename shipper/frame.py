"""Line framing: a file's bytes, read in arbitrary pieces, cut into whole lines."""

from __future__ import annotations

from dataclasses import dataclass

ENVELOPE = 4096  # room for the CRI/Docker envelope around a line of max_line_bytes


@dataclass(slots=True)
class Lines:
    """Whole lines (each ending in b"\\n") as read from one file."""

    data: bytes
    offset: int  # file offset of data's first byte
    skipped: int  # bytes of an overlong line left out of data; they end before data's last line


@dataclass(slots=True)
class LineFramer:
    """Keeps the incomplete last line of what was read until its newline arrives. A line longer
    than `cap` keeps its head only, and the rest up to its newline is skipped: memory per file
    stays bounded whatever the file holds."""

    cap: int  # longest incomplete line kept whole (max_line_bytes + ENVELOPE)
    offset: int  # file offset of the next byte fed
    line_start: int = -1  # file offset where `tail` starts (-1: offset)
    tail: bytes = b""  # the incomplete last line
    skipping: bool = False  # the incomplete line outgrew the cap: its rest is discarded

    def __post_init__(self) -> None:
        if self.line_start < 0:
            self.line_start = self.offset

    def feed(self, data: bytes) -> Lines | None:
        """The whole lines completed by `data` (the next bytes of the file), or None."""
        self.offset += len(data)
        skipped = 0
        if self.skipping:  # the rest of an overlong line: drop it up to its newline
            newline = data.find(b"\n")
            if newline < 0:
                return None
            skipped = self.offset - len(data) + newline - (self.line_start + len(self.tail))
            data, self.skipping = data[newline:], False
        cut = data.rfind(b"\n") + 1
        if not cut:
            self.tail += data
            if len(self.tail) > self.cap:  # a line with no end in sight: keep its head only
                self.tail, self.skipping = self.tail[:self.cap], True
            return None
        if cut == len(data) and not self.tail:
            complete = data
        else:  # one copy of the chunk (tail + data, then a slice of it, was two)
            with memoryview(data) as view:
                complete = b"".join((self.tail, view[:cut]))
        self.tail = data[cut:]
        start, self.line_start = self.line_start, self.offset - len(self.tail)
        return Lines(complete, start, skipped)

    def rest(self) -> Lines | None:
        """The unterminated last line, once no more bytes will come (its head, if overlong)."""
        if not self.tail:
            return None
        rest = Lines(self.tail + b"\n", self.line_start, 0)
        self.tail = b""
        return rest

    def restart(self, offset: int) -> None:
        """The file was truncated: read on from `offset` with nothing pending."""
        self.offset = self.line_start = offset
        self.tail, self.skipping = b"", False
