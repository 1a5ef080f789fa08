"""Tail stage: read one discovered path through rotation and truncation, in large chunks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shipper.badlines import BadLineWarnings
from shipper.config import InputsConfig
from shipper.enrich import Enricher, FileStreams
from shipper.frame import ENVELOPE, LineFramer, Lines
from shipper.kube.pod_path import PathMeta, link_chain, parse_log_path
from shipper.logfile import OpenFailed, open_log
from shipper.metrics import Metrics
from shipper.model import Entry, FileId
from shipper.notify import Notifier
from shipper.parse import FileParser, ParseCounts
from shipper.pipeline.compile import Pipeline
from shipper.process import FileProcess
from shipper.sink import Reservation, Sink
from shipper.ticker import Ticker, Wakeup

if TYPE_CHECKING:
    from shipper.kube.gate import MetadataGate

log = logging.getLogger(__name__)

ROTATION_GRACE = 1.0  # s a renamed file stays open after EOF: the runtime may still be writing


class RotationBudget:
    """Renamed files held open until drained, across all tailers: at most `limit`, so a node
    whose logs rotate faster than Loki accepts them cannot run out of descriptors."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    @property
    def exceeded(self) -> bool:
        return self.open > self.limit


class Resume:
    """Offsets saved by the last run, for the files found by the first scan only: a file that
    appears later is new and read from 0, even if it reuses the inode number of a file gone
    since."""

    def __init__(self) -> None:
        self._saved: Mapping[FileId, tuple[str, int]] = {}

    def restore(self, saved: Mapping[FileId, tuple[str, int]]) -> None:
        self._saved = saved

    def offset(self, file: FileId) -> int | None:
        saved = self._saved.get(file)
        return None if saved is None else saved[1]

    def first_scan_done(self) -> None:
        self._saved = {}


@dataclass(frozen=True, slots=True)
class TailContext:
    """What every tailer shares, built once in the wiring."""

    config: InputsConfig
    enricher: Enricher
    sink: Sink
    metrics: Metrics
    resume: Resume
    rotation: RotationBudget
    notifier: Notifier  # an idle file's next write wakes its tailer
    ticker: Ticker  # when a busy file is read again
    once: bool = False  # read every file to its end, then stop (run --once)
    pipeline: Pipeline | None = None  # the configured stages, compiled once
    gate: MetadataGate | None = None  # with the Kubernetes API: no read before the metadata
    clock: Callable[[], float] = time.monotonic


@dataclass(slots=True)
class _OpenFile:
    tailer: Tailer
    fd: int
    file: FileId
    path: str  # the name it was opened under, for humans
    frame: LineFramer  # its offset is the next byte os.read returns
    parser: FileParser  # tags each line with the Stream it goes to
    streams: FileStreams  # what the parser's tags were taken from
    process: FileProcess  # hands entries to the sink, through the file's stages if any
    size: int = 0  # at the last look, for shipper_file_bytes
    rotated_at: float | None = None  # clock() when a successor took its path
    watch: int | None = None  # its inotify watch while armed: until its next write
    counts: ParseCounts = field(default_factory=ParseCounts)  # last seen, for metric deltas

    def fired(self) -> None:
        """Its one-shot inotify watch saw a write (and the kernel removed it)."""
        self.watch = None
        self.tailer.wake()


def _file_id(st: os.stat_result) -> FileId:
    return FileId(st.st_dev, st.st_ino)


class Tailer:
    """Follows one path (a /var/log/containers link or any matched file). A renamed file is read
    to its end through its open descriptor before its successor; a deleted one is drained, then
    closed; truncation restarts at 0. Positions start from what was saved."""

    # One per file, thousands on a busy node: no __dict__.
    __slots__ = ("_ctx", "_files", "_meta", "_missing_since", "_streams", "_wake", "_warnings",
                 "done", "path", "realpath")

    def __init__(self, path: str, realpath: str, ctx: TailContext) -> None:
        self.path = path
        self.realpath = realpath  # os.path.realpath(path), as the agent keys its tailers
        self._ctx = ctx
        self._meta: PathMeta | None = parse_log_path(*link_chain(path), realpath)
        self._streams: FileStreams | None = None
        self._files: list[_OpenFile] = []  # rotated ones first, the current one last
        self._wake = Wakeup()
        self._missing_since: float | None = None
        self._warnings = BadLineWarnings(path, ctx.clock)  # for the path, across rotations
        self.done = False  # no file left to read: the path is gone

    def open(self) -> None:
        """Open the current file, after any rotated predecessor still to be read: those the
        saved positions know with unread bytes, and generations newer than them that were
        rotated away while the agent was down. Raises OpenFailed or OSError."""
        fd, st = open_log(self.path)
        current = _file_id(st)
        resume = self._ctx.resume
        known = [(path, sib, offset) for path, sib in self._siblings()
                 if (offset := resume.offset(_file_id(sib))) is not None]
        for path, sib, offset in known:
            if _file_id(sib) != current and offset < sib.st_size:
                self._open_rotated(path, offset)
        if known:  # anything rotated after the newest generation we knew was never read
            self._open_unseen_generations(after=max(sib.st_mtime for _, sib, _ in known),
                                          current=current)
        offset = resume.offset(current) or 0
        self._add(fd, current, self.path, offset if offset <= st.st_size else 0)

    def _siblings(self) -> list[tuple[str, os.stat_result]]:
        """Rotated generations beside the file (0.log.<stamp>, not yet compressed, regular
        files only), oldest first."""
        directory, name = os.path.split(self.realpath)
        found = []
        try:
            for entry in os.scandir(directory):
                if entry.name.startswith(name + ".") and not entry.name.endswith(".gz"):
                    with contextlib.suppress(OSError):
                        if stat.S_ISREG((st := entry.stat()).st_mode):
                            found.append((entry.path, st))
        except OSError:
            return []
        return sorted(found, key=lambda sibling: sibling[1].st_mtime)

    def _open_unseen_generations(self, after: float, current: FileId) -> None:
        """Rotated files last written after `after` that no tailer has opened: kubelet rotated
        more than once before we looked. Read them whole, oldest first."""
        open_ids = {f.file for f in self._files} | {current}
        for path, sib in self._siblings():
            if sib.st_mtime >= after and _file_id(sib) not in open_ids:
                log.info("reading a generation rotated before it was opened",
                         extra={"path": path})
                self._open_rotated(path, 0)

    def _open_rotated(self, path: str, offset: int) -> None:
        try:
            fd, st = open_log(path)
        except (OpenFailed, OSError) as exc:
            log.error("cannot open rotated file; its unread lines are lost",
                      extra={"path": path, "error": str(exc)})
            return
        opened = self._add(fd, _file_id(st), path, offset)
        opened.rotated_at = self._ctx.clock()
        self._ctx.rotation.open += 1

    def _add(self, fd: int, file: FileId, path: str, offset: int) -> _OpenFile:
        if offset:
            os.lseek(fd, offset, os.SEEK_SET)
        streams = self._current_streams()
        parser = FileParser(self._ctx.config.max_line_bytes, streams.stdout, streams.stderr)
        frame = LineFramer(self._ctx.config.max_line_bytes + ENVELOPE, offset)
        process = self._process(streams)
        opened = _OpenFile(self, fd, file, path, frame, parser, streams, process)
        self._ctx.sink.open(file, path, offset)
        self._ctx.metrics.files_active.inc()
        self._files.append(opened)
        return opened

    def _process(self, streams: FileStreams) -> FileProcess:
        process = FileProcess(self._ctx.sink, self._ctx.pipeline, self._ctx.metrics,
                              self._ctx.clock)
        process.retarget(streams)
        return process

    def notice(self) -> None:
        """Look at the path now, even while reading is held back by a slow Loki: a successor
        must be opened before kubelet rotates (and compresses) it in turn. A file that grew
        is read (the safety net behind inotify, and all there is without it)."""
        if self._files and (current := self._files[-1]).rotated_at is None:
            with contextlib.suppress(OSError):
                st = os.stat(self.path)
                if _file_id(st) != current.file:
                    self._rotated(current)
                elif st.st_size != current.frame.offset:
                    self.wake()

    def wake(self) -> None:
        self._wake.set()

    def sizes(self) -> Iterator[tuple[str, int]]:
        """(path, size at the last look) of each open file, the current one last."""
        return ((f.path, f.size) for f in self._files)

    async def run(self) -> None:
        """Read until the path is gone (or, with ctx.once, until everything is at EOF). After
        an exception the files stay open, for `rewind` and a new run."""
        once = self._ctx.once
        try:
            if self._ctx.gate is not None:
                await self._ctx.gate.wait(self._meta)
            busy = False
            while not self.done:
                self._wake.clear()  # before reading: a wake-up during the pass is not lost
                was_busy = busy
                if not was_busy and not once:
                    self._arm()  # before reading too: no write after the read goes unnoticed
                busy = await self._drain()
                if once or self.done:
                    break
                if busy:  # read again at the next tick, however many writes land meanwhile
                    await self._ctx.ticker.wait()
                    continue
                if was_busy:
                    continue  # at the end for now: arm the files and look once more
                # Renamed files (first in the list) are let go ROTATION_GRACE after their end.
                rotated = bool(self._files) and self._files[0].rotated_at is not None
                timeout = ROTATION_GRACE if rotated or self._missing_since is not None else None
                due = [d for f in self._files if (d := f.process.deadline) is not None]
                if due:  # a multiline group to ship once its max_wait has passed
                    left = max(0.0, min(due) - self._ctx.clock())
                    timeout = left if timeout is None else min(timeout, left)
                # Woken by a write (or a rotation, or a rescan that saw the file grow): read
                # with the busy files at the next tick.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                        await self._ctx.ticker.wait()
        except asyncio.CancelledError:
            self.close()  # shutting down
            raise
        if once:
            self.close()

    def _arm(self) -> None:
        """Have each open file's next write wake this tailer (those inotify cannot watch are
        looked at by each rescan)."""
        notifier = self._ctx.notifier
        for f in self._files:
            if f.watch is None:
                f.watch = notifier.arm(f.fd, f.fired)

    def rewind(self) -> None:
        """After a failure, before running again: read each open file again from its
        acknowledged offset, as what was read since may never have reached the sink. Lines
        may be sent twice; none is lost, and a renamed or deleted file is still read through
        its descriptor."""
        for f in self._files:
            f.process = self._process(f.streams)  # what its stages kept back is read again
            self._restart(f, self._ctx.sink.acked(f.file) or 0)

    def close(self) -> None:
        """Release descriptors without finishing: positions keep the acknowledged offsets.
        What stages kept back (open multiline groups) goes to the sink as it is."""
        for f in self._files:
            f.process.flush(force=True)
            self._close(f)
        self._files.clear()

    async def _drain(self) -> bool:
        """One pass: every open file to EOF, oldest first; then look at the path. Returns
        whether anything was read."""
        read = False
        for f in list(self._files):
            offset = f.frame.offset
            await self._read_to_eof(f)
            read = read or f.frame.offset != offset
            if f not in self._files:
                continue  # abandoned meanwhile (max_rotated_files): its descriptor is closed
            f.process.flush(force=False)
            if f.rotated_at is not None and self._ctx.clock() - f.rotated_at >= ROTATION_GRACE:
                self._finish(f)
        if self._files:
            await self._check_path(self._files[-1])
        else:
            self.done = True  # every file finished, and no successor could be opened
        return read

    async def _check_path(self, current: _OpenFile) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        cur = os.fstat(current.fd)
        current.size = cur.st_size
        if st is None:
            # Renamed with no successor yet, or deleted: a deleted file (no links left) is
            # drained and done; otherwise give the successor one rescan interval to appear.
            now = self._ctx.clock()
            self._missing_since = self._missing_since or now
            if cur.st_nlink == 0 or now - self._missing_since >= self._ctx.config.rescan_interval:
                await self._read_to_eof(current)
                self._finish(current)
                self.done = not self._files
            return
        self._missing_since = None
        if _file_id(st) != current.file:
            if current.rotated_at is None:
                self._rotated(current)
        elif cur.st_size < current.frame.offset:
            self._truncated(current)

    def _rotated(self, current: _OpenFile) -> None:
        """kubelet renamed the file and a new one took the path: keep reading the old one."""
        ctx = self._ctx
        current.rotated_at = ctx.clock()
        ctx.rotation.open += 1
        try:
            fd, st = open_log(self.path)
        except (OpenFailed, OSError):
            # Gone again, or not a regular file: once the renamed file is drained, the tailer
            # ends (see _drain) and discovery looks at the path afresh (and reports it).
            return
        successor = _file_id(st)
        self._open_unseen_generations(after=os.fstat(current.fd).st_mtime, current=successor)
        self._add(fd, successor, self.path, 0)
        while ctx.rotation.exceeded and len(self._files) > 1:
            oldest = self._files[0]
            log.error("too many rotated files open; giving up on one before its end",
                      extra={"path": self._renamed_to(oldest), "offset": oldest.frame.offset})
            ctx.metrics.rotated_abandoned.inc()
            self._files.remove(oldest)
            self._close(oldest)
            ctx.rotation.open -= 1
            ctx.sink.finish(oldest.file)
        self.wake()

    def _renamed_to(self, f: _OpenFile) -> str:
        """The name a rotated file has now (it was opened under the path its successor took)."""
        names = [path for path, sib in self._siblings() if _file_id(sib) == f.file]
        return names[0] if names else f.path

    def _truncated(self, f: _OpenFile) -> None:
        log.warning("file truncated; reading again from the start", extra={"path": f.path})
        f.process.flush(force=True)  # its lines were the file's before the truncation
        self._restart(f, 0)

    def _restart(self, f: _OpenFile, offset: int) -> None:
        """Read `f` on from `offset` with nothing pending: a new parser, and a new track in
        positions (tickets of the old one still settle, and are ignored)."""
        os.lseek(f.fd, offset, os.SEEK_SET)
        f.frame.restart(offset)
        f.parser = FileParser(self._ctx.config.max_line_bytes, f.streams.stdout,
                              f.streams.stderr)
        f.counts = ParseCounts()
        self._ctx.sink.open(f.file, f.path, offset)

    def _finish(self, f: _OpenFile) -> None:
        """No more bytes will come: emit the last (unterminated or partial) line and let go."""
        self._tag(f)
        last: list[Entry] = []
        if (rest := f.frame.rest()) is not None:  # an unterminated last line (if overlong,
            last, _ = f.parser.parse(rest.data, rest.offset)  # its head: the parser cuts it)
        last += f.parser.flush()
        if last:
            self._emit(f, last, f.frame.offset, None)
        f.process.flush(force=True)
        self._files.remove(f)
        self._close(f)
        if f.rotated_at is not None:
            self._ctx.rotation.open -= 1
        self._ctx.sink.finish(f.file)

    def _close(self, f: _OpenFile) -> None:
        if f.watch is not None:
            self._ctx.notifier.disarm(f.watch)
            f.watch = None
        os.close(f.fd)
        self._ctx.metrics.files_active.dec()

    async def _read_to_eof(self, f: _OpenFile) -> None:
        sink, chunk_bytes = self._ctx.sink, self._ctx.config.read_chunk_bytes
        while True:
            # Reserve before reading, so tailers held back by a slow Loki hold no data.
            reservation = await sink.reserve(chunk_bytes)
            more = False
            try:
                # Given up while we waited (max_rotated_files)? Its fd is closed, maybe reused.
                if f in self._files:
                    more = self._read_chunk(f, reservation)
            finally:
                sink.unreserve(reservation)
            if f.process.delay:  # a rate_limit stage holds this file back: the rest waits
                await asyncio.sleep(f.process.delay)  # on disk, the lines read in memory
                f.process.resume()
            if not more:
                return
            await asyncio.sleep(0)  # let the other tailers and the pusher run

    def _read_chunk(self, f: _OpenFile, reservation: Reservation) -> bool:
        """Read, split, parse and hand over one chunk. Returns whether there may be more to
        read (a short read was the end for now). Synchronous on purpose: no buffer outlives it
        across an await."""
        ctx = self._ctx
        data = os.read(f.fd, ctx.config.read_chunk_bytes)
        if not data:
            return False
        ctx.metrics.read_bytes.inc(len(data))
        lines = f.frame.feed(data)
        if lines is not None:
            self._parse(f, lines, reservation)
        return len(data) == ctx.config.read_chunk_bytes

    def _parse(self, f: _OpenFile, lines: Lines, reservation: Reservation) -> None:
        self._tag(f)
        entries, commit = f.parser.parse(lines.data, lines.offset)
        if commit > lines.offset:  # past the overlong line, if any: undo what was skipped
            commit += lines.skipped
        self._emit(f, entries, commit, reservation, f.parser.parsed_bytes)

    def _emit(self, f: _OpenFile, entries: list[Entry], commit: int,
              reservation: Reservation | None, line_bytes: int = -1) -> None:
        """Hand one chunk's entries to the sink under a ticket that ends at `commit`."""
        ctx, streams = self._ctx, f.streams
        self._count(f)
        ticket = ctx.sink.ticket(f.file, commit)
        if streams.excluded:
            ctx.metrics.entries_excluded.inc(len(entries))
        else:
            if ctx.enricher.waits_for_pods and not streams.enriched:
                ctx.metrics.entries_without_metadata.inc(len(entries))
            f.process.emit(ticket, entries, streams, reservation, line_bytes)
        ctx.sink.seal(ticket)

    def _tag(self, f: _OpenFile) -> None:
        """Lines parsed from now on go to the file's current streams (rebuilt when the pod
        cache changed, e.g. once the pod's metadata arrived)."""
        streams = self._current_streams()
        if streams is not f.streams:
            f.parser.retag(streams.stdout, streams.stderr)
            f.process.retarget(streams)
            f.streams = streams

    def _current_streams(self) -> FileStreams:
        streams = self._streams
        enricher = self._ctx.enricher
        if streams is None or streams.version != enricher.version:
            streams = self._streams = enricher.streams(self._meta, self.path)
        return streams

    def _count(self, f: _OpenFile) -> None:
        now, before, m = f.parser.counts, f.counts, self._ctx.metrics
        if now.lines != before.lines:
            m.read_lines.inc(now.lines - before.lines)
        if now.unparsable != before.unparsable:
            m.lines_unparsable.inc(now.unparsable - before.unparsable)
        if now.truncated != before.truncated:
            m.lines_truncated.inc(now.truncated - before.truncated)
        if now.invalid_utf8 != before.invalid_utf8:
            m.lines_invalid_utf8.inc(now.invalid_utf8 - before.invalid_utf8)
        if now.discarded != before.discarded:
            m.partial_bytes_discarded.inc(now.discarded - before.discarded)
        self._warnings.count(now.unparsable - before.unparsable,
                             now.invalid_utf8 - before.invalid_utf8,
                             now.truncated - before.truncated, f.parser.bad_sample)
        f.counts = ParseCounts(now.lines, now.unparsable, now.truncated, now.invalid_utf8,
                               now.blank, now.discarded)
