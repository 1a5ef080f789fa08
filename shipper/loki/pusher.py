"""Push stage: send a batch to Loki until every entry is acknowledged or refused for good.

What each answer means is in answers.py. Only answers about the data drop data: a 400 (Loki's
validation) and a 413 for a single entry (a larger batch is split in halves and each sent).
Everything else is retried for as long as the task runs, with capped, jittered exponential
backoff (Retry-After honoured): 429, 5xx and transport failures as outages, and the answers
that say the configuration is wrong (401, 403, 404...) as a misconfiguration that /ready
reports. Entries are never dropped for having been retried.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urljoin

from shipper import __version__
from shipper.config import ConfigError, LokiConfig
from shipper.loki.answers import (
    MAX_REDIRECTS,
    Kind,
    Outcome,
    PushResult,
    classify,
    misconfiguration,
    rejected_count,
    rejection_reason,
    retry_after_seconds,
    shown,
)
from shipper.loki.encode import Compressor, encode_push_request
from shipper.loki.http import HttpClient, HttpResponse, TransportError, build_ssl_context
from shipper.loki.proxy import select_proxy
from shipper.loki.split import by_tenant, combined, halves, sizes
from shipper.metrics import Metrics
from shipper.model import Entry

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 1024  # of Loki's answer, in logs


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


class LokiPusher:
    """Pushes batches over one keep-alive connection; one push at a time is the intended use."""

    def __init__(self, config: LokiConfig, metrics: Metrics, *,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random,
                 env: Mapping[str, str] | None = None) -> None:
        self._config = config
        self._metrics = metrics
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        context = None
        tls = config.tls
        if config.url.startswith("https:") or tls.ca_file or tls.cert_file:
            context = build_ssl_context(tls)
        try:  # once: the environment is not read again per request
            proxy = select_proxy(config.url, config.proxy_url, os.environ if env is None else env)
        except ValueError as exc:
            raise ConfigError("loki.proxy_url", str(exc)) from None
        self._client = HttpClient(config.url, timeout=config.timeout, ssl=context, proxy=proxy)
        self._compressor = Compressor()
        # A proxy's own answers (407...) may echo its credentials: masked like Loki's echoes.
        self._proxy_secrets: tuple[str, ...] = ()
        if proxy is not None:
            self._proxy_secrets = (proxy.authorization.removeprefix("Basic "), proxy.password)
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
        self._misconfigured: str | None = None  # why Loki's last answer blames the config
        self._redirect_logged = ""  # the last redirect followed and logged: said once
        self._secrets: tuple[str, ...] = ()  # as last sent: masked wherever Loki echoes them

    def _request_headers(self, tenant: str) -> dict[str, str]:
        headers = dict(self._headers)
        if tenant:  # a pipeline's tenant stage routed these entries
            headers["X-Scope-OrgID"] = tenant
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
        for secret in (*self._secrets, *self._proxy_secrets):
            if secret:
                message = message.replace(secret, "<redacted>")
        return message

    @property
    def misconfigured(self) -> str | None:
        """Why the configuration looks wrong, from Loki's last answer (None: it does not): what
        to check, naming the status. A transport failure since then does not clear it."""
        return self._misconfigured

    async def push(self, streams: Mapping[str, Sequence[Entry]], entries: int,
                   line_bytes: int) -> PushResult:
        """Deliver one batch, one request per tenant; returns only once every part of it is
        settled (or raises CancelledError)."""
        tenants = by_tenant(streams)
        if tenants is None:  # the usual case: loki.tenant_id for all, the batch as it is
            return await self._push(streams, entries, line_bytes, "")
        parts = [await self._push(part, *sizes(part), tenant)
                 for tenant, part in tenants.items()]
        return combined(parts)

    async def _push(self, streams: Mapping[str, Sequence[Entry]], entries: int,
                    line_bytes: int, tenant: str) -> PushResult:
        if not entries:
            return PushResult(Outcome.DELIVERED, None, 0, 0)
        body = self._compressor.compress(encode_push_request(streams))
        attempts = 0
        while True:
            attempts += 1
            retry_after: float | None = None
            try:
                headers = self._request_headers(tenant)
            except (OSError, ValueError) as exc:  # fixable by the operator, so retried
                failure = f"unusable credentials file: {exc}"
            else:
                started = time.perf_counter()
                try:
                    response, url = await self._post(body, headers)
                except TransportError as exc:
                    self._observe("error", started)
                    failure = str(exc)
                else:
                    self._observe(str(response.status), started)
                    status, kind = response.status, classify(response.status)
                    if kind is Kind.DELIVERED:
                        return self._delivered(status, attempts, entries, line_bytes)
                    message = self._answer(response.body)
                    if kind is Kind.REJECTED:
                        return self._rejected(status, attempts, entries, line_bytes, message)
                    if kind is Kind.TOO_LARGE:
                        return await self._split(streams, attempts, line_bytes, message,
                                                 tenant)
                    failure = f"HTTP {status}: {message.strip()}"[:MESSAGE_LIMIT]
                    retry_after = retry_after_seconds(response.headers.get("retry-after"),
                                                      time.time())
                    self._blame(None if kind is Kind.RETRY else self._why(response, url),
                                failure)
            delay = self._backoff(attempts, retry_after)
            self._failing(failure, attempts, delay)
            self._metrics.batch_retries.inc()
            await self._sleep(delay)

    async def _post(self, body: bytes, headers: Mapping[str, str]) -> tuple[HttpResponse, str]:
        """POST to loki.url, following up to MAX_REDIRECTS 307/308 that stay on its scheme, host
        and port (the credentials go nowhere else); the last answer and the URL that gave it."""
        url, target = self._config.url, None
        for _ in range(MAX_REDIRECTS):
            response = await self._client.post(body, headers, target)
            location = response.headers.get("location")
            if classify(response.status) is not Kind.REDIRECT or not location:
                return response, url
            target = self._client.target_on_origin(urljoin(url, location))
            if target is None:
                return response, url  # another host: _why() says so
            url = urljoin(url, location)
            if url != self._redirect_logged:
                self._redirect_logged = url
                log.info("loki.url redirects: following to the same host; set loki.url to "
                         "the new address to save a request", extra={
                             "status": response.status, "location": shown(url)})
        return await self._client.post(body, headers, target), url

    def _why(self, response: HttpResponse, url: str) -> str:
        location = response.headers.get("location")
        resolved = urljoin(url, location) if location else None
        foreign = resolved is not None and self._client.target_on_origin(resolved) is None
        return misconfiguration(response.status, resolved, foreign=foreign)

    async def _split(self, streams: Mapping[str, Sequence[Entry]], attempts: int,
                     line_bytes: int, message: str, tenant: str) -> PushResult:
        """After a 413: each half sent (and split again) on its own; a single entry that is still
        too large is dropped. Settled once every part is."""
        self._settled(413)
        cut = halves(streams)
        if cut is None:
            return self._too_large(streams, attempts, line_bytes, message)
        parts = [await self._push(half, *sizes(half), tenant) for half in cut]
        result = combined(parts)
        return PushResult(result.outcome, 413, attempts + result.attempts, result.dropped,
                          result.reason)

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

    def _blame(self, why: str | None, failure: str) -> None:
        """Record what an HTTP answer says of the configuration; a new verdict is logged once."""
        if why is not None and why != self._misconfigured:
            log.warning("Loki refuses the configuration: retrying, nothing is dropped", extra={
                "endpoint": self._client.endpoint, "reason": why, "error": failure})
            if self.failing_since is None:
                self.failing_since = self._clock()  # said now: _failing need not say it again
        self._misconfigured = why

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
        self._misconfigured = None
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

    def _too_large(self, streams: Mapping[str, Sequence[Entry]], attempts: int,
                   line_bytes: int, message: str) -> PushResult:
        self._metrics.dropped_entries.labels("too_large").inc()
        self._metrics.dropped_bytes.labels("too_large").inc(line_bytes)
        log.warning("Loki refused a single entry as too large (413): dropped", extra={
            "stream": next(iter(streams)), "line_bytes": line_bytes,
            "loki_message": message[:MESSAGE_LIMIT]})
        return PushResult(Outcome.REJECTED, 413, attempts, 1, "too_large")

    async def aclose(self) -> None:
        await self._client.aclose()


__all__ = ["LokiPusher", "Outcome", "PushResult"]
