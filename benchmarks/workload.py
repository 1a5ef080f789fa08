"""Benchmark workload: kubelet-like log files, written up front or at a fixed rate."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.kubelet import PodLog

PARTIAL_SHARE = 0.03  # of physical lines: CRI "P" lines / Docker records without "\n"
JSON_SHARE = 0.05  # of messages
NON_ASCII_SHARE = 0.005  # of messages: exercises the decode path the agent keeps rare
MESSAGE_BYTES = (50, 400)
POOL_SIZE = 4096  # distinct messages, reused: generating text must not cost more than tailing
_WORDS = ("GET", "POST", "/api/v1/items", "/healthz", "user", "order", "cache", "miss", "hit",
          "status=200", "status=404", "latency_ms=12", "retrying", "connection", "reset",
          "payload", "accepted", "queue", "worker", "shard", "done", "took", "bytes=5120")


def message_pool(seed: int = 7) -> list[str]:
    """Messages of 50-400 characters: ~5% JSON objects, a few with non-ASCII text."""
    rng = random.Random(seed)
    pool = []
    for i in range(POOL_SIZE):
        size = rng.randint(*MESSAGE_BYTES)
        words = " ".join(rng.choice(_WORDS) for _ in range(size // 5))
        if rng.random() < NON_ASCII_SHARE:
            words = "Grüße 日本語 " + words
        if rng.random() < JSON_SHARE:
            text = json.dumps({"level": "info", "seq": i, "msg": words}, ensure_ascii=False)
        else:
            text = f"level=info seq={i} msg={words}"
        pool.append(text[:size] if len(text) > size else text)
    return pool


class Clock:
    """RFC3339Nano timestamps as containerd writes them, the seconds prefix formatted once."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, ns: int) -> str:
        second, frac = divmod(ns, 1_000_000_000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{frac:09d}Z"


@dataclass
class LogFile:
    """One container's log file, its open append descriptor, and what was written to it."""

    pod: PodLog
    fd: int = -1
    size: int = 0
    lines: int = 0  # physical lines
    entries: int = 0  # logical lines: what Loki should receive
    rotations: list[Path] = field(default_factory=list)

    def open(self) -> None:
        self.fd = os.open(self.pod.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Workload:
    """Pod log files under `root` (kubelet's /var/log/pods and /var/log/containers layout),
    every `docker_every`-th container in Docker json-file format, the rest CRI."""

    def __init__(self, root: Path, files: int, *, docker_every: int = 8, pods: int = 0,
                 seed: int = 7) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.pool = message_pool(seed)
        self.clock = Clock()
        pods = pods or files
        self.files: list[LogFile] = []
        for i in range(files):
            pod, container = i % pods, i // pods
            docker = docker_every > 0 and i % docker_every == docker_every - 1
            self.files.append(LogFile(PodLog(
                root, namespace=f"ns{pod % 7}", pod=pod_name(pod), container=f"c{container}",
                uid=pod_uid(pod), docker=docker)))
        for f in self.files:
            f.open()

    @property
    def pattern(self) -> str:
        return str(self.root / "var/log/containers/*.log")

    @property
    def lines(self) -> int:
        return sum(f.lines for f in self.files)

    @property
    def entries(self) -> int:
        return sum(f.entries for f in self.files)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files) + sum(
            p.stat().st_size for f in self.files for p in f.rotations)

    def hide(self) -> Path:
        """Move the /var/log/containers links aside, so the agent can start before seeing them."""
        hidden = self.root / "hidden"
        hidden.mkdir(exist_ok=True)
        for f in self.files:
            os.rename(f.pod.link, hidden / f.pod.link.name)
        return hidden

    def reveal(self, hidden: Path) -> None:
        for f in self.files:
            os.rename(hidden / f.pod.link.name, f.pod.link)

    def render(self, f: LogFile, count: int, ts: int, step: int) -> tuple[bytes, int, int]:
        """`count` physical lines from `ts` on, `step` ns apart: (data, lines, entries)."""
        rng, pool, fmt, out = self.rng, self.pool, self.clock.format, []
        entries = 0
        docker = f.pod.docker
        partial = False
        for _ in range(count):
            msg = pool[rng.randrange(POOL_SIZE)]
            partial = rng.random() < PARTIAL_SHARE
            stamp = fmt(ts)
            ts += step
            if docker:
                out.append(json.dumps({"log": msg if partial else msg + "\n", "stream": "stdout",
                                       "time": stamp},
                                      ensure_ascii=False, separators=(",", ":")))
            else:
                out.append(f"{stamp} stdout {'P' if partial else 'F'} {msg}")
            entries += not partial
        if partial:  # never leave a logical line open at the end of a write
            out.append(self._final(docker, fmt(ts)))
            entries += 1
        data = ("\n".join(out) + "\n").encode()
        return data, len(out), entries

    def _final(self, docker: bool, stamp: str) -> str:
        if docker:
            return json.dumps({"log": "end of line\n", "stream": "stdout", "time": stamp},
                              separators=(",", ":"))
        return f"{stamp} stdout F end of line"

    def write(self, f: LogFile, count: int, ts: int, step: int = 1_000) -> None:
        data, lines, entries = self.render(f, count, ts, step)
        os.write(f.fd, data)
        f.size += len(data)
        f.lines += lines
        f.entries += entries

    def rotate(self, f: LogFile) -> None:
        """kubelet's rename rotation; the agent must read the renamed file to its end."""
        f.close()
        f.rotations.append(f.pod.rotate())
        f.size = 0
        f.open()

    def prewrite(self, lines_per_file: int, ts: int, chunk: int = 20_000) -> None:
        """Backlog: lines_per_file per file, with timestamps from ts on, 1 ms apart."""
        for f in self.files:
            written, t = 0, ts
            while written < lines_per_file:
                n = min(chunk, lines_per_file - written)
                self.write(f, n, t, 1_000_000)
                written += n
                t += n * 1_000_000

    def close(self) -> None:
        for f in self.files:
            f.close()


def pod_name(i: int) -> str:
    return f"app{i}-7d9f8b6c5d-x{i:04d}"


def pod_uid(i: int) -> str:
    return f"0b6a4c1e-1111-2222-3333-{i:012d}"


class RateWriter:
    """Appends lines at `rate` per second spread over every file, in ticks, with the real write
    time as each line's timestamp (so the sink measures write-to-arrival lag from it). Rotates
    a file once it passes rotate_bytes (0: never)."""

    def __init__(self, workload: Workload, rate: float, rotate_bytes: int = 0,
                 tick: float = 0.02) -> None:
        self.workload = workload
        self.rate = rate
        self.rotate_bytes = rotate_bytes
        self.tick = tick
        self._next_file = 0

    def run(self, seconds: float) -> float:
        """Write for `seconds`; returns the achieved rate (physical lines per second)."""
        files = self.workload.files
        start = time.monotonic()
        written = 0
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * self.rate) - written
            per_file, extra = divmod(due, len(files))
            for k in range(len(files)):
                n = per_file + (k < extra)
                if not n:
                    continue
                f = files[(self._next_file + k) % len(files)]
                before = f.lines
                self.workload.write(f, n, time.time_ns())
                written += f.lines - before
                if self.rotate_bytes and f.size >= self.rotate_bytes:
                    self.workload.rotate(f)
            self._next_file = (self._next_file + extra) % len(files)
            time.sleep(max(0.0, self.tick - (time.monotonic() - start - elapsed)))
        return written / (time.monotonic() - start)
