"""Benchmark sink: a Loki push endpoint in its own process that decodes and counts every entry.

`python -m benchmarks.sink [--lag]` prints its port on stdout, then serves
POST /loki/api/v1/push (snappy + protobuf decoded with the protobuf runtime, answered 204) and
GET /stats (JSON). With --lag it also measures each entry's write-to-arrival lag from the entry's
timestamp, which the benchmark writer sets to the real write time of the line; GET
/window?SINCE,UNTIL (ns) limits the lag histogram to lines written in that span.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

import cramjam

from tests.support.loki_receiver import PUSH_PATH, PushRequest

NS_PER_MS = 1_000_000


class Counts:
    """What arrived: entries, requests, distinct streams, and lag (ms) per arrival second."""

    def __init__(self, lag: bool) -> None:
        self.lag = lag
        self.entries = 0
        self.requests = 0
        self.body_bytes = 0
        self.raw_bytes = 0
        self.streams: set[str] = set()
        self.first_ns = 0
        self.last_ns = 0
        self.lag_ms: Counter[int] = Counter()  # lag in whole ms -> entries written in window
        self.window = (0, 1 << 63)  # write times (ns) whose lags the histogram keeps
        self.window_max_ms: dict[int, int] = {}  # arrival second (unix) -> worst lag in it

    def ingest(self, body: bytes) -> None:
        raw = bytes(cramjam.snappy.decompress_raw(body))
        request = PushRequest.FromString(raw)
        now = time.time_ns()
        self.requests += 1
        self.body_bytes += len(body)
        self.raw_bytes += len(raw)
        self.first_ns = self.first_ns or now
        self.last_ns = now
        for stream in request.streams:
            entries = stream.entries
            self.entries += len(entries)
            self.streams.add(stream.labels)
            if self.lag:
                self._lags(now, entries)

    def _lags(self, now: int, entries: Any) -> None:
        counter = self.lag_ms
        since, until = self.window
        worst = 0
        for entry in entries:
            ts = entry.timestamp
            written = ts.seconds * 1_000_000_000 + ts.nanos
            ms = (now - written) // NS_PER_MS
            if since <= written < until:
                counter[ms] += 1
            worst = max(worst, ms)
        second = now // 1_000_000_000
        self.window_max_ms[second] = max(self.window_max_ms.get(second, 0), worst)

    def stats(self) -> dict[str, Any]:
        return {"entries": self.entries, "requests": self.requests,
                "body_bytes": self.body_bytes, "raw_bytes": self.raw_bytes,
                "streams": len(self.streams), "first_ns": self.first_ns,
                "last_ns": self.last_ns, "lag_ms": sorted(self.lag_ms.items()),
                "window_max_ms": sorted(self.window_max_ms.items())}


async def serve(counts: Counts, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 with keep-alive; Content-Length bodies only (what the agent sends)."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target = request_line.split(" ")[:2]
            length = 0
            for line in header_lines:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            if method == "POST" and target == PUSH_PATH:
                counts.ingest(body)
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif method == "GET" and target.startswith("/window?"):
                # /window?<since_ns>,<until_ns>: only lines written then enter the histogram
                since, until = target.partition("?")[2].split(",")
                counts.window = (int(since), int(until))
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif method == "GET" and target == "/stats":
                data = json.dumps(counts.stats()).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client closed its connection
    finally:
        writer.close()


async def main(lag: bool) -> None:
    counts = Counts(lag)
    server = await asyncio.start_server(
        lambda r, w: serve(counts, r, w), "127.0.0.1", 0, limit=1 << 20)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lag", action="store_true", help="measure write-to-arrival lag")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.lag))
    except KeyboardInterrupt:
        sys.exit(0)
