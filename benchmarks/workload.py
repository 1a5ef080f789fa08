"""Benchmark workload: kubelet-like log files, their lines and the entries Loki should receive."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.kubelet import PodLog
from tests.support.traces import java_log

PARTIAL_SHARE = 0.03  # of physical lines: CRI "P" lines / Docker records without "\n"
NON_ASCII_SHARE = 0.005  # of messages: exercises the decode path the agent keeps rare
MESSAGE_BYTES = (50, 400)
BACKLOG_AGE_NS = 3600 * 1_000_000_000  # pre-written lines are an hour old
POOL_SIZE = 4096  # distinct messages, reused: generating text must not cost more than tailing
_WORDS = ("GET", "POST", "/api/v1/items", "/healthz", "user", "order", "cache", "miss", "hit",
          "status=200", "status=404", "latency_ms=12", "retrying", "connection", "reset",
          "payload", "accepted", "queue", "worker", "shard", "done", "took", "bytes=5120")
_USERS = ("jane.doe", "j.smith", "ops-team", "li.wei")
# One block of a Java service's log: 109 physical lines (traces of Spring Boot, Logback,
# java.util.logging, SLF4J and the JVM, among their log lines) that the java multiline preset
# makes 16 entries of, as tests/test_pipeline_multiline.py checks.
_JAVA = java_log()
TRACE_LINES = tuple(line for entry in _JAVA for line in entry.split("\n"))
TRACE_ENTRIES = len(_JAVA)


@dataclass(frozen=True, slots=True)
class Mix:
    """What the containers write. The default is the plain benchmark mix; its random draws
    come first and in the same order whatever the mix, so the plain files stay as they were."""

    json_share: float = 0.05  # of messages: whole JSON objects with a "level" key
    json_levels: tuple[str, ...] = ("info",)  # drawn uniformly for each JSON message
    email_share: float = 0.0  # of messages: a `user=<name>@example.com` to redact
    drop_json_levels: frozenset[str] = frozenset()  # JSON lines the pipeline drops, by level
    java_every: int = 0  # every n-th container is a Java service (named java*), 0: none
    trace_every: int = 500  # a Java service writes its TRACE_LINES after every n-th line


PLAIN = Mix()


@dataclass(frozen=True, slots=True)
class Message:
    text: str
    splittable: bool  # may be written as a partial line: never a line a pipeline must parse
    dropped: bool  # a pipeline drops the logical line it starts


def message_pool(mix: Mix = PLAIN, seed: int = 7) -> list[Message]:
    """Messages of 50-400 characters: JSON objects (whole: the message shortened to fit) and
    logfmt-like text, a few with non-ASCII text."""
    rng, extra = random.Random(seed), random.Random(seed + 1)
    pool = []
    for i in range(POOL_SIZE):
        size = rng.randint(*MESSAGE_BYTES)
        words = " ".join(rng.choice(_WORDS) for _ in range(size // 5))
        if rng.random() < NON_ASCII_SHARE:
            words = "Grüße 日本語 " + words
        is_json = rng.random() < mix.json_share
        if extra.random() < mix.email_share:
            words = f"user={extra.choice(_USERS)}@example.com {words}"
        if is_json:
            level = extra.choice(mix.json_levels)
            text = json.dumps({"level": level, "seq": i, "msg": words}, ensure_ascii=False)
            if len(text) > size:  # words hold no character JSON escapes: one char each
                words = words[:max(0, len(words) - (len(text) - size))]
                text = json.dumps({"level": level, "seq": i, "msg": words}, ensure_ascii=False)
            pool.append(Message(text, not mix.drop_json_levels,
                                level in mix.drop_json_levels))
        else:
            pool.append(Message(f"level=info seq={i} msg={words}"[:size], True, False))
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
    """One container's log file, its open append descriptor, what was written to it, and
    where its writing stands: inside a partial line, or inside a Java block."""

    pod: PodLog
    java: bool = False
    fd: int = -1
    size: int = 0
    lines: int = 0  # physical lines
    entries: int = 0  # what Loki should receive: logical lines, a trace as one, drops not
    dropped: int = 0  # logical lines the pipeline drops
    rotations: list[Path] = field(default_factory=list)
    open_partial: bool = False  # the last line was a partial: its continuation comes next
    logical: int = 0  # logical lines written (a Java block is due after every trace_every-th)
    block: int = 0  # lines of the Java block still to write

    @property
    def at_boundary(self) -> bool:
        """Between entries: a rotation here splits no partial line and no trace."""
        return not self.open_partial and not self.block

    def open(self) -> None:
        self.fd = os.open(self.pod.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Workload:
    """Pod log files under `root` (kubelet's /var/log/pods and /var/log/containers layout),
    every `docker_every`-th container in Docker json-file format, the rest CRI."""

    def __init__(self, root: Path, files: int, *, mix: Mix = PLAIN, docker_every: int = 8,
                 pods: int = 0, seed: int = 7) -> None:
        self.root = root
        self.mix = mix
        self.rng = random.Random(seed)
        self.pool = message_pool(mix, seed)
        self.clock = Clock()
        pods = pods or files
        self.files: list[LogFile] = []
        for i in range(files):
            pod, container = i % pods, i // pods
            docker = docker_every > 0 and i % docker_every == docker_every - 1
            java = mix.java_every > 0 and i % mix.java_every == mix.java_every - 1
            self.files.append(LogFile(PodLog(
                root, namespace=f"ns{pod % 7}", pod=pod_name(pod),
                container=f"{'java' if java else 'c'}{container}", uid=pod_uid(pod),
                docker=docker), java=java))
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
    def dropped(self) -> int:
        return sum(f.dropped for f in self.files)

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

    def line(self, f: LogFile, stamp: str) -> str:
        """The file's next physical line (without "\\n"), counted in f.lines, f.entries and
        f.dropped: a message, a partial line's continuation, or the next line of a Java block."""
        f.lines += 1
        if f.block:
            text = TRACE_LINES[-f.block]
            f.block -= 1
            if not f.block:  # the block's last line: its entries are complete
                f.entries += TRACE_ENTRIES
            return self._format(f.pod.docker, text, False, stamp)
        msg = self.pool[self.rng.randrange(POOL_SIZE)]
        partial = self.rng.random() < PARTIAL_SHARE and msg.splittable
        if not partial:
            if msg.dropped and not f.open_partial:  # a line that starts with it: dropped
                f.dropped += 1
            else:
                f.entries += 1
            f.logical += 1
            if f.java and f.logical % self.mix.trace_every == 0:
                f.block = len(TRACE_LINES)
        f.open_partial = partial
        return self._format(f.pod.docker, msg.text, partial, stamp)

    def finish(self, f: LogFile, stamp: str, *, block: bool = True) -> list[str]:
        """The lines that end what the file is in the middle of: an open partial line and (with
        `block`) the rest of a Java block. A run's last write ends with them."""
        out = []
        if f.open_partial:
            f.open_partial = False
            f.lines += 1
            f.entries += 1
            f.logical += 1
            out.append(self._format(f.pod.docker, "end of line", False, stamp))
        while block and f.block:
            out.append(self.line(f, stamp))
        return out

    @staticmethod
    def _format(docker: bool, text: str, partial: bool, stamp: str) -> str:
        if docker:
            return json.dumps({"log": text if partial else text + "\n", "stream": "stdout",
                               "time": stamp}, ensure_ascii=False, separators=(",", ":"))
        return f"{stamp} stdout {'P' if partial else 'F'} {text}"

    def append(self, f: LogFile, data: bytes) -> None:
        os.write(f.fd, data)
        f.size += len(data)

    def rotate(self, f: LogFile) -> None:
        """kubelet's rename rotation; the agent must read the renamed file to its end."""
        f.close()
        f.rotations.append(f.pod.rotate())
        f.size = 0
        f.open()

    def prewrite(self, lines_per_file: int, ts: int, chunk: int = 20_000) -> None:
        """Backlog: lines_per_file per file (and the few that end the last entry), with
        timestamps from ts on, 1 ms apart, in writes of `chunk` lines, each ending its partial
        line (a Java block goes on in the next write)."""
        step, fmt = 1_000_000, self.clock.format
        for f in self.files:
            written, t = 0, ts
            while written < lines_per_file:
                n = min(chunk, lines_per_file - written)
                out = [self.line(f, fmt(t + i * step)) for i in range(n)]
                t += n * step
                written += n
                out += self.finish(f, fmt(t), block=written == lines_per_file)
                self.append(f, ("\n".join(out) + "\n").encode())

    def close(self) -> None:
        for f in self.files:
            f.close()


def pod_name(i: int) -> str:
    return f"app{i}-7d9f8b6c5d-x{i:04d}"


def pod_uid(i: int) -> str:
    return f"0b6a4c1e-1111-2222-3333-{i:012d}"
