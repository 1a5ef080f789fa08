"""Tail stage: tell a human which file holds bad lines, without a log event per line."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

WARN_INTERVAL = 60.0  # s: at most one warning per file this often


class BadLineWarnings:
    """One per tailed path. Warns about unparsable, invalid-UTF-8 and truncated lines at the
    first one of a streak, then at most once per `interval` while they keep coming, with the
    counts since the last warning and the head of the last bad line. The metrics count every
    line; this says where to look."""

    __slots__ = ("_clock", "_interval", "_invalid_utf8", "_path", "_truncated", "_unparsable",
                 "_warned_at")

    def __init__(self, path: str, clock: Callable[[], float],
                 interval: float = WARN_INTERVAL) -> None:
        self._path = path
        self._clock = clock
        self._interval = interval
        self._warned_at: float | None = None  # clock() at the last warning
        self._unparsable = self._invalid_utf8 = self._truncated = 0  # since then

    def count(self, unparsable: int, invalid_utf8: int, truncated: int, sample: bytes) -> None:
        """Add what one chunk held (zeros too: counts held back may now be due)."""
        self._unparsable += unparsable
        self._invalid_utf8 += invalid_utf8
        self._truncated += truncated
        if not (self._unparsable or self._invalid_utf8 or self._truncated):
            return
        now = self._clock()
        if self._warned_at is not None and now - self._warned_at < self._interval:
            return
        log.warning("bad lines in a file: unparsable ones shipped as they are, invalid UTF-8 "
                    "replaced, overlong lines cut", extra={
                        "path": self._path, "unparsable": self._unparsable,
                        "invalid_utf8": self._invalid_utf8, "truncated": self._truncated,
                        "sample": repr(sample)})  # escaped: the line may hold anything
        self._warned_at = now
        self._unparsable = self._invalid_utf8 = self._truncated = 0
