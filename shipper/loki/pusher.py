"""Push stage: send a batch to Loki until it is acknowledged or permanently rejected.

The retry rule, as Promtail's: 429, 5xx and transport failures are retried for as long as the
task runs (with capped, jittered exponential backoff; Retry-After honoured); any other answer
settles the batch. Entries are never dropped for having been retried.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import logging
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

from shipper import __version__
from shipper.config import LokiConfig
from shipper.loki.encode import compress, encode_push_request
from shipper.loki.http import HttpClient, TransportError, build_ssl_context
from shipper.metrics import Metrics
from shipper.model import Entry

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 1024  # of Loki's answer, in logs


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # acknowledged: every entry stored
    REJECTED = "rejected"  # refused for good (PushResult.dropped of them; a 400 may store the
    # rest): settled all the same, counted, logged


@dataclass(frozen=True, slots=True)
class PushResult:
    outcome: Outcome
    status: int | None
    attempts: int
    dropped: int  # entries Loki refused
    reason: str = ""


class _SecretFile:
    """A credential file, re-read when it changes (projected service-account tokens rotate)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._value = ""

    def read(self) -> str:
        st = os.stat(self._path)
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            value = Path(self._path).read_text(encoding="utf-8").strip()
            if not (value.isascii() and value.isprintable()):  # never say what it holds
                raise ValueError(f"{self._path} holds characters not allowed in a header")
            self._value, self._stamp = value, stamp
        return self._value


# Loki's reasons (pkg/validation), found in its message; the first match wins.
_REASONS = (
    ("line_too_long", ("line_too_long", "max entry size", "line too long")),
    ("too_old", ("greater_than_max_sample_age", "too old", "too far behind", "out of order")),
    ("too_far_in_future", ("too_far_in_future", "too new", "too far in the future")),
    ("rate_limited", ("rate_limited", "rate limit")),
    ("stream_limit", ("stream_limit", "stream limit")),
)
# The ingester's partial rejection, once per stream: "... total ignored: N out of M ...";
# newer distributors say "N errors like: ..." per kind of validation error.
_IGNORED = re.compile(r"total ignored: (\d+) out of \d+|(\d+) errors like:")


def rejection_reason(message: str) -> str:
    text = message.lower()
    for reason, needles in _REASONS:
        if any(needle in text for needle in needles):
            return reason
    return "bad_request"


def rejected_count(message: str, entries: int) -> int:
    """How many entries Loki refused: what its message counts, else the whole batch."""
    counted = [int(a or b) for a, b in _IGNORED.findall(message)]
    return min(sum(counted), entries) if counted else entries


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as delay-seconds or an HTTP-date (`now`: wall-clock epoch seconds)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


class LokiPusher:
    """Pushes batches over one keep-alive connection; one push at a time is the intended use."""

    def __init__(self, config: LokiConfig, metrics: Metrics, *,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random) -> None:
        self._config = config
        self._metrics = metrics
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        context = None
        tls = config.tls
        if config.url.startswith("https:") or tls.ca_file or tls.cert_file:
            context = build_ssl_context(tls)
        self._client = HttpClient(config.url, timeout=config.timeout, ssl=context)
        self._headers = {"Content-Type": "application/x-protobuf",
                         "User-Agent": f"shipper/{__version__}"}
        if config.tenant_id:
            if not (config.tenant_id.isascii() and config.tenant_id.isprintable()):
                raise ValueError("loki.tenant_id must be printable ASCII")
            self._headers["X-Scope-OrgID"] = config.tenant_id
        self._token = _SecretFile(config.bearer_token_file) if config.bearer_token_file else None
        self._password = (_SecretFile(config.basic_auth.password_file)
                          if config.basic_auth.password_file else None)
        self.failing_since: float | None = None  # clock() at the first failure of this streak
        self._failure = ""  # what the current streak is failing with, for the recovery log
        self._secrets: tuple[str, ...] = ()  # as last sent: masked wherever Loki echoes them

    def _request_headers(self) -> dict[str, str]:
        headers = dict(self._headers)
        if self._token is not None:
            token = self._token.read()
            headers["Authorization"] = f"Bearer {token}"
            self._secrets = (token,)
        elif self._config.basic_auth.username:
            password = self._password.read() if self._password is not None else ""
            pair = f"{self._config.basic_auth.username}:{password}".encode()
            encoded = base64.b64encode(pair).decode("ascii")
            headers["Authorization"] = f"Basic {encoded}"
            self._secrets = (encoded, password)
        return headers

    def _answer(self, body: bytes) -> str:
        """Loki's whole message (counts of ignored lines may end it), with any echo of our
        credentials masked. Cut to MESSAGE_LIMIT only where it is logged."""
        message = body.decode("utf-8", "replace")
        for secret in self._secrets:
            if secret:
                message = message.replace(secret, "<redacted>")
        return message

    async def push(self, streams: Mapping[str, Sequence[Entry]], entries: int,
                   line_bytes: int) -> PushResult:
        """Deliver one batch; returns only once it is settled (or raises CancelledError)."""
        if not entries:
            return PushResult(Outcome.DELIVERED, None, 0, 0)
        body = compress(encode_push_request(streams))
        attempts = 0
        while True:
            attempts += 1
            retry_after: float | None = None
            try:
                headers = self._request_headers()
            except (OSError, ValueError) as exc:  # fixable by the operator, so retried
                failure = f"unusable credentials file: {exc}"
            else:
                started = time.perf_counter()
                try:
                    response = await self._client.post(body, headers)
                except TransportError as exc:
                    self._observe("error", started)
                    failure = str(exc)
                else:
                    self._observe(str(response.status), started)
                    status = response.status
                    if 200 <= status < 300:
                        return self._delivered(status, attempts, entries, line_bytes)
                    message = self._answer(response.body)
                    if status != 429 and status < 500:
                        return self._rejected(status, attempts, entries, line_bytes, message)
                    failure = f"HTTP {status}: {message.strip()}"[:MESSAGE_LIMIT]
                    retry_after = retry_after_seconds(response.headers.get("retry-after"),
                                                      time.time())
            delay = self._backoff(attempts, retry_after)
            self._failing(failure, attempts, delay)
            self._metrics.batch_retries.inc()
            await self._sleep(delay)

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        """Full jitter over [min_backoff, cap], cap doubling from min_backoff to max_backoff;
        never sooner than Retry-After asks, never longer than max_backoff."""
        low, high = self._config.min_backoff, self._config.max_backoff
        cap = min(high, low * 2.0 ** min(attempts - 1, 64))
        delay = low + self._rng() * (cap - low)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, high)

    def _observe(self, status_code: str, started: float) -> None:
        self._metrics.request_duration.labels(status_code).observe(time.perf_counter() - started)

    def _failing(self, failure: str, attempts: int, delay: float) -> None:
        extra = {"endpoint": self._client.endpoint, "error": failure, "attempts": attempts,
                 "retry_in": round(delay, 3)}
        if self.failing_since is None:
            self.failing_since = self._clock()
            log.warning("push failing, retrying until Loki accepts", extra=extra)
        else:
            log.debug("push still failing", extra=extra)
        self._failure = failure

    def _settled(self, status: int) -> None:
        if self.failing_since is not None:
            log.info("push recovered", extra={
                "endpoint": self._client.endpoint, "status": status, "last_error": self._failure,
                "failing_for": round(self._clock() - self.failing_since, 3)})
            self.failing_since = None

    def _delivered(self, status: int, attempts: int, entries: int, line_bytes: int
                   ) -> PushResult:
        self._settled(status)
        self._metrics.sent_entries.inc(entries)
        self._metrics.sent_bytes.inc(line_bytes)
        return PushResult(Outcome.DELIVERED, status, attempts, 0)

    def _rejected(self, status: int, attempts: int, entries: int, line_bytes: int,
                  message: str) -> PushResult:
        """Loki answered for good. A 400 may still have stored the valid part of the batch."""
        self._settled(status)
        reason = rejection_reason(message)
        dropped = rejected_count(message, entries)
        # Which lines were refused is not said: their bytes are estimated pro rata.
        dropped_bytes = line_bytes * dropped // entries
        self._metrics.dropped_entries.labels(reason).inc(dropped)
        self._metrics.dropped_bytes.labels(reason).inc(dropped_bytes)
        self._metrics.sent_entries.inc(entries - dropped)
        self._metrics.sent_bytes.inc(line_bytes - dropped_bytes)
        log.warning("Loki rejected entries: dropped", extra={
            "status": status, "reason": reason, "dropped": dropped, "entries": entries,
            "loki_message": message[:MESSAGE_LIMIT]})
        return PushResult(Outcome.REJECTED, status, attempts, dropped, reason)

    async def aclose(self) -> None:
        await self._client.aclose()


__all__ = ["LokiPusher", "Outcome", "PushResult", "rejected_count", "rejection_reason",
           "retry_after_seconds"]
