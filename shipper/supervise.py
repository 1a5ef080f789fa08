"""Supervision: a long-running task that fails is logged at once, then restarted with backoff,
or given up, which fails /healthz so that kubelet restarts the container."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shipper.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Policy:
    """How a failed task is restarted: after a jittered delay that doubles from min_backoff to
    max_backoff, and starts over once a run lasted healthy_after."""

    min_backoff: float = 0.5  # s
    max_backoff: float = 30.0  # s
    healthy_after: float = 60.0  # s: a run this long was not part of a crash loop
    give_up_after: int | None = None  # failures in a row that fail /healthz; None: never


class Unrecoverable(Exception):
    """Raised by a task whose failure left shared state it cannot repair: it is given up at
    once, whatever its policy."""


class Supervisor:
    """Runs the agent's long-running tasks and knows which of them were given up."""

    def __init__(self, metrics: Metrics, *,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random) -> None:
        self._metrics = metrics
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._given_up: dict[str, str] = {}  # task name -> its last error

    def health(self) -> tuple[bool, str]:
        """What /healthz answers: not healthy once any task was given up."""
        if not self._given_up:
            return True, "ok"
        return False, "; ".join(f"task {name} failed for good: {error}"
                                for name, error in self._given_up.items())

    def start(self, name: str, run: Callable[[], Awaitable[None]], policy: Policy, *,
              kind: str | None = None,
              before_restart: Callable[[], None] | None = None) -> asyncio.Task[None]:
        """Run `run()` as a task named `name` until it returns (or is cancelled), restarting it
        after an exception as `policy` says; `before_restart` repairs what a failure left.
        `kind` labels shipper_task_failures_total (default: the name)."""
        return asyncio.create_task(
            self._supervise(name, kind or name, run, policy, before_restart), name=name)

    async def _supervise(self, name: str, kind: str, run: Callable[[], Awaitable[None]],
                         policy: Policy, before_restart: Callable[[], None] | None) -> None:
        delay, failures, restarting = policy.min_backoff, 0, False
        while True:
            started = self._clock()
            try:
                if restarting and before_restart is not None:
                    before_restart()
                await run()
                return
            except Exception as exc:  # CancelledError is not an Exception: shutdown goes on
                self._metrics.task_failures.labels(kind).inc()
                if self._clock() - started >= policy.healthy_after:
                    delay, failures = policy.min_backoff, 0
                failures += 1
                if isinstance(exc, Unrecoverable) or failures == policy.give_up_after:
                    self._given_up[name] = repr(exc)
                    log.critical("task failed for good; /healthz fails so that kubelet "
                                 "restarts the container", exc_info=exc,
                                 extra={"task": name, "failures": failures, "error": repr(exc)})
                    return
                wait = delay * (0.5 + self._rng() / 2)  # jitter: failed tasks restart apart
                log.error("task failed; restarting it", exc_info=exc, extra={
                    "task": name, "failures": failures, "error": repr(exc),
                    "restart_in": round(wait, 3)})
            await self._sleep(wait)
            delay, restarting = min(delay * 2, policy.max_backoff), True
