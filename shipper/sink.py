"""Where readers hand over what they read: the memory bound, the batches and the tickets."""

from __future__ import annotations

from dataclasses import dataclass

from shipper.batch import Batcher, FlowControl
from shipper.model import Chunk, Entry, FileId, Ticket
from shipper.positions import Positions


@dataclass(slots=True)
class Reservation:
    """Bytes a reader was granted before reading: what it places is drawn from them first."""

    left: int


class Sink:
    """The one thing a tailer hands its chunks to. It owns flow control (bytes read but not yet
    settled), batching, and the ticket protocol (Positions), so a reader cannot get their order
    wrong: reserve before reading, issue a ticket, place entries, seal."""

    def __init__(self, flow: FlowControl, batcher: Batcher, positions: Positions) -> None:
        self._flow = flow
        self._batcher = batcher
        self._positions = positions

    # -- files -----------------------------------------------------------------------------------

    def open(self, file: FileId, path: str, offset: int) -> None:
        """A reader starts (or restarts, after truncation) `file` at `offset`."""
        self._positions.open(file, path, offset)

    def acked(self, file: FileId) -> int | None:
        """Where `file` is acknowledged up to (None: not tracked)."""
        return self._positions.offset(file)

    def finish(self, file: FileId) -> None:
        """The reader is done with `file`: forget it once its tickets settle."""
        self._positions.finish(file)

    # -- memory ----------------------------------------------------------------------------------

    async def reserve(self, n: int) -> Reservation:
        """Wait until `n` more bytes may be held: a slow Loki holds readers here, and the data
        waits on disk."""
        await self._flow.acquire(n)
        return Reservation(n)

    def unreserve(self, reservation: Reservation) -> None:
        """Give back what is left of a reservation once the read is placed."""
        self._flow.adjust(-reservation.left)
        reservation.left = 0

    # -- chunks ----------------------------------------------------------------------------------

    def ticket(self, file: FileId, end: int) -> Ticket:
        return self._positions.issue(file, end)

    def place(self, ticket: Ticket, entries: list[Entry], overhead: int, key: str | None,
              reservation: Reservation | None, line_bytes: int = -1) -> None:
        """Batch entries under `ticket` (`key`: of their one Stream, if they share one;
        `line_bytes`: their lines' bytes, if counted already).
        Their bytes are held until the batch holding them settles: drawn from `reservation`,
        and beyond it (lines joined across reads; a file's last line) taken without waiting."""
        if not entries:
            return
        chunk = Chunk(ticket, entries, overhead, key, line_bytes)
        size = chunk.size
        if reservation is not None:
            drawn = min(size, reservation.left)
            reservation.left -= drawn
            size -= drawn
        if size:
            self._flow.adjust(size)
        self._batcher.add(chunk)

    def hold(self, ticket: Ticket) -> None:
        """Entries of `ticket` wait elsewhere (an open multiline group): keep it unsettled."""
        self._positions.hold(ticket)

    def release(self, ticket: Ticket) -> None:
        self._positions.release(ticket)

    def seal(self, ticket: Ticket) -> None:
        """Every entry of the chunk is placed (or dropped): it settles once its batches do."""
        self._positions.seal(ticket)
