"""Batcher: size triggers, timeout, max_bytes splits, and ticket settlement order."""

from __future__ import annotations

import asyncio

from shipper.batch import Batcher, FlowControl
from shipper.config import BatchConfig
from shipper.metrics import Metrics
from shipper.model import Chunk, Entry, FileId, Stream, Ticket

OUT = Stream('{app="a"}', (("app", "a"),), (("stream", "stdout"),))
ERR = Stream('{app="a"}', (("app", "a"),), (("stream", "stderr"),))
OTHER = Stream('{app="b"}', (("app", "b"),))
FILE = FileId(1, 2)


class Ledger:
    """Holds and releases as Positions does, and records each ticket as it settles."""

    def __init__(self) -> None:
        self.settled: list[Ticket] = []

    def hold(self, ticket: Ticket) -> None:
        ticket.holders += 1

    def release(self, ticket: Ticket) -> None:
        ticket.holders -= 1
        if ticket.holders == 0:
            self.settled.append(ticket)


def chunk(n: int, end: int, stream: Stream = OUT, line: bytes = b"x" * 10) -> Chunk:
    entries: list[Entry] = [(i, line, stream) for i in range(n)]
    return Chunk(Ticket(FILE, end), entries, overhead=20, key=stream.key)


def make(ledger: Ledger, **config: float) -> Batcher:
    flow = FlowControl(10**9, Metrics())
    return Batcher(BatchConfig(**config), flow, ledger)  # type: ignore[arg-type]


def test_size_triggers_but_lines_accumulate_while_the_pusher_is_busy() -> None:
    async def scenario() -> None:
        ledger = Ledger()
        batcher = make(ledger, size=100, timeout=60.0)
        for i in range(7):
            batcher.add(chunk(50, end=i))
        batch = await asyncio.wait_for(batcher.next_batch(), 1)
        assert batch is not None and batch.entries == 350  # one request, not three
        assert batch.line_bytes == 3500 and batch.size == 350 * 30
        batcher.settle(batch)
        assert [t.end for t in ledger.settled] == list(range(7))
    asyncio.run(scenario())


def test_timeout_sends_a_small_batch() -> None:
    async def scenario() -> None:
        batcher = make(Ledger(), size=100, timeout=0.05)
        batcher.add(chunk(3, end=1))
        batch = await asyncio.wait_for(batcher.next_batch(), 1)
        assert batch is not None and batch.entries == 3
    asyncio.run(scenario())


def test_max_bytes_is_a_hard_cap_and_a_chunk_may_span_batches() -> None:
    async def scenario() -> None:
        ledger = Ledger()
        batcher = make(ledger, size=1, timeout=60.0, max_bytes=1000)
        big = chunk(100, end=99)  # 100 x 30 bytes = 3000: 33 entries fit in each batch
        batcher.add(big)
        sizes = []
        for _ in range(4):
            batch = await asyncio.wait_for(batcher.next_batch(), 1)
            assert batch is not None
            sizes.append(batch.size)
            assert not ledger.settled  # the chunk settles only when its last batch does
            batcher.settle(batch)
        assert sizes == [990, 990, 990, 30]
        assert ledger.settled == [big.ticket]
    asyncio.run(scenario())


def test_streams_are_grouped_by_label_set() -> None:
    async def scenario() -> None:
        batcher = make(Ledger(), size=4, timeout=60.0)
        mixed = Chunk(Ticket(FILE, 1), [(1, b"a", OUT), (2, b"b", OTHER), (3, b"c", ERR),
                                        (4, b"d", OTHER)], overhead=20)
        batcher.add(mixed)
        batch = await asyncio.wait_for(batcher.next_batch(), 1)
        assert batch is not None
        assert {k: [e[1] for e in v] for k, v in batch.streams.items()} == {
            '{app="a"}': [b"a", b"c"], '{app="b"}': [b"b", b"d"]}
    asyncio.run(scenario())


def test_dropping_streams_keeps_the_batchs_tickets_and_size() -> None:
    """Entries of a stream that may no longer ship leave the batch; the batch still settles
    their tickets and gives back every byte it held."""
    async def scenario() -> None:
        ledger = Ledger()
        batcher = make(ledger, size=100, timeout=60.0)
        batcher.add(chunk(2, end=1, stream=OUT))
        batcher.add(chunk(3, end=2, stream=OTHER, line=b"y" * 5))
        batcher.add(chunk(1, end=3, stream=ERR))  # OUT's key, another stream: kept
        batcher.close()
        batch = await batcher.next_batch()
        assert batch is not None
        asked: list[Stream] = []

        def unwanted(stream: Stream) -> bool:
            asked.append(stream)
            return stream in (OUT, OTHER)

        assert batch.drop(unwanted) == 5
        assert len(asked) == 3  # once per stream, not per entry
        assert {k: [e[2] for e in v] for k, v in batch.streams.items()} == {'{app="a"}': [ERR]}
        held = 2 * 10 + 3 * 5 + 10 + 6 * 20  # every line and entry overhead, until settled
        assert (batch.entries, batch.line_bytes, batch.size) == (1, 10, held)
        assert batch.drop(unwanted) == 0
        batcher.settle(batch)
        assert [t.end for t in ledger.settled] == [1, 2, 3]
    asyncio.run(scenario())


def test_an_empty_chunk_holds_nothing_and_close_drains() -> None:
    async def scenario() -> None:
        ledger = Ledger()
        batcher = make(ledger, size=100, timeout=60.0)
        empty = Chunk(Ticket(FILE, 5))
        batcher.add(empty)
        assert empty.ticket.holders == 0
        batcher.add(chunk(1, end=6))
        batcher.close()
        first = await batcher.next_batch()
        assert first is not None and first.entries == 1
        assert await batcher.next_batch() is None
    asyncio.run(scenario())


def test_flow_control_blocks_readers_until_bytes_are_released() -> None:
    async def scenario() -> None:
        flow = FlowControl(100, Metrics())
        await flow.acquire(80)
        waiter = asyncio.create_task(flow.acquire(50))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        flow.adjust(-80)
        await asyncio.wait_for(waiter, 1)
        assert flow.used == 50
    asyncio.run(scenario())


def test_flow_control_serves_waiters_in_order_and_only_those_that_fit() -> None:
    async def scenario() -> None:
        flow = FlowControl(100, Metrics())
        await flow.acquire(100)
        first = asyncio.create_task(flow.acquire(60))
        second = asyncio.create_task(flow.acquire(60))
        third = asyncio.create_task(flow.acquire(30))
        await asyncio.sleep(0.01)
        flow.adjust(-100)  # room for the first (60); not for the second, so none behind it
        await asyncio.sleep(0.01)
        assert first.done() and not second.done() and not third.done()
        second.cancel()  # gives up its place; the third fits beside the first
        await asyncio.wait_for(third, 1)
        assert flow.used == 90
    asyncio.run(scenario())
