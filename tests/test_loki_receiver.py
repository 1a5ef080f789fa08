"""The test Loki receiver itself: faults do what they say, labels parse the way Loki's do."""

from __future__ import annotations

import http.client
import socket

import cramjam
import pytest

from tests.support.loki_receiver import LokiReceiver, PushRequest, parse_labels


def body(*streams: tuple[str, list[str]]) -> bytes:
    request = PushRequest()
    for labels, lines in streams:
        stream = request.streams.add(labels=labels)
        for i, line in enumerate(lines):
            entry = stream.entries.add(line=line)
            entry.timestamp.seconds, entry.timestamp.nanos = 1_764_230_400, i
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def post(receiver: LokiReceiver, data: bytes, **headers: str) -> tuple[int, str, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
    try:
        conn.request("POST", "/loki/api/v1/push", data,
                     {"Content-Type": "application/x-protobuf", **headers})
        response = conn.getresponse()
        return response.status, response.read().decode(), dict(response.getheaders())
    finally:
        conn.close()


def test_stores_entries_with_labels_tenant_and_headers() -> None:
    with LokiReceiver() as receiver:
        assert post(receiver, body(('{app="a", ns="b"}', ["x", "y"])), **{"X-Scope-OrgID": "t"}
                    )[0] == 204
        assert receiver.wait_for(lambda e: len(e) == 2, timeout=1)
        assert not receiver.wait_for(lambda e: len(e) == 3, timeout=0.05)
        [first, second] = receiver.entries
        assert (first.labels, first.line, first.tenant) == ({"app": "a", "ns": "b"}, "x", "t")
        assert second.timestamp_ns == 1_764_230_400_000_000_001
        headers = receiver.headers_seen[0]
        assert headers["x-scope-orgid"] == headers["X-Scope-OrgID"] == "t"


def test_a_malformed_stream_is_refused_and_the_others_stored_like_loki() -> None:
    with LokiReceiver() as receiver:
        status, text, _ = post(receiver, body(('{app="a"}', ["ok"]), ('{app="a",}', ["lost"])))
        assert status == 400 and "Error parsing labels" in text
        assert [e.line for e in receiver.entries] == ["ok"]


def test_fail_with_retry_after_then_fail_next_then_accept() -> None:
    with LokiReceiver() as receiver:
        receiver.fail(429, retry_after="7", body="slow down")
        status, text, headers = post(receiver, body(('{a="b"}', ["x"])))
        assert (status, text, headers["Retry-After"]) == (429, "slow down", "7")
        receiver.accept()
        receiver.fail_next(2, 503)
        assert [post(receiver, body(('{a="b"}', ["x"])))[0] for _ in range(3)] == [503, 503, 204]
        assert receiver.requests == 4 and len(receiver.entries) == 1


def test_refuse_closes_the_port_and_accept_reopens_the_same_one() -> None:
    with LokiReceiver() as receiver:
        port = receiver.port
        receiver.refuse()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        receiver.accept()
        assert receiver.port == port
        assert post(receiver, body(('{a="b"}', ["x"])))[0] == 204


def test_reset_and_dropping_stall_answer_nothing() -> None:
    with LokiReceiver() as receiver:
        receiver.reset()
        with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
            post(receiver, body(('{a="b"}', ["x"])))
        receiver.stall(0.05, drop=True)
        with pytest.raises(http.client.RemoteDisconnected):
            post(receiver, body(('{a="b"}', ["x"])))
        assert receiver.entries == []


@pytest.mark.parametrize(("text", "labels"), [
    ('{a="b"}', {"a": "b"}),
    ('{ a = "b" , c="d" }', {"a": "b", "c": "d"}),
    (r'{a="quote \" backslash \\ newline \n tab \t"}',
     {"a": 'quote " backslash \\ newline \n tab \t'}),
    (r'{a="\u00e9\x41\101"}', {"a": "éAA"}),
    ('{a="日本"}', {"a": "日本"}),
])
def test_label_strings(text: str, labels: dict[str, str]) -> None:
    assert parse_labels(text) == labels


@pytest.mark.parametrize("text", ['{}', 'a="b"', '{a="b",}', '{a="b" c="d"}', '{a=b}',
                                  r'{a="\q"}', '{a="b", a="c"}', '{1a="b"}', '{a="b}',
                                  '{a="line\nbreak"}', '{a!="b"}'])
def test_malformed_label_strings(text: str) -> None:
    with pytest.raises(ValueError):
        parse_labels(text)
