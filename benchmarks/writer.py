"""Benchmark writer: lines appended at a fixed rate as a container runtime writes them, one
write() per line, by forked writer processes (one Python process holds ~30,000 lines/s here
with little to spare on a shared machine)."""

from __future__ import annotations

import multiprocessing
import random
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from benchmarks.workload import LogFile, Workload

TICK_S = 0.005  # writing catches up with the schedule this often: bursts of rate/200 lines


@dataclass(frozen=True, slots=True)
class FileCounts:
    """What a writer process wrote to one file, handed back to the parent's LogFile."""

    size: int
    lines: int
    entries: int
    dropped: int
    rotations: list[Path]


@dataclass(frozen=True, slots=True)
class WriterReport:
    rate: float  # lines per second achieved over the run (the lines that end the run excluded)
    slowest_second: int  # the fewest lines written in one whole second of the run
    cpu_s: float  # the writer processes' CPU
    processes: int


class RateWriter:
    """Appends `rate` lines per second spread over every file, round robin, each line with its
    own write() and its real write time as its timestamp (so the sink measures write-to-arrival
    lag from it). A file rotates once it passes rotate_bytes (0: never), between entries."""

    def __init__(self, workload: Workload, rate: float, rotate_bytes: int = 0,
                 processes: int = 1) -> None:
        self.workload = workload
        self.rate = rate
        self.rotate_bytes = rotate_bytes
        self.processes = max(1, min(processes, len(workload.files)))

    def run(self, seconds: float) -> WriterReport:
        """Write for `seconds` (then end every open entry); the files' counts are updated."""
        context = multiprocessing.get_context("fork")  # the children share the open workload
        start = time.monotonic() + 0.2  # every writer starts on the same schedule
        children = []
        for k in range(self.processes):
            receive, send = context.Pipe(duplex=False)
            child = context.Process(target=self._child, args=(k, start, seconds, send),
                                    daemon=True)
            child.start()
            send.close()
            children.append((child, receive))
        per_second: Counter[int] = Counter()
        lines = 0
        cpu = 0.0
        for k, (child, receive) in enumerate(children):
            counts, seconds_written, child_cpu = receive.recv()
            child.join()
            for f, c in zip(self._share(k), counts, strict=True):
                f.size, f.lines, f.entries, f.dropped = c.size, c.lines, c.entries, c.dropped
                f.rotations = c.rotations
                f.pod.rotations = len(c.rotations)
                f.close()  # the child may have rotated it: append to the file there now
                f.open()
            per_second.update(seconds_written)
            lines += sum(seconds_written.values())
            cpu += child_cpu
        whole = [per_second[s] for s in range(int(seconds))]
        return WriterReport(rate=lines / seconds, slowest_second=min(whole, default=lines),
                            cpu_s=cpu, processes=self.processes)

    def _share(self, k: int) -> list[LogFile]:
        return self.workload.files[k::self.processes]

    def _child(self, k: int, start: float, seconds: float, send: Connection) -> None:
        work = self.workload
        work.rng = random.Random(1000 + k)  # not the other writers' lines
        files = self._share(k)
        rate = self.rate * len(files) / len(work.files)
        fmt, rotate_bytes = work.clock.format, self.rotate_bytes
        per_second: Counter[int] = Counter()
        written, i = 0, 0
        time.sleep(max(0.0, start - time.monotonic()))
        while (elapsed := time.monotonic() - start) < seconds:
            for _ in range(int(elapsed * rate) - written):
                f = files[i]
                i = (i + 1) % len(files)
                work.append(f, (work.line(f, fmt(time.time_ns())) + "\n").encode())
                if rotate_bytes and f.size >= rotate_bytes and f.at_boundary:
                    work.rotate(f)
                written += 1
                per_second[int(elapsed)] += 1
            time.sleep(max(0.0, TICK_S - (time.monotonic() - start - elapsed)))
        for f in files:
            for line in work.finish(f, fmt(time.time_ns())):
                work.append(f, (line + "\n").encode())
        counts = [FileCounts(f.size, f.lines, f.entries, f.dropped, f.rotations) for f in files]
        send.send((counts, per_second, time.process_time()))
        send.close()
