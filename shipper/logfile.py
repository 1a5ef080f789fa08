"""Tail stage: open a log file for reading, only if it is a regular file, never blocking."""

from __future__ import annotations

import os
import stat

# What else a path can name; `not_regular_<kind>` is the reason in shipper_file_errors_total.
_KINDS = {stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket", stat.S_IFCHR: "char_device",
          stat.S_IFBLK: "block_device", stat.S_IFDIR: "directory"}


class OpenFailed(Exception):
    """The path exists but is not a file the agent can read. `reason` labels
    shipper_file_errors_total: permission_denied, or not_regular_<kind>."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _check_regular(st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "other")
        raise OpenFailed(f"not_regular_{kind}",
                         f"not a regular file: {kind.replace('_', ' ')}")


def open_log(path: str) -> tuple[int, os.stat_result]:
    """A read-only descriptor on `path` and its fstat. Raises OpenFailed, FileNotFoundError if
    the path is gone, or another OSError."""
    # Looked at before opening: opening a FIFO blocks until a writer comes (and once open,
    # lets a writer waiting for a reader go on into a pipe we never drain); opening a device
    # can have effects of its own (a tape rewinds at close).
    _check_regular(os.stat(path))
    try:
        # O_NONBLOCK: should the path become a FIFO between stat and open, open returns at
        # once; reads of a regular file ignore the flag. O_NOCTTY: a terminal never becomes
        # the agent's controlling terminal.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except PermissionError as exc:
        raise OpenFailed("permission_denied", exc.strerror or str(exc)) from None
    try:
        st = os.fstat(fd)
        _check_regular(st)  # what was opened, whatever the path named a moment before
    except BaseException:
        os.close(fd)
        raise
    return fd, st
