"""Discover stage: file changes from one inotify descriptor, read on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import Callable, Iterable

from inotify_simple import INotify, flags, parse_events

log = logging.getLogger(__name__)

# A container runtime writes each line with its own write(), and each write() of a watched file
# is an IN_MODIFY event: at 25,000 lines/s, handling every one cost watchfiles' thread ~4 us an
# event, a quarter of the agent's CPU. So a file reports only its next write (IN_ONESHOT), and
# its tailer arms it again only once it has read to the end and found nothing new: a busy file
# costs no event at all. Directories report what appears, moves and goes (new files, rotation),
# never writes.
FILE_MASK = flags.MODIFY | flags.ONESHOT
DIR_MASK = flags.CREATE | flags.MOVED_FROM | flags.MOVED_TO | flags.DELETE | flags.ONLYDIR
READ_BYTES = 64 * 1024  # events per read: 4,096 of a file, or ~2,000 named ones of a directory


class Notifier:
    """The agent's one inotify descriptor, read by the event loop whenever the kernel has events
    (no thread, no timer). Without inotify (its limits reached, or none at all) nothing is
    reported; the periodic rescan then finds new files and wakes those that grew, every
    inputs.rescan_interval. See docs/deploy.md for the kernel's limits."""

    def __init__(self) -> None:
        self._inotify: INotify | None = None
        self._files: dict[int, Callable[[], None]] = {}  # wd -> what its one event calls
        self._dirs: dict[str, int] = {}  # watched directory -> wd
        self._dir_names: dict[int, str] = {}  # wd -> directory
        self._changed: set[str] = set()  # paths created, moved or deleted, for changes()
        self._overflowed = False  # the kernel's queue overflowed: events were lost
        self._event = asyncio.Event()  # _changed or _overflowed has news
        self._failures: set[int] = set()  # errnos logged already: each is logged once

    def start(self) -> None:
        """Open the descriptor and read it from the running loop (once the loop runs)."""
        try:
            self._inotify = INotify(nonblocking=True)
        except OSError as exc:
            self._failed(exc, "inotify unavailable")
            return
        asyncio.get_running_loop().add_reader(self._inotify.fileno(), self._read)

    def close(self) -> None:
        if self._inotify is not None:
            asyncio.get_running_loop().remove_reader(self._inotify.fileno())
            self._inotify.close()
            self._inotify = None
        self._files.clear()
        self._dirs.clear()
        self._dir_names.clear()

    # -- files ---------------------------------------------------------------------------------

    def arm(self, fd: int, fired: Callable[[], None]) -> int | None:
        """Call `fired` once, at the next write to the open file `fd`, whatever name it has by
        then (renamed or deleted, it is watched through its descriptor). Returns the watch, or
        None when the file cannot be watched: the caller must look at it some other way."""
        if self._inotify is None:
            return None
        try:
            wd: int = self._inotify.add_watch(f"/proc/self/fd/{fd}", FILE_MASK)
        except OSError as exc:
            self._failed(exc, "cannot watch a file; it is looked at every rescan instead")
            return None
        self._files[wd] = fired
        return wd

    def disarm(self, wd: int) -> None:
        """The file is closed: forget its watch (the kernel drops it with a deleted file)."""
        if self._files.pop(wd, None) is not None and self._inotify is not None:
            with contextlib.suppress(OSError):  # its event is already queued: nothing to drop
                self._inotify.rm_watch(wd)

    # -- directories ---------------------------------------------------------------------------

    def watch_dirs(self, dirs: Iterable[str]) -> None:
        """Watch exactly these directories from now on."""
        if self._inotify is None:
            return
        wanted = set(dirs)
        for gone in self._dirs.keys() - wanted:
            wd = self._dirs.pop(gone)
            del self._dir_names[wd]
            with contextlib.suppress(OSError):  # the directory is gone, and its watch with it
                self._inotify.rm_watch(wd)
        for directory in wanted - self._dirs.keys():
            try:
                wd = self._inotify.add_watch(directory, DIR_MASK)
            except FileNotFoundError:
                continue  # gone since it was listed: the next rescan knows
            except OSError as exc:
                self._failed(exc, "cannot watch a directory; its changes are found by rescans")
                continue
            self._dirs[directory] = wd
            self._dir_names[wd] = directory

    async def changes(self, timeout: float) -> set[str] | None:
        """The paths created, moved or deleted in the watched directories since the last call,
        waiting up to `timeout` seconds for one (empty if none came). None: events were lost
        (the kernel's queue overflowed), so anything may have changed."""
        if not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._event.wait()
        self._event.clear()
        changed, self._changed = self._changed, set()
        overflowed, self._overflowed = self._overflowed, False
        return None if overflowed else changed

    # -- reading -------------------------------------------------------------------------------

    def _read(self) -> None:
        assert self._inotify is not None  # the reader is removed before it is closed
        try:
            data = os.read(self._inotify.fileno(), READ_BYTES)
        except BlockingIOError:
            return
        for event in parse_events(data):
            fired = self._files.pop(event.wd, None)
            if fired is not None:
                fired()  # a file's one event (and IN_IGNORED after it: its watch is gone)
            elif (directory := self._dir_names.get(event.wd)) is not None:
                if event.mask & flags.IGNORED:  # the directory itself went
                    del self._dirs[directory], self._dir_names[event.wd]
                else:
                    self._changed.add(os.path.join(directory, event.name))
                self._event.set()
            elif event.mask & flags.Q_OVERFLOW:
                self._overflow()

    def _overflow(self) -> None:
        """Events were lost: every armed file may have had its one event dropped, and its watch
        is gone all the same. Wake them all, and let the discoverer rescan."""
        files, self._files = self._files, {}
        for fired in files.values():
            fired()
        self._overflowed = True
        self._event.set()

    def _failed(self, exc: OSError, what: str) -> None:
        code = exc.errno or 0
        if code in self._failures:
            return
        self._failures.add(code)
        hint = {errno.ENOSPC: " (fs.inotify.max_user_watches reached)",
                errno.EMFILE: " (fs.inotify.max_user_instances reached)"}.get(code, "")
        log.warning(f"{what}{hint}", extra={"error": exc.strerror or str(exc)})
