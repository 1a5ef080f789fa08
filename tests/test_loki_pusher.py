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
from shipper.loki.pusher import LokiPusher, Outcome, PushResult
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
            push(receiver, batch("y"), sleep=Sleeps(lambda n: receiver.accept()),
                 metrics=metrics, **auth)
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


# -- 413: split down to single entries -----------------------------------------------------------

def test_a_413_splits_the_batch_and_drops_only_single_entries_still_too_large(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    big = [os.urandom(2500).hex() for _ in range(2)]  # 5000 chars that snappy cannot shrink
    api = [f"api-{i}" for i in range(6)]
    api[2], api[5] = big
    streams = {**batch(*api), **batch(*(f"web-{i}" for i in range(5)), stream=WEB)}
    with LokiReceiver() as receiver, caplog.at_level(logging.INFO, "shipper.loki.pusher"):
        receiver.limit_body(2000)
        result = push(receiver, streams, metrics=metrics)
        stored = receiver.entries
        requests = receiver.requests
    assert [e.line for e in stored if e.labels["app"] == "api"] == [
        line for line in api if line not in big]  # in order, each stream's order kept
    assert [e.line for e in stored if e.labels["app"] == "web"] == [f"web-{i}" for i in range(5)]
    assert result == PushResult(Outcome.REJECTED, 413, requests, 2, "too_large")
    assert requests <= 2 * 11 - 1  # a binary split: never more requests than tree nodes
    assert sample(metrics, "shipper_dropped_entries_total", reason="too_large") == 2
    assert sample(metrics, "shipper_dropped_bytes_total", reason="too_large") == 10_000
    assert sample(metrics, "shipper_sent_entries_total") == 9
    assert sample(metrics, "shipper_sent_bytes_total") == sum(len(e.line) for e in stored)
    drops = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.line_bytes for r in drops] == [5000, 5000]  # type: ignore[attr-defined]
    assert all("over the limit" in r.loki_message for r in drops)  # type: ignore[attr-defined]


def test_a_413_whose_halves_fit_delivers_everything() -> None:
    lines = [os.urandom(300).hex() for _ in range(8)]  # 600 chars each: 4 per half fit
    with LokiReceiver() as receiver:
        receiver.limit_body(3000)
        result = push(receiver, batch(*lines))
        assert [e.line for e in receiver.entries] == lines
        assert receiver.requests == 3
    assert result == PushResult(Outcome.DELIVERED, 413, 3, 0, "")


# -- every other 4xx and 3xx: a misconfiguration, retried, never dropped -----------------------

@pytest.mark.parametrize(("status", "location", "says"), [
    (401, None, "401 Unauthorized: check the credentials (loki.bearer_token_file"),
    (403, None, "403 Forbidden: check the credentials"),
    (404, None, "404 Not Found: check loki.url: Loki's push path is /loki/api/v1/push"),
    (405, None, "405 Method Not Allowed: check loki.url"),
    (407, None, "proxy's credentials"),
    (301, "http://loki.example:3100/loki/api/v1/push",
     "loki.url redirects to http://loki.example:3100/loki/api/v1/push; set loki.url to it"),
    (302, "/other/loki/api/v1/push", "redirects to http://127.0.0.1:"),
    (303, "https://user:pw@loki.example/push", "redirects to https://loki.example/push;"),
    (418, None, "418 I'm a Teapot: check loki.url, the credentials and any proxy"),
    (499, None, "HTTP 499: check loki.url"),
    (300, None, "300 Multiple Choices"),
])
def test_a_misconfiguration_is_retried_never_dropped_and_says_what_to_check(
        status: int, location: str | None, says: str) -> None:
    metrics = Metrics()
    reasons: list[str | None] = []

    async def run(receiver: LokiReceiver) -> PushResult:
        pusher: LokiPusher

        async def sleep(delay: float) -> None:
            reasons.append(pusher.misconfigured)
            if len(reasons) == 3:
                receiver.accept()

        pusher = LokiPusher(LokiConfig(url=receiver.url), metrics, sleep=sleep, rng=lambda: 1.0)
        try:
            return await pusher.push(*_args(batch("x", "y")))
        finally:
            assert pusher.misconfigured is None  # settled: the verdict is cleared
            await pusher.aclose()

    with LokiReceiver() as receiver:
        receiver.fail(status, body="no", location=location)
        result = asyncio.run(run(receiver))
        assert [e.line for e in receiver.entries] == ["x", "y"]
    assert result == PushResult(Outcome.DELIVERED, 204, 4, 0)
    assert len(set(reasons)) == 1 and says in str(reasons[0]), reasons[0]
    assert "pw" not in str(reasons[0])
    assert sample(metrics, "shipper_batch_retries_total") == 3
    assert "shipper_dropped_entries_total{" not in generate_latest(metrics.registry).decode()


def test_a_misconfiguration_is_logged_once_per_streak_and_kept_through_transport_errors(
        caplog: pytest.LogCaptureFixture) -> None:
    reasons: list[str | None] = []

    async def run(receiver: LokiReceiver) -> None:
        pusher: LokiPusher
        script: dict[int, Callable[[], object]] = {
            3: receiver.refuse,
            4: lambda: (receiver.fail(403), receiver.start()),
            6: lambda: receiver.fail_next(1, 503),
            8: receiver.accept}

        async def sleep(delay: float) -> None:
            reasons.append(pusher.misconfigured)
            script.get(len(reasons), lambda: None)()

        pusher = LokiPusher(LokiConfig(url=receiver.url), Metrics(), sleep=sleep)
        await pusher.push(*_args(batch("x")))
        await pusher.aclose()

    with LokiReceiver() as receiver, caplog.at_level(logging.DEBUG, "shipper.loki.pusher"):
        receiver.fail(401)
        asyncio.run(run(receiver))
    # 401 x3, refused (the verdict is kept), 403 x2, a 503 clears it, 403 again, accepted
    assert [r and r.split("HTTP ")[1][:3] for r in reasons] == [
        "401", "401", "401", "401", "403", "403", None, "403"]
    loud = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert loud == [
        ("WARNING", "Loki refuses the configuration: retrying, nothing is dropped"),  # 401
        ("WARNING", "Loki refuses the configuration: retrying, nothing is dropped"),  # 403
        ("WARNING", "Loki refuses the configuration: retrying, nothing is dropped"),  # 403 again
        ("INFO", "push recovered"),
    ]


# -- 307/308: followed on the same host, never elsewhere -----------------------------------------

V2 = "/v2/loki/api/v1/push"


@pytest.mark.parametrize(("status", "location", "served"), [
    (308, V2, V2),  # relative to the host
    (307, "v2", "/loki/api/v1/v2"),  # relative to the path
    (307, "http://127.0.0.1:{port}" + V2, V2),  # absolute: same scheme, host and port
])
def test_a_307_or_308_on_the_same_host_is_followed_with_the_credentials(
        tmp_path: Path, status: int, location: str, served: str,
        caplog: pytest.LogCaptureFixture) -> None:
    token = tmp_path / "token"
    token.write_text("tok-1")
    with LokiReceiver() as receiver, caplog.at_level(logging.INFO, "shipper.loki.pusher"):
        receiver.paths.add(served)
        receiver.redirect("/loki/api/v1/push", status, location.format(port=receiver.port))
        first = push(receiver, batch("a"), bearer_token_file=str(token))
        second = push(receiver, batch("b"), bearer_token_file=str(token))
        assert [e.line for e in receiver.entries] == ["a", "b"]
        assert receiver.paths_seen == ["/loki/api/v1/push", served] * 2
        assert [h["Authorization"] for h in receiver.headers_seen] == ["Bearer tok-1"] * 4
    assert first == second == PushResult(Outcome.DELIVERED, 204, 1, 0)
    assert [r.getMessage() for r in caplog.records].count(
        "loki.url redirects: following to the same host; set loki.url to the new address to "
        "save a request") == 2  # once per pusher


def test_redirects_are_followed_up_to_five_hops() -> None:
    with LokiReceiver() as receiver:
        hops = [f"/hop{i}/push" for i in range(6)]
        for here, there in zip(["/loki/api/v1/push", *hops[:4]], hops[:5], strict=True):
            receiver.redirect(here, 307, there)
        receiver.paths.add(hops[4])  # five hops to a path that takes pushes
        assert push(receiver, batch("a")).outcome is Outcome.DELIVERED
        assert receiver.paths_seen == ["/loki/api/v1/push", *hops[:5]]

        receiver.redirect(hops[4], 307, hops[5])  # six hops: a misconfiguration
        reasons: list[str | None] = []

        async def run() -> None:
            pusher: LokiPusher

            async def sleep(delay: float) -> None:
                reasons.append(pusher.misconfigured)
                receiver.accept()
                receiver.paths.add(hops[5])

            pusher = LokiPusher(LokiConfig(url=receiver.url), Metrics(), sleep=sleep)
            await pusher.push(*_args(batch("b")))
            await pusher.aclose()

        asyncio.run(run())
        assert [e.line for e in receiver.entries] == ["a", "b"]
    assert "redirects more than 5 times, last to http://127.0.0.1:" in str(reasons[0])
    assert str(reasons[0]).endswith("/hop5/push; set loki.url to the final address")


@pytest.mark.parametrize(("location", "says"), [
    ("http://localhost:{port}" + V2, "redirects to http://localhost:{port}/v2/loki/api/v1/push, "
     "another host: not followed, as credentials are not sent to another host"),
    ("http://127.0.0.1:1" + V2, "redirects to http://127.0.0.1:1/v2"),  # another port
    ("https://127.0.0.1:{port}" + V2, "redirects to https://127.0.0.1:"),  # another scheme
    (None, "HTTP 307 Temporary Redirect without a Location: check loki.url"),
])
def test_a_redirect_elsewhere_is_not_followed_with_the_credentials(
        tmp_path: Path, location: str | None, says: str) -> None:
    (tmp_path / "pw").write_text("pw-Zq8yN")
    reasons: list[str | None] = []
    with LokiReceiver() as receiver:
        receiver.paths.add(V2)
        if location is None:
            receiver.fail(307)
        else:
            receiver.redirect("/loki/api/v1/push", 307, location.format(port=receiver.port))

        async def run() -> PushResult:
            pusher: LokiPusher

            async def sleep(delay: float) -> None:
                reasons.append(pusher.misconfigured)
                if len(reasons) == 2:
                    receiver.accept()

            auth = BasicAuthConfig("user", str(tmp_path / "pw"))
            pusher = LokiPusher(LokiConfig(url=receiver.url, basic_auth=auth), Metrics(),
                                sleep=sleep)
            try:
                return await pusher.push(*_args(batch("x")))
            finally:
                await pusher.aclose()

        result = asyncio.run(run())
        assert receiver.paths_seen == ["/loki/api/v1/push"] * 3  # never /v2, on any host
        assert [e.line for e in receiver.entries] == ["x"]
    assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 3)
    assert reasons[0] == reasons[1]
    assert says.format(port=receiver.port) in str(reasons[0]), reasons[0]
