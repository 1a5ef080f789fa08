"""Ticker: one timer wakes every waiter at once, and runs only while someone waits. Wakeup: an
idle tailer's wake-up, set before or during its wait."""

from __future__ import annotations

import asyncio
import contextlib

from shipper.ticker import Ticker, Wakeup


def test_a_tick_wakes_every_waiter_at_once_then_the_next_one_starts_afresh() -> None:
    async def scenario() -> None:
        ticker = Ticker(0.05)
        loop = asyncio.get_running_loop()
        woken: list[float] = []

        async def waiter() -> None:
            await ticker.wait()
            woken.append(loop.time())

        started = loop.time()
        await asyncio.gather(waiter(), waiter(), waiter())
        assert len(woken) == 3 and max(woken) - min(woken) < 0.01
        assert 0.04 <= woken[0] - started < 0.5
        await asyncio.sleep(0.2)  # nobody waits: no tick is due
        started = loop.time()
        await ticker.wait()
        assert 0.04 <= loop.time() - started < 0.5  # a full interval, not a stale tick

    asyncio.run(scenario())


def test_a_wakeup_set_before_the_wait_is_not_lost_and_one_set_during_it_ends_it() -> None:
    async def scenario() -> None:
        wakeup = Wakeup()
        wakeup.set()
        await asyncio.wait_for(wakeup.wait(), 0.1)  # set before: at once
        wakeup.clear()
        waiting = asyncio.create_task(wakeup.wait())
        await asyncio.sleep(0.01)
        assert not waiting.done()  # cleared: waits
        wakeup.set()
        wakeup.set()  # twice before the waiter runs: no InvalidStateError
        await asyncio.wait_for(waiting, 0.1)
        wakeup.clear()
        with contextlib.suppress(TimeoutError):  # a cancelled wait leaves it usable
            await asyncio.wait_for(wakeup.wait(), 0.01)
        wakeup.set()
        await asyncio.wait_for(wakeup.wait(), 0.1)

    asyncio.run(scenario())
