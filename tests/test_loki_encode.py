"""The encoder's output, decoded by the protobuf runtime from Loki's push.proto."""

from __future__ import annotations

from typing import Any

import cramjam
from hypothesis import given, settings
from hypothesis import strategies as st

from shipper.loki.encode import Compressor, encode_push_request
from shipper.model import Entry, Stream
from tests.support.loki_receiver import PushRequest

NS = 1_000_000_000
T0 = 1_764_230_400 * NS  # 2025-11-27T08:00:00Z


def stream(labels: str = '{app="api", namespace="shop"}', **metadata: str) -> Stream:
    return Stream(labels, (("app", "api"), ("namespace", "shop")), tuple(metadata.items()))


def decode(body: bytes) -> Any:
    request = PushRequest.FromString(body)
    # Canonical encoding: the runtime writes back exactly the bytes it read.
    assert request.SerializeToString(deterministic=True) == body
    return request


def flat(request: Any) -> list[tuple[str, int, str, dict[str, str]]]:
    return [(s.labels, e.timestamp.seconds * NS + e.timestamp.nanos, e.line,
             {p.name: p.value for p in e.structuredMetadata})
            for s in request.streams for e in s.entries]


def test_fields_round_trip_through_the_protobuf_runtime() -> None:
    api = stream(pod="api-1", node="node-1", stream="stdout")
    err = stream(pod="api-1", node="node-1", stream="stderr")
    entries: list[Entry] = [
        (T0 + 123_456_789, b"hello", api),
        (T0 + 123_456_790, "café ✓ 日本語 🚀".encode(), err),
        (T0 + 200_000_000, b"", api),  # an empty line is still an entry
        (T0 + NS, b'{"json": "line\\n"}\tand\x00nul', api),
    ]
    request = decode(encode_push_request({api.labels: entries}))
    assert len(request.streams) == 1
    assert request.streams[0].labels == '{app="api", namespace="shop"}'
    assert flat(request) == [
        (api.labels, T0 + 123_456_789, "hello", {"pod": "api-1", "node": "node-1",
                                                  "stream": "stdout"}),
        (api.labels, T0 + 123_456_790, "café ✓ 日本語 🚀", {"pod": "api-1", "node": "node-1",
                                                              "stream": "stderr"}),
        (api.labels, T0 + 200_000_000, "", {"pod": "api-1", "node": "node-1",
                                             "stream": "stdout"}),
        (api.labels, T0 + NS, '{"json": "line\\n"}\tand\x00nul',
         {"pod": "api-1", "node": "node-1", "stream": "stdout"}),
    ]
    # Metadata order is kept: Loki stores the pairs as given.
    names = [p.name for p in request.streams[0].entries[0].structuredMetadata]
    assert names == ["pod", "node", "stream"]


def test_entries_are_sorted_by_timestamp_stably() -> None:
    s = stream()
    entries: list[Entry] = [(T0 + 3, b"c", s), (T0 + 1, b"a", s), (T0 + 3, b"d", s),
                            (T0 - NS, b"previous second", s), (T0 + 2, b"b", s)]
    request = decode(encode_push_request({s.labels: entries}))
    assert [e[2] for e in flat(request)] == ["previous second", "a", "b", "c", "d"]


def test_many_streams_each_with_its_own_entries() -> None:
    batch = {}
    for i in range(300):
        s = Stream(f'{{app="app-{i}", namespace="ns"}}', (("app", f"app-{i}"),), ())
        batch[s.labels] = [(T0 + i * 1000 + k, f"line {i}/{k}".encode(), s) for k in range(i % 4)]
    request = decode(encode_push_request(batch))
    assert [s.labels for s in request.streams] == list(batch)
    for i, decoded in enumerate(request.streams):
        assert [e.line for e in decoded.entries] == [f"line {i}/{k}" for k in range(i % 4)]
        assert all(not e.structuredMetadata for e in decoded.entries)


def test_timestamps_at_every_varint_size_and_edge() -> None:
    s = stream(pod="p")
    stamps = [0, 1, 127, 128, 16_383, 16_384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, NS - 1, NS,
              T0, T0 + 1, T0 + 16_384, T0 + NS - 1, 2**63 - 1, -1, -NS - 5]
    entries: list[Entry] = [(ts, b"x", s) for ts in stamps]
    request = decode(encode_push_request({s.labels: entries}))
    assert [ts for _, ts, _, _ in flat(request)] == sorted(stamps)
    for e in request.streams[0].entries:
        assert 0 <= e.timestamp.nanos < NS


def test_long_lines_and_large_metadata_beyond_the_lookup_tables() -> None:
    big = stream(pod="p" * 20_000, node="n")
    small = stream(pod="p")
    long_line = ("é" * 100_000).encode()
    entries: list[Entry] = [(T0 + 1, long_line, small), (T0 + 2, b"short", big),
                            (T0 + 3, b"y" * 16_383, small), (T0 + 4, b"z" * 16_384, small)]
    request = decode(encode_push_request({small.labels: entries}))
    lines = [e.line for e in request.streams[0].entries]
    assert lines == [long_line.decode(), "short", "y" * 16_383, "z" * 16_384]
    assert request.streams[0].entries[1].structuredMetadata[0].value == "p" * 20_000


def test_empty_request_and_empty_metadata_values() -> None:
    assert encode_push_request({}) == b""
    s = stream(pod="", node="n")
    request = decode(encode_push_request({s.labels: [(T0 + 5, b"x", s)]}))
    assert flat(request)[0][3] == {"pod": "", "node": "n"}


def test_compress_is_the_snappy_block_format() -> None:
    body = encode_push_request({stream().labels: [(T0 + i, b"line " * 20, stream())
                                                  for i in range(100)]})
    compressed = Compressor().compress(body)
    assert isinstance(compressed, bytes)
    assert not compressed.startswith(b"\xff\x06\x00\x00sNaPpY")  # the framed format's header
    assert bytes(cramjam.snappy.decompress_raw(compressed)) == body
    assert len(compressed) < len(body)


def test_compressor_reuses_its_buffer_without_leaking_the_last_body() -> None:
    compressor = Compressor()
    big, small = b"0123456789" * 10_000, b"x" * 100
    first = compressor.compress(big)
    assert bytes(cramjam.snappy.decompress_raw(compressor.compress(small))) == small
    assert bytes(cramjam.snappy.decompress_raw(first)) == big  # its own copy, not the buffer's
    assert bytes(cramjam.snappy.decompress_raw(compressor.compress(big))) == big


labels_text = st.text(min_size=0, max_size=30)
entries_strategy = st.lists(st.tuples(
    st.integers(min_value=-(2**62), max_value=2**63 - 1),
    st.text(max_size=300),
    st.integers(min_value=0, max_value=3),
), max_size=40)


@settings(max_examples=150, deadline=None)
@given(entries_strategy, st.lists(st.tuples(labels_text, labels_text), max_size=4))
def test_any_entries_round_trip(raw: list[tuple[int, str, int]],
                                metadata: list[tuple[str, str]]) -> None:
    streams = [Stream('{a="b"}', (("a", "b"),), tuple(metadata[:k])) for k in range(4)]
    entries: list[Entry] = [(ts, line.encode(), streams[k]) for ts, line, k in raw]
    request = decode(encode_push_request({'{a="b"}': entries}))
    expected = sorted(entries, key=lambda e: e[0])
    got = flat(request)
    assert [(ts, line) for _, ts, line, _ in got] == [(ts, line.decode()) for ts, line, _ in
                                                      expected]
    assert [md for *_, md in got] == [dict(s.metadata) for *_, s in expected]
