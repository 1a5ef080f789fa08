"""Supervision: restarts with backoff, the failures that give a task up, and /healthz."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from shipper.metrics import Metrics
from shipper.supervise import Policy, Supervisor, Unrecoverable
from tests.support.clock import Clock

POLICY = Policy(min_backoff=1.0, max_backoff=4.0, healthy_after=60.0, give_up_after=4)


class Harness:
    """A supervisor whose sleeps pass no time, only record their length; the clock moves
    as the task's script says; jitter takes the full delay."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.metrics = Metrics()
        self.sleeps: list[float] = []
        self.supervisor = Supervisor(self.metrics, sleep=self._sleep, clock=self.clock,
                                     rng=lambda: 1.0)

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def supervise(self, name: str, run: Callable[[], Awaitable[None]], policy: Policy, *,
                  kind: str | None = None,
                  before_restart: Callable[[], None] | None = None) -> None:
        """Run the task under supervision until it ends."""
        async def main() -> None:
            await self.supervisor.start(name, run, policy, kind=kind,
                                        before_restart=before_restart)

        asyncio.run(main())

    def failures(self, kind: str) -> float:
        return float(self.metrics.task_failures.labels(kind)._value.get())


def script(clock: Clock, steps: list[tuple[float, BaseException | None]]
           ) -> Callable[[], Awaitable[None]]:
    """A task that, on each run, lets `seconds` pass on the clock, then raises or returns."""
    runs = iter(steps)

    async def run() -> None:
        seconds, error = next(runs)
        clock.now += seconds
        if error is not None:
            raise error

    return run


def test_a_failed_task_is_logged_at_once_and_restarted_with_doubling_backoff(
        caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    repaired: list[int] = []
    run = script(h.clock, [(1, RuntimeError("boom"))] * 3 + [(1, None)])

    with caplog.at_level(logging.ERROR):
        h.supervise("tail /x.log", run, POLICY, kind="tail",
                    before_restart=lambda: repaired.append(len(h.sleeps)))
    assert h.sleeps == [1.0, 2.0, 4.0]
    assert repaired == [1, 2, 3]  # after each wait, before each new run
    assert h.failures("tail") == 3
    logged = [r for r in caplog.records if r.getMessage() == "task failed; restarting it"]
    assert len(logged) == 3 and all(r.exc_info for r in logged)  # with its traceback
    assert vars(logged[0])["task"] == "tail /x.log"
    assert h.supervisor.health() == (True, "ok")


def test_a_task_failing_again_and_again_is_given_up_and_fails_health(
        caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    run = script(h.clock, [(1, RuntimeError(f"boom {i}")) for i in range(10)])
    with caplog.at_level(logging.ERROR):
        h.supervise("deliver", run, POLICY)
    assert h.sleeps == [1.0, 2.0, 4.0]  # the fourth failure in a row is the last
    assert h.supervisor.health() == (
        False, "task deliver failed for good: RuntimeError('boom 3')")
    assert [r.levelname for r in caplog.records][-1] == "CRITICAL"


def test_a_run_that_lasted_starts_the_count_and_the_backoff_over() -> None:
    h = Harness()
    steps: list[tuple[float, BaseException | None]] = [(1, ValueError())] * 3
    steps += [(60, ValueError())] + [(1, ValueError())] * 2 + [(1, None)]
    h.supervise("discover", script(h.clock, steps), POLICY)
    assert h.sleeps == [1.0, 2.0, 4.0, 1.0, 2.0, 4.0]  # six failures, never four in a row
    assert h.supervisor.health() == (True, "ok")


def test_without_a_limit_a_task_is_restarted_for_ever_at_the_longest_backoff() -> None:
    h = Harness()
    run = script(h.clock, [(0, OSError("EIO"))] * 20 + [(0, None)])
    h.supervise("pod_watch", run, Policy(max_backoff=30.0))
    assert len(h.sleeps) == 20 and h.sleeps[-1] == 30.0
    assert h.supervisor.health() == (True, "ok")


def test_an_unrecoverable_failure_is_given_up_at_once() -> None:
    h = Harness()
    run = script(h.clock, [(1, Unrecoverable("half settled"))])
    h.supervise("deliver", run, POLICY)
    assert h.sleeps == []
    assert h.supervisor.health() == (
        False, "task deliver failed for good: Unrecoverable('half settled')")


def test_cancelling_a_task_ends_it_without_a_failure() -> None:
    h = Harness()

    async def forever() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        task = h.supervisor.start("positions", forever, POLICY)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert h.failures("positions") == 0 and h.supervisor.health() == (True, "ok")
