"""Rate limit stage: lines per second per Loki stream, by dropping or by holding reading back."""

from __future__ import annotations

from collections.abc import Callable

from shipper.pipeline.config import RateLimitConfig
from shipper.pipeline.record import Env, Record, StreamInfo

_BUCKETS_MAX = 4096


class _Bucket:
    """A token bucket: `rate` tokens a second, at most `burst` saved up. With `hold`, tokens
    may be borrowed (a negative balance): the reader then waits until they are paid back."""

    reason = "rate_limited"

    def __init__(self, rate: float, burst: float, hold: bool,
                 clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = burst
        self._hold = hold
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def apply(self, record: Record, env: Env) -> bool:
        now = self._clock()
        tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        if not self._hold:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        env.delay = max(env.delay, -self._tokens / self._rate)  # until the debt is paid
        return True

    def idle(self) -> bool:
        """Full again: forgetting it changes nothing."""
        return self._tokens + (self._clock() - self._at) * self._rate >= self._burst


class RateLimitSpec:
    """`rate_limit`: one bucket per Loki stream (the streams of several files may share one,
    e.g. the replicas of a Deployment on this node), shared by every file writing to it.
    `drop` counts what it drops (reason rate_limited); `hold` loses nothing: the records of a
    read go on, and the reader then waits until the stream is back within its rate, so lines
    past the rate wait on disk."""

    def __init__(self, config: RateLimitConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def build(self, info: StreamInfo) -> _Bucket:
        key = info.stream.key
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _BUCKETS_MAX:  # streams of pods long gone
                self._buckets = {k: b for k, b in self._buckets.items() if not b.idle()}
            c = self._config
            bucket = self._buckets[key] = _Bucket(
                c.lines_per_second, float(c.burst or max(1.0, c.lines_per_second)),
                c.action == "hold", self._clock)
        return bucket
