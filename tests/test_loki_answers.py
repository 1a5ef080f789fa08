"""What Loki's answers mean: pure functions, no network (the pusher's tests use the receiver)."""

from __future__ import annotations

import pytest

from shipper.loki.answers import (
    Kind,
    classify,
    misconfiguration,
    rejected_count,
    rejection_reason,
    retry_after_seconds,
    shown,
)


@pytest.mark.parametrize(("statuses", "kind"), [
    ((200, 204, 299), Kind.DELIVERED),
    ((400,), Kind.REJECTED),
    ((413,), Kind.TOO_LARGE),
    ((429, 500, 502, 503, 504, 599), Kind.RETRY),
    ((307, 308), Kind.REDIRECT),
    ((300, 301, 302, 303, 304, 401, 403, 404, 405, 407, 408, 409, 411, 415, 418, 422, 431, 451),
     Kind.MISCONFIGURED),
])
def test_each_status_has_one_meaning(statuses: tuple[int, ...], kind: Kind) -> None:
    assert {classify(status) for status in statuses} == {kind}


def test_a_reason_never_echoes_credentials_or_control_characters() -> None:
    assert shown("https://user:pa@ss@loki.example:8443/p?q=1") == "https://loki.example:8443/p?q=1"
    assert shown("/a\x1b[31mb") == "/a?[31mb"
    assert len(shown("/" + "a" * 1000)) == 200
    assert misconfiguration(308, "http://u:secret@elsewhere/push", foreign=True).startswith(
        "push answered HTTP 308 Permanent Redirect: loki.url redirects to http://elsewhere/push, "
        "another host")


def test_retry_after_values() -> None:
    now = 1_764_230_400.0  # Thu, 27 Nov 2025 08:00:00 GMT
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("Thu, 27 Nov 2025 08:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Thu, 27 Nov 2025 07:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
    assert retry_after_seconds("²", now) is None  # a digit to str.isdigit(), not to float()
    assert retry_after_seconds("Thu, 27 Nov 99999 08:00:30 GMT", now) is None


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
