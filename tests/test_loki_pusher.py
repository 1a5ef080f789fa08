"""The pusher over real HTTP to the Loki-protocol receiver, with faults switched on and off."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from shipper.config import BasicAuthConfig, LokiConfig
from shipper.loki.dryrun import StdoutPusher
from shipper.loki.pusher import (
    LokiPusher,
    Outcome,
    PushResult,
    rejected_count,
    rejection_reason,
    retry_after_seconds,
)
from shipper.metrics import Metrics
from shipper.model import Entry, Stream
from tests.support.loki_receiver import LokiReceiver

T0 = 1_764_230_400_000_000_000
API = Stream('{app="api", namespace="shop"}', (("app", "api"), ("namespace", "shop")),
             (("pod", "api-1"), ("stream", "stdout")))
WEB = Stream('{app="web", namespace="shop"}', (("app", "web"), ("namespace", "shop")), ())


def batch(*lines: str, stream: Stream = API) -> dict[str, list[Entry]]:
    return {stream.labels: [(T0 + i, line.encode(), stream) for i, line in enumerate(lines)]}


def sizes(streams: dict[str, list[Entry]]) -> tuple[int, int]:
    entries = [e for es in streams.values() for e in es]
    return len(entries), sum(len(e[1]) for e in entries)


class Sleeps:
    """An injected sleep: records each wait and runs a hook instead of waiting."""

    def __init__(self, hook: Callable[[int], object] = lambda n: None) -> None:
        self.delays: list[float] = []
        self.hook = hook

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.hook(len(self.delays))
        await asyncio.sleep(0)


def push(receiver: LokiReceiver, streams: dict[str, list[Entry]], *,
         sleep: Sleeps | None = None, metrics: Metrics | None = None,
         rng: Callable[[], float] = lambda: 0.0, **config: object) -> PushResult:
    loki = LokiConfig(url=receiver.url, **config)  # type: ignore[arg-type]

    async def run() -> PushResult:
        pusher = LokiPusher(loki, metrics or Metrics(), sleep=sleep or Sleeps(), rng=rng)
        try:
            return await pusher.push(streams, *sizes(streams))
        finally:
            await pusher.aclose()
    return asyncio.run(run())


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_delivered_with_headers_and_counted() -> None:
    metrics = Metrics()
    streams = {**batch("one", "two"), **batch("three", stream=WEB)}
    with LokiReceiver() as receiver:
        result = push(receiver, streams, metrics=metrics, tenant_id="team-a")
        entries = receiver.entries
        headers = receiver.headers_seen[0]
    assert result == PushResult(Outcome.DELIVERED, 204, 1, 0)
    assert [(e.line, e.labels["app"], e.tenant) for e in entries] == [
        ("one", "api", "team-a"), ("two", "api", "team-a"), ("three", "web", "team-a")]
    assert entries[0].metadata == {"pod": "api-1", "stream": "stdout"}
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["User-Agent"].startswith("shipper/")
    assert headers["X-Scope-OrgID"] == "team-a"
    assert "Authorization" not in headers
    assert sample(metrics, "shipper_sent_entries_total") == 3
    assert sample(metrics, "shipper_sent_bytes_total") == len("onetwothree")
    assert sample(metrics, "shipper_request_duration_seconds_count", status_code="204") == 1


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_retryable_statuses_are_retried_until_accepted(status: int) -> None:
    metrics = Metrics()
    with LokiReceiver() as receiver:
        receiver.fail_next(3, status)
        result = push(receiver, batch("x"), metrics=metrics)
        assert receiver.requests == 4
        assert [e.line for e in receiver.entries] == ["x"]
    assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 4)
    assert sample(metrics, "shipper_batch_retries_total") == 3
    assert sample(metrics, "shipper_request_duration_seconds_count",
                  status_code=str(status)) == 3
    assert sample(metrics, "shipper_dropped_entries_total", reason="bad_request") == 0


def test_retry_after_is_honoured_in_seconds_and_capped_by_max_backoff() -> None:
    with LokiReceiver() as receiver:
        sleeps = Sleeps(lambda n: receiver.fail(429, retry_after="100") if n == 1 else
                        receiver.accept() if n == 2 else None)
        receiver.fail(429, retry_after="3")
        result = push(receiver, batch("x"), sleep=sleeps, min_backoff=0.5, max_backoff=10.0)
    assert result.attempts == 3
    assert sleeps.delays == [3.0, 10.0]


def test_retry_after_values() -> None:
    now = 1_764_230_400.0  # Thu, 27 Nov 2025 08:00:00 GMT
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("Thu, 27 Nov 2025 08:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Thu, 27 Nov 2025 07:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_backoff_doubles_with_full_jitter_up_to_max_backoff() -> None:
    def delays(rng: Callable[[], float]) -> list[float]:
        with LokiReceiver() as receiver:
            receiver.fail_next(10, 503)
            sleeps = Sleeps()
            push(receiver, batch("x"), sleep=sleeps, rng=rng, min_backoff=0.5, max_backoff=10.0)
        return sleeps.delays

    assert delays(lambda: 1.0) == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0, 10.0]
    assert delays(lambda: 0.0) == [0.5] * 10
    assert delays(lambda: 0.5) == [0.5, 0.75, 1.25, 2.25, 4.25, 5.25, 5.25, 5.25, 5.25, 5.25]


def test_refused_then_accepted() -> None:
    metrics = Metrics()
    with LokiReceiver() as receiver:
        receiver.refuse()
        sleeps = Sleeps(lambda n: receiver.accept() if n == 2 else None)
        result = push(receiver, batch("x"), sleep=sleeps, metrics=metrics)
        assert [e.line for e in receiver.entries] == ["x"]
    assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 3)
    assert sample(metrics, "shipper_request_duration_seconds_count", status_code="error") == 2


def test_stall_beyond_the_timeout_then_accepted() -> None:
    with LokiReceiver() as receiver:
        receiver.stall(5.0)
        sleeps = Sleeps(lambda n: receiver.accept())
        result = push(receiver, batch("x"), sleep=sleeps, timeout=0.3)
        assert [e.line for e in receiver.entries] == ["x"]  # the stalled copy is not stored yet
    assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 2)


def test_connection_reset_then_accepted() -> None:
    with LokiReceiver() as receiver:
        receiver.reset()
        sleeps = Sleeps(lambda n: receiver.accept())
        result = push(receiver, batch("x"), sleep=sleeps)
        assert [e.line for e in receiver.entries] == ["x"]
    assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 2)


def test_a_client_error_drops_the_batch_counted_by_reason(caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    metrics = Metrics()
    message = ("entry for stream '{app=\"api\"}' has timestamp too old: 2020-01-01T00:00:00Z, "
               "oldest acceptable timestamp is: 2025-11-20T00:00:00Z" + "x" * 3000)
    with LokiReceiver() as receiver, caplog.at_level(logging.INFO, "shipper.loki.pusher"):
        receiver.fail(400, body=message)
        result = push(receiver, batch("a", "bb"), metrics=metrics)
        assert receiver.requests == 1  # never retried
    assert result == PushResult(Outcome.REJECTED, 400, 1, 2, "too_old")
    assert sample(metrics, "shipper_dropped_entries_total", reason="too_old") == 2
    assert sample(metrics, "shipper_dropped_bytes_total", reason="too_old") == 3
    assert sample(metrics, "shipper_sent_entries_total") == 0
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.loki_message.startswith("entry for stream")  # type: ignore[attr-defined]
    assert len(record.loki_message) == 1024  # type: ignore[attr-defined]


def test_a_partial_400_counts_only_the_ignored_entries() -> None:
    metrics = Metrics()
    streams = {**batch("ok-1", "bad-1", "ok-2", "bad-2"), **batch("bad-3", "ok-3", stream=WEB)}
    with LokiReceiver() as receiver:
        receiver.reject_lines(lambda line: line.startswith("bad"))
        result = push(receiver, streams, metrics=metrics)
        stored = sorted(e.line for e in receiver.entries)
    assert stored == ["ok-1", "ok-2", "ok-3"]
    assert result == PushResult(Outcome.REJECTED, 400, 1, 3, "line_too_long")
    assert sample(metrics, "shipper_dropped_entries_total", reason="line_too_long") == 3
    assert sample(metrics, "shipper_sent_entries_total") == 3


@pytest.mark.parametrize(("message", "reason"), [
    ("Max entry size '256' bytes exceeded for stream '{a=\"b\"}' while adding an entry with "
     "length '300' bytes", "line_too_long"),
    ("entry for stream '{a=\"b\"}' has timestamp too new: 2030-01-01", "too_far_in_future"),
    ("Ingestion rate limit exceeded for user fake (limit: 10 bytes/sec)", "rate_limited"),
    ("Maximum active stream limit exceeded when trying to create stream", "stream_limit"),
    ("entry too far behind, entry timestamp is: x", "too_old"),
    ("error at least one label pair is required per stream", "bad_request"),
    ("", "bad_request"),
])
def test_rejection_reasons(message: str, reason: str) -> None:
    assert rejection_reason(message) == reason


def test_rejected_counts() -> None:
    two_streams = ("user 'a', total ignored: 2 out of 5 for stream: {a=\"b\"}\n"
                   "entry with timestamp x ignored, reason: 'y',\n"
                   "user 'a', total ignored: 1 out of 1 for stream: {a=\"c\"}")
    assert rejected_count(two_streams, 6) == 3
    assert rejected_count("total ignored: 9 out of 9", 6) == 6  # never more than the batch
    assert rejected_count("3 errors like: line too long; 2 errors like: too old", 10) == 5
    assert rejected_count("something else", 6) == 6


def test_failing_since_and_one_log_event_per_streak(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    seen: list[float | None] = []

    async def run(receiver: LokiReceiver) -> None:
        pusher: LokiPusher

        async def sleep(delay: float) -> None:
            seen.append(pusher.failing_since)
            now[0] += delay
            if len(seen) == 4:
                receiver.accept()

        pusher = LokiPusher(LokiConfig(url=receiver.url, min_backoff=1.0, max_backoff=1.0),
                            Metrics(), sleep=sleep, clock=lambda: now[0])
        assert pusher.failing_since is None
        await pusher.push(*_args(batch("x")))
        assert pusher.failing_since is None
        await pusher.aclose()

    with LokiReceiver() as receiver, caplog.at_level(logging.DEBUG, "shipper.loki.pusher"):
        receiver.fail(503, body="ingester unavailable")
        asyncio.run(run(receiver))
    assert seen == [100.0] * 4
    loud = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.getMessage() for r in loud] == ["push failing, retrying until Loki accepts",
                                              "push recovered"]
    assert loud[0].error == "HTTP 503: ingester unavailable"  # type: ignore[attr-defined]
    assert loud[1].failing_for == 4.0  # type: ignore[attr-defined]
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG]) == 3


def _args(streams: dict[str, list[Entry]]) -> tuple[dict[str, list[Entry]], int, int]:
    return (streams, *sizes(streams))


def test_push_is_cancellable_while_retrying() -> None:
    async def run(receiver: LokiReceiver) -> None:
        pusher = LokiPusher(LokiConfig(url=receiver.url, min_backoff=60.0), Metrics())
        task = asyncio.create_task(pusher.push(*_args(batch("x"))))
        while not receiver.requests:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await pusher.aclose()

    with LokiReceiver() as receiver:
        receiver.fail(503)
        asyncio.run(asyncio.wait_for(run(receiver), 5))


def test_basic_auth_with_password_file(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret-pw\n")
    with LokiReceiver() as receiver:
        push(receiver, batch("x"), basic_auth=BasicAuthConfig("shipper", str(password)))
        header = receiver.headers_seen[0]["Authorization"]
    assert header == "Basic " + base64.b64encode(b"shipper:s3cret-pw").decode()


def test_bearer_token_file_is_reread_when_it_rotates(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("token-one")

    async def run(receiver: LokiReceiver) -> None:
        pusher = LokiPusher(LokiConfig(url=receiver.url, bearer_token_file=str(token)),
                            Metrics())
        await pusher.push(*_args(batch("a")))
        await pusher.push(*_args(batch("b")))
        # Kubernetes swaps a symlink to a new file: same size, maybe same mtime second.
        fresh = tmp_path / "token.new"
        fresh.write_text("token-two")
        os.replace(fresh, token)
        await pusher.push(*_args(batch("c")))
        await pusher.aclose()

    with LokiReceiver() as receiver:
        asyncio.run(run(receiver))
        seen = [h["Authorization"] for h in receiver.headers_seen]
    assert seen == ["Bearer token-one", "Bearer token-one", "Bearer token-two"]


def test_an_unusable_token_file_is_retried_not_dropped(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    token = tmp_path / "token"
    fixes = {1: lambda: token.write_text("tok-Xv3kP\r\nInjected: 1"),
             2: lambda: token.write_text("late-token")}
    with LokiReceiver() as receiver, caplog.at_level(logging.DEBUG, "shipper.loki.pusher"):
        sleeps = Sleeps(lambda n: fixes[n]())
        result = push(receiver, batch("x"), sleep=sleeps, bearer_token_file=str(token))
        assert receiver.requests == 1
        assert receiver.headers_seen[0]["Authorization"] == "Bearer late-token"
    assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 3)
    errors = [r.error for r in caplog.records if hasattr(r, "error")]
    assert "No such file or directory" in errors[0]
    assert "characters not allowed in a header" in errors[1]
    assert "tok-Xv3kP" not in caplog.text + str(errors)


def test_secrets_never_reach_logs_errors_or_metrics(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    secrets = ["pw-Zq8yN", "tok-Xv3kP"]
    (tmp_path / "pw").write_text(secrets[0])
    (tmp_path / "tok").write_text(secrets[1])
    secrets.append(base64.b64encode(f"user:{secrets[0]}".encode()).decode())
    metrics = Metrics()
    with LokiReceiver() as receiver, caplog.at_level(logging.DEBUG):
        for auth, sent in (({"basic_auth": BasicAuthConfig("user", str(tmp_path / "pw"))},
                            (secrets[0], secrets[2])),
                           ({"bearer_token_file": str(tmp_path / "tok")}, (secrets[1],))):
            echo = f"you sent {' and '.join(sent)}"  # a Loki (or a proxy) echoing them
            receiver.fail(503, body=echo)
            sleeps = Sleeps(lambda n: receiver.reset() if n == 1 else receiver.accept())
            push(receiver, batch("x"), sleep=sleeps, metrics=metrics, **auth)
            receiver.fail(401, body=echo)
            push(receiver, batch("y"), metrics=metrics, **auth)
        seen = " ".join(h.get("Authorization", "") for h in receiver.headers_seen)
    assert all(secret in seen for secret in secrets[1:])  # they were sent...
    text = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    exposition = generate_latest(metrics.registry).decode()
    for secret in secrets:  # ...and are nowhere else
        assert secret not in text
        assert secret not in exposition
    assert "Authorization" not in text
    assert "you sent <redacted>" in text  # Loki's answer is still logged, masked


def test_dry_run_prints_one_json_object_per_entry() -> None:
    out = io.StringIO()
    streams = {API.labels: [(T0 + 2, "later ✓".encode(), API), (T0 + 1, b"first", API)]}
    pusher = StdoutPusher(out)
    result = asyncio.run(pusher.push(streams, 2, 12))
    asyncio.run(pusher.aclose())
    assert result.outcome is Outcome.DELIVERED and pusher.failing_since is None
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"labels": {"app": "api", "namespace": "shop"},
         "structured_metadata": {"pod": "api-1", "stream": "stdout"},
         "timestamp_ns": T0 + 1, "line": "first"},
        {"labels": {"app": "api", "namespace": "shop"},
         "structured_metadata": {"pod": "api-1", "stream": "stdout"},
         "timestamp_ns": T0 + 2, "line": "later ✓"},
    ]
