"""Tail stage: when busy files are read again, together, on one timer."""

from __future__ import annotations

import asyncio


class Ticker:
    """A tick every `interval` seconds while anyone waits for one, none otherwise. Tailers of
    files being written read at the next tick instead of at each write: one timer for all of
    them, a read per file per tick however many write() calls landed, and the chunks of one
    tick reach the batcher together."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next: asyncio.Event | None = None  # set at the next tick, if anyone waits

    async def wait(self) -> None:
        """Until the next tick: at most `interval` from now."""
        tick = self._next
        if tick is None:
            tick = self._next = asyncio.Event()
            asyncio.get_running_loop().call_later(self.interval, self._fire)
        await tick.wait()

    def _fire(self) -> None:
        if (tick := self._next) is not None:
            self._next = None
            tick.set()
