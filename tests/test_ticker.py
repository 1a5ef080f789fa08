"""Ticker: one timer wakes every waiter at once, and runs only while someone waits."""

from __future__ import annotations

import asyncio

from shipper.ticker import Ticker


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
