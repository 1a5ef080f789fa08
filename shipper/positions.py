"""Commit stage: per-file offsets that advance only past acknowledged lines, saved atomically."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shipper.metrics import Metrics
from shipper.model import FileId, Ticket

log = logging.getLogger(__name__)

VERSION = 1  # bump when the file format changes; a newer file is moved aside, never misread


@dataclass(slots=True)
class _Track:
    path: str  # for humans and metrics; the key is the file's identity
    offset: int  # acknowledged: every byte before it was delivered or dropped on purpose
    # In file order, not yet settled. A list: an empty deque costs 0.7 KiB (1.4 MiB at 2,000
    # files), and the few tickets a file has out are taken off its front all at once.
    tickets: list[Ticket] = field(default_factory=list)
    finished: bool = False  # the tailer is done with the file: forget it once all settled


class Positions:
    """The one place file positions change: after the chunk tickets before them settle."""

    def __init__(self, path: str, metrics: Metrics) -> None:
        self._path = Path(path) if path else None
        self._metrics = metrics
        self._tracks: dict[FileId, _Track] = {}
        self._saved: dict[FileId, tuple[str, int]] = {}  # what the file on disk holds
        self._writing: asyncio.Task[bool] | None = None  # the one write in flight
        # Set when an offset moves (or a file comes or goes): the periodic saver waits for it
        # instead of comparing a snapshot of every file with the last one each write_interval.
        self._dirty = asyncio.Event()
        self.write_error: str | None = None  # last write failure, for /ready

    # -- loading -------------------------------------------------------------------------------

    def load(self) -> dict[FileId, tuple[str, int]]:
        """Read the saved positions. A corrupt file, or one from a newer version, is moved aside
        and reported: starting files from 0 duplicates lines, skipping them would lose them."""
        if self._path is None or not self._path.exists():
            return {}
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or raw.get("version") != VERSION:
                raise ValueError(f"unsupported version {raw.get('version')!r}, expected {VERSION}"
                                 if isinstance(raw, dict) else "not a JSON object")
            saved = {FileId(int(f["dev"]), int(f["ino"])): (str(f["path"]), int(f["offset"]))
                     for f in raw["files"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = self._path.with_name(f"{self._path.name}.corrupt-{int(time.time())}")
            try:
                self._path.rename(aside)
            except OSError:
                aside = self._path
            log.error("positions file unusable; starting files from the beginning",
                      extra={"path": str(self._path), "moved_to": str(aside), "error": str(exc)})
            return {}
        self._saved = dict(saved)
        return saved

    # -- tracking ------------------------------------------------------------------------------

    def open(self, file: FileId, path: str, offset: int) -> None:
        """A tailer starts (or resumes) reading `file` at `offset`."""
        self._tracks[file] = _Track(path, offset)
        self._dirty.set()

    # The ticket protocol: the only code that changes a Ticket. A reader issues one per chunk,
    # in file order; whatever keeps entries of the chunk (a batch, an open multiline group)
    # holds it until settled; the reader seals it once every entry is placed.

    def issue(self, file: FileId, end: int) -> Ticket:
        """A receipt for the next chunk of `file`, which ends (for commit) at `end`."""
        ticket = Ticket(file, end)
        self._tracks[file].tickets.append(ticket)
        return ticket

    def hold(self, ticket: Ticket) -> None:
        if ticket.sealed and ticket.holders == 0:
            raise RuntimeError("a settled ticket cannot be held again")  # a bug, not bad input
        ticket.holders += 1

    def release(self, ticket: Ticket) -> None:
        ticket.holders -= 1
        if ticket.settled:
            self._advance(ticket.file)

    def seal(self, ticket: Ticket) -> None:
        ticket.sealed = True
        if ticket.settled:
            self._advance(ticket.file)

    def _advance(self, file: FileId) -> None:
        """Move the file's offset through the prefix of settled tickets."""
        track = self._tracks.get(file)
        if track is None:
            return  # given up (max_rotated_files): nothing to commit any more
        tickets, offset = track.tickets, track.offset
        settled = 0
        while settled < len(tickets) and tickets[settled].settled:
            settled += 1
        if settled:
            track.offset = tickets[settled - 1].end
            del tickets[:settled]
        if track.offset != offset:
            self._dirty.set()
        if track.finished and not tickets:
            self._forget(file)

    def finish(self, file: FileId) -> None:
        """The tailer will read no more of `file` (drained after rotation or deletion)."""
        track = self._tracks.get(file)
        if track is None:
            return
        track.finished = True
        if not track.tickets:
            self._forget(file)

    def _forget(self, file: FileId) -> None:
        del self._tracks[file]
        self._dirty.set()

    def offset(self, file: FileId) -> int | None:
        track = self._tracks.get(file)
        return None if track is None else track.offset

    def acked(self) -> Iterator[tuple[str, int]]:
        """(path, acknowledged offset) of each tracked file, oldest first: a rotated file's
        successor comes after it."""
        return ((t.path, t.offset) for t in self._tracks.values())

    # -- saving --------------------------------------------------------------------------------

    def snapshot(self) -> dict[FileId, tuple[str, int]]:
        return {f: (t.path, t.offset) for f, t in self._tracks.items()}

    async def changed(self) -> None:
        """Until something changed since the last save began (or the last write failed)."""
        await self._dirty.wait()

    async def save(self) -> bool:
        """Save the offsets if they changed: the snapshot is taken here, on the loop; the write
        runs in a worker thread, so that a slow disk stalls no tailer and no push. Returns
        success. A failure is logged once per streak and retried on the next call: shipping
        goes on. One write at a time: a call while one is in flight waits for it first, so an
        older snapshot never lands after a newer one. A cancelled caller (the periodic saver,
        at shutdown) leaves its write running to its end; the final save waits for it."""
        if self._path is None:
            return True
        while self._writing is not None:
            await asyncio.shield(self._writing)
        self._dirty.clear()  # a change from here on is in a later save
        state = self.snapshot()
        if state == self._saved:
            return True
        self._writing = asyncio.create_task(self._write(self._path, state),
                                            name="positions write")
        return await asyncio.shield(self._writing)

    async def _write(self, path: Path, state: dict[FileId, tuple[str, int]]) -> bool:
        """The file I/O in a worker thread; its outcome, back on the loop, is what /ready
        reports (write_error) and what the next save compares with (_saved)."""
        try:
            await asyncio.to_thread(write_atomically, path, _encode(state))
        except OSError as exc:
            self._metrics.positions_write_errors.inc()
            if self.write_error is None:
                log.error("cannot write positions; will retry, shipping continues",
                          extra={"path": str(path), "error": exc.strerror or str(exc)})
            self.write_error = exc.strerror or str(exc)
            self._dirty.set()  # retried at the next write_interval
            return False
        finally:
            self._writing = None
        if self.write_error is not None:
            log.info("positions written again", extra={"path": str(path)})
        self.write_error = None
        self._saved = state
        return True


def _encode(state: dict[FileId, tuple[str, int]]) -> bytes:
    return json.dumps({"version": VERSION, "files": [
        {"dev": f.dev, "ino": f.ino, "path": p, "offset": o} for f, (p, o) in state.items()
    ]}, separators=(",", ":")).encode()


def write_atomically(path: Path, body: bytes) -> None:
    """Temp file, fsync, rename: a crash leaves the old file or the new one, never a mix. Runs
    in a worker thread (fsync waits for the disk)."""
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
