"""Wiring and lifecycle: build the stages, run them, shut down in order within a deadline."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Protocol, TextIO

from shipper import early_stop
from shipper.batch import Batch, Batcher, FlowControl
from shipper.config import Config
from shipper.discover import Discoverer
from shipper.enrich import Enricher
from shipper.logfile import OpenFailed
from shipper.metrics import Metrics
from shipper.model import Entry
from shipper.notify import Notifier
from shipper.pipeline.compile import Pipeline
from shipper.positions import Positions
from shipper.server import HealthServer
from shipper.sink import Sink
from shipper.supervise import Policy, Supervisor, Unrecoverable
from shipper.tail import Resume, RotationBudget, TailContext, Tailer
from shipper.ticker import Ticker

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from shipper.kube.gate import MetadataGate
    from shipper.kube.pod_cache import PodCache
    from shipper.kube.watch import PodWatcher

log = logging.getLogger(__name__)

# What becomes of a long-running task that ends with an unexpected exception
# (docs/observability.md, "When a task fails"). Both restart it with backoff; an essential
# task that keeps failing is given up, so that /healthz fails and kubelet restarts the
# container: the node depends on it, and positions make a restart lossless. A contained one
# only ever holds back part of the work (one file, or pod metadata), which must never restart
# the agent of every file.
ESSENTIAL = Policy(give_up_after=5)
CONTAINED = Policy()

# How often a file being written is read again. At 25,000 lines/s over 50 files, each read
# then carries ~500 lines instead of one per write(); a line waits at most this long more,
# which batch.timeout (10 s) dwarfs. Most of a node's files are written a few times a second:
# 500 such files at 4 lines/s cost 0.108 cores read every 250 ms, 0.065 every 500 ms and 0.042
# every second (benchmarks many_streams' trickle). Vector waits the same second between reads.
READ_TICK = 1.0  # s


class Pusher(Protocol):
    """The push seam: Loki over HTTP, or stdout in a dry run."""

    failing_since: float | None

    @property
    def misconfigured(self) -> str | None: ...

    async def push(self, streams: Mapping[str, Sequence[Entry]], entries: int,
                   line_bytes: int) -> object: ...

    async def aclose(self) -> None: ...


class Agent:
    """One agent: every stage built from the config here, run and stopped by `run()`."""

    def __init__(self, config: Config, *, out: TextIO = sys.stdout, once: bool = False) -> None:
        self.config = config
        self.once = once
        self.metrics = Metrics(node=config.kubernetes.node_name)
        self.positions = Positions(config.positions.path, self.metrics)
        self.metrics.per_file.read_from(self._file_sizes, self.positions.acked)
        self.pods: PodCache | None = None
        self.watcher: PodWatcher | None = None
        self.gate: MetadataGate | None = None
        if config.kubernetes_enabled:
            # Imported only when used: lightkube and httpx cost ~10 MiB of the memory budget.
            from shipper.kube.gate import MetadataGate
            from shipper.kube.pod_cache import PodCache
            from shipper.kube.watch import PodWatcher

            self.pods = PodCache(config.kubernetes.deleted_pod_ttl)
            # Built here so that a bad kubeconfig or a missing node name fails at start.
            self.watcher = PodWatcher(config.kubernetes, self.pods, self.metrics)
            self.gate = MetadataGate(self.pods, config.kubernetes)
        self.enricher = Enricher(config.labels, config.kubernetes.node_name, self.pods)
        self.flow = FlowControl(config.batch.max_pending_bytes, self.metrics)
        self.batcher = Batcher(config.batch, self.flow, self.positions)
        self.pusher = self._pusher(out)
        self.discoverer = Discoverer(config.inputs)
        self.notifier = Notifier()
        self.supervisor = Supervisor(self.metrics)
        self._in_flight: Batch | None = None  # being pushed: pushed again if delivery fails
        self.tailers: dict[str, Tailer] = {}  # by real path: two links to one file tail it once
        self._tailer_tasks: dict[asyncio.Task[None], str] = {}  # -> its tailer's real path
        # Paths that could not be opened at the last rescan, and why: each is logged and
        # counted once (again if the reason changes), and retried quietly at each rescan.
        self._unreadable: dict[str, str] = {}
        self._resume = Resume()
        self.pipeline = Pipeline(config.pipeline, self.metrics,
                                 annotations=config.kubernetes_enabled
                                 and config.kubernetes.pipeline_annotations)
        self._ctx = TailContext(config.inputs, self.enricher,
                                Sink(self.flow, self.batcher, self.positions), self.metrics,
                                self._resume, RotationBudget(config.inputs.max_rotated_files),
                                self.notifier, Ticker(READ_TICK), once, self.pipeline,
                                self.gate)
        self.server = HealthServer(config.server.listen, self.metrics, self.ready,
                                   self.supervisor.health)
        self.started = False

    def _pusher(self, out: TextIO) -> Pusher:
        if self.config.dry_run:
            from shipper.loki.dryrun import StdoutPusher

            return StdoutPusher(out)
        from shipper.loki.pusher import LokiPusher

        return LokiPusher(self.config.loki, self.metrics)

    # -- readiness -----------------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        if not self.started:
            return False, "starting"
        if self.gate is not None and not self.gate.warm:
            return False, "waiting for the first pod list"
        if self.positions.write_error:
            return False, f"positions not writable: {self.positions.write_error}"
        if (misconfigured := self.pusher.misconfigured) is not None:
            return False, misconfigured  # at once: waiting would not fix a config
        since = self.pusher.failing_since
        window = self.config.server.ready_push_failure_window
        if since is not None and time.monotonic() - since > window:
            return False, f"pushes failing for over {window:g}s"
        return True, "ready"

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set (or SIGTERM/SIGINT; with once, until every file is at EOF),
        then: stop reading, push what is batched within the deadline, save positions."""
        stop = stop or self._stop_on_signals()
        await self.server.start()  # first: an unusable server.listen fails before any reading
        self._resume.restore(self.positions.load())
        supervise = self.supervisor.start
        background = [supervise("positions", self._save_positions, ESSENTIAL)]
        if self.watcher is not None:
            background.append(supervise("pod_watch", self.watcher.run, CONTAINED))
        if self.gate is not None:
            self.gate.start()
        deliver = supervise("deliver", self._deliver, ESSENTIAL)
        self.started = True
        log.info("started", extra={"paths": list(self.config.inputs.paths),
                                   "dry_run": self.config.dry_run})
        try:
            if not self.once:
                self.notifier.start()  # before the first scan: its tailers arm their files
            self._rescan()
            self._resume.first_scan_done()
            if self.once:
                await asyncio.gather(*self._tailer_tasks)
            else:
                background.append(supervise("discover", functools.partial(
                    self.discoverer.watch, self.notifier, self._watched_dirs, self._on_change,
                    self._rescan), ESSENTIAL))
                await stop.wait()
                log.info("stopping: no more reading; pushing what is batched")
        finally:
            await self._shutdown(deliver, background)
            await self.server.stop()

    async def _shutdown(self, deliver: asyncio.Task[None],
                        background: list[asyncio.Task[None]]) -> None:
        tailers = list(self.tailers.values())
        for task in [*background, *self._tailer_tasks]:
            task.cancel()
        await asyncio.gather(*background, *self._tailer_tasks, return_exceptions=True)
        for tailer in tailers:
            tailer.close()  # one cancelled while waiting to restart still holds its files
        self.notifier.close()
        self.batcher.close()
        try:
            await asyncio.wait_for(deliver, self.config.shutdown.deadline)
        except TimeoutError:
            log.error("shutdown deadline reached; undelivered lines will be read again at the "
                      "next start", extra={"pending_entries": self.batcher.pending_entries})
        await self.pusher.aclose()
        await self.positions.save()  # waits for a periodic write still in flight, then writes
        log.info("stopped")

    def _stop_on_signals(self) -> asyncio.Event:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)  # kubelet stopping the pod
        loop.add_signal_handler(signal.SIGINT, stop.set)  # Ctrl-C when run by hand
        if early_stop.requested:  # a SIGTERM during start-up whose SystemExit was lost
            stop.set()
        return stop

    async def _deliver(self) -> None:
        """The one push loop: each batch is settled (acknowledged or dropped for good) before
        the positions behind it may advance. Restarted after a failure, it first pushes again
        the batch that was in flight: a failure drops no batch and settles none twice."""
        while True:
            batch = self._in_flight
            if batch is None:
                batch = await self.batcher.next_batch()
                if batch is None:
                    return
                self._drop_excluded(batch)
                self._in_flight = batch
            if batch.entries:  # else every entry was excluded: nothing to send, settled all same
                await self.pusher.push(batch.streams, batch.entries, batch.line_bytes)
            self._in_flight = None
            try:
                self.batcher.settle(batch)
            except Exception as exc:
                raise Unrecoverable("a batch failed half-way through settling: the positions "
                                    "of its files can no longer advance") from exc

    def _drop_excluded(self, batch: Batch) -> None:
        """Exclusion is never bypassed by timing: entries read before their pod opted out (or
        before the pod was known) are not sent once it has."""
        if self.pods is not None and (dropped := batch.drop(self.enricher.excluded)):
            self.metrics.entries_excluded.inc(dropped)

    async def _save_positions(self) -> None:
        """At most one write per write_interval, and none while no offset moves."""
        while True:
            await self.positions.changed()
            await self.positions.save()  # written in a thread: a slow disk delays only this loop
            await asyncio.sleep(self.config.positions.write_interval)

    # -- discovery -----------------------------------------------------------------------------

    def _rescan(self) -> None:
        unreadable: dict[str, str] = {}
        followed = set()
        for tailer in self.tailers.values():
            tailer.notice()
            followed.add(tailer.path)
        for path in self.discoverer.paths():
            if path in followed:
                continue  # realpath() costs several syscalls: only for paths not yet followed
            real = os.path.realpath(path)
            if real in self.tailers:
                continue
            tailer = Tailer(path, real, self._ctx)
            try:
                tailer.open()
            except FileNotFoundError:
                continue  # a link left behind by a pod that is gone: nothing to read
            except (OpenFailed, OSError) as exc:
                reason = exc.reason if isinstance(exc, OpenFailed) else "open_failed"
                unreadable[path] = reason
                if self._unreadable.get(path) != reason:
                    self.metrics.file_errors.labels(reason).inc()
                    log.error("cannot open file; will retry at each rescan",
                              extra={"path": path, "reason": reason, "error": str(exc)})
                continue
            self.tailers[real] = tailer
            # Bound methods, not partials: ~0.4 KiB less a file.
            task = self.supervisor.start(f"tail {path}", tailer.run, CONTAINED, kind="tail",
                                         before_restart=tailer.rewind)
            self._tailer_tasks[task] = real
            task.add_done_callback(self._tailer_done)
        self._unreadable = unreadable  # a path gone (or readable) since is forgotten

    def _file_sizes(self) -> list[tuple[str, int]]:
        return [size for tailer in self.tailers.values() for size in tailer.sizes()]

    def _tailer_done(self, task: asyncio.Task[None]) -> None:
        self.tailers.pop(self._tailer_tasks.pop(task), None)

    def _watched_dirs(self) -> set[str]:
        return {os.path.dirname(t.realpath) for t in self.tailers.values()}

    def _on_change(self, paths: set[str]) -> None:
        dirs = {os.path.dirname(p) for p in paths}
        for tailer in self.tailers.values():
            if tailer.path in paths or os.path.dirname(tailer.realpath) in dirs:
                tailer.notice()
                tailer.wake()
