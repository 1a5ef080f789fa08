"""A Loki-protocol receiver on 127.0.0.1 for end-to-end and fault-injection tests.

It decodes pushes with the protobuf runtime from push.proto (compiled here with grpc_tools,
never with the agent's encoder), after snappy block decompression, and parses each stream's
label string the way Loki does. Faults can be switched while it runs: refuse connections,
answer an error status, stall, reset the connection, reject some lines like Loki's partial
400, answer exact bytes that are not (quite) HTTP, refuse bodies over a size with 413 as a
gateway does, or redirect. It runs in threads, so synchronous tests
and agent subprocesses can both use it.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import struct
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cramjam
import grpc_tools  # type: ignore[import-untyped]
from google.protobuf import (  # type: ignore[import-untyped]
    descriptor_pb2,
    descriptor_pool,
    message_factory,
)
from grpc_tools import protoc

PUSH_PATH = "/loki/api/v1/push"


def _push_request_class() -> Any:
    """Compile push.proto into a private descriptor pool: importing this module under two names
    (tests.support.x and support.x) must not register Loki's messages twice globally."""
    proto = Path(__file__).with_name("push.proto")
    includes = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "push.desc"
        code = protoc.main(["protoc", f"-I{proto.parent}", f"-I{includes}", "--include_imports",
                            f"--descriptor_set_out={out}", str(proto)])
        if code != 0:
            raise RuntimeError(f"protoc failed on {proto} with exit code {code}")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


PushRequest = _push_request_class()


# -- label strings, as Loki's syntax.ParseLabels reads them -------------------------------------

_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\.)*)"\s*(,|\Z)')
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", '"': '"', "'": "'"}
_ESCAPE = re.compile(r"\\(?:([abfnrtv\\\"'])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|"
                     r"U([0-9a-fA-F]{8})|([0-7]{3})|(.))", re.S)


def _unquote(value: str) -> str:
    """Go interpreted-string escapes; an unknown escape is an error, as in strconv.Unquote."""
    def one(m: re.Match[str]) -> str:
        simple, hex2, hex4, hex8, octal, bad = m.groups()
        if bad is not None:
            raise ValueError(f"invalid escape \\{bad}")
        if simple:
            return _ESCAPES[simple]
        return chr(int(hex2 or hex4 or hex8, 16) if not octal else int(octal, 8))
    return _ESCAPE.sub(one, value)


def parse_labels(text: str) -> dict[str, str]:
    """`{a="b", c="d"}` to a dict; ValueError for anything Loki would refuse."""
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError("labels must be enclosed in braces")
    body, labels, pos = text[1:-1], {}, 0
    while pos < len(body):
        m = _PAIR.match(body, pos)
        if not m:
            raise ValueError(f"parse error at {pos + 1}: {body[pos:pos + 20]!r}")
        name, value = m.group(1), _unquote(m.group(2))
        if name in labels:
            raise ValueError(f"duplicate label name {name!r}")
        labels[name] = value
        pos = m.end()
        if m.group(3) == "," and not body[pos:].strip():
            raise ValueError("trailing comma")
    if not labels:
        raise ValueError("at least one label pair is required per stream")
    return labels


# -- what was received ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ReceivedEntry:
    labels: dict[str, str]
    timestamp_ns: int
    line: str
    metadata: dict[str, str]
    tenant: str | None


class Headers(dict[str, str]):
    """Request headers with case-insensitive lookup, as HTTP means them."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


@dataclass(frozen=True)
class _Mode:
    kind: str = "accept"  # accept | fail | stall | reset | reject | raw
    status: int = 204
    retry_after: str | None = None
    body: str = ""
    location: str | None = None
    seconds: float = 0.0
    drop: bool = False
    predicate: Callable[[str], bool] | None = None
    reason: str = ""
    raw: bytes = b""


class LokiReceiver:
    """`with LokiReceiver() as loki:` ... push to `loki.url` ... `loki.entries`."""

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        """`tls`: serve https with this server context; `host`: the name in `url` (it listens
        on 127.0.0.1 whatever the name)."""
        self._tls = tls
        self._host = host
        self._lock = threading.Condition()
        self._entries: list[ReceivedEntry] = []
        self._mode = _Mode()
        self._fail_next: tuple[int, int] = (0, 0)  # (requests left, status)
        self._max_body = 0  # request bodies over this get 413 (0: no limit)
        self._redirects: dict[str, tuple[int, str]] = {}  # path: (status, Location)
        self.paths = {PUSH_PATH}  # where pushes are taken; any other path is a 404, as in Loki
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.requests = 0
        self.headers_seen: list[Headers] = []
        self.paths_seen: list[str] = []

    @property
    def url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self._host}:{self.port}{PUSH_PATH}"

    @property
    def entries(self) -> list[ReceivedEntry]:
        with self._lock:
            return list(self._entries)

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LokiReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._stopping.clear()
        self._listen()

    def stop(self) -> None:
        self._stopping.set()  # ends stalls early
        self._close_listener()
        self._drop_connections()

    def _listen(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler_class())
        server.daemon_threads = True
        if self._tls is not None:  # the handshake happens in accept(), on the serving thread
            server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"loki-receiver-{self.port}", daemon=True)
        self._thread.start()

    def _close_listener(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join()
            self._server = None

    def _drop_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # -- observation -----------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[list[ReceivedEntry]], bool], timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: predicate(list(self._entries)), timeout)

    # -- fault injection -------------------------------------------------------------------------

    def _set(self, mode: _Mode) -> None:
        with self._lock:
            self._mode = mode

    def accept(self) -> None:
        """Answer 204 and store everything; listen again after refuse(). Ends redirects and
        body limits."""
        with self._lock:
            self._redirects.clear()
            self._max_body = 0
        self._set(_Mode())
        if self._server is None:
            self._listen()

    def refuse(self) -> None:
        """Like a dead Loki: the port is closed (connection refused), open connections drop."""
        self._close_listener()
        self._drop_connections()

    def fail(self, status: int, retry_after: str | None = None, body: str = "",
             location: str | None = None) -> None:
        self._set(_Mode("fail", status, retry_after, body, location))

    def stall(self, seconds: float, *, drop: bool = False) -> None:
        """Hold each request this long, then store it and answer 204 (drop: close, store
        nothing). A client that gave up meanwhile still gets its entries stored, as with Loki."""
        self._set(_Mode("stall", seconds=seconds, drop=drop))

    def reset(self) -> None:
        """Read each request, then reset the connection (RST) without answering."""
        self._set(_Mode("reset"))

    def reject_lines(self, predicate: Callable[[str], bool],
                     message_reason: str = "line too long") -> None:
        """Loki's partial 400: store the other entries, reject these, say how many per stream."""
        self._set(_Mode("reject", predicate=predicate, reason=message_reason))

    def limit_body(self, max_bytes: int) -> None:
        """Answer 413 to a request whose (compressed) body is over max_bytes, as a gateway or
        Loki's grpc_server_max_recv_msg_size does."""
        with self._lock:
            self._max_body = max_bytes

    def redirect(self, path: str, status: int, location: str) -> None:
        """Answer requests at `path` with `status` and this Location (until accept())."""
        with self._lock:
            self._redirects[path] = (status, location)

    def answer_raw(self, raw: bytes) -> None:
        """Answer each request with exactly these bytes, then close the connection."""
        self._set(_Mode("raw", raw=raw))

    def fail_next(self, n: int, status: int) -> None:
        with self._lock:
            self._fail_next = (n, status)

    # -- request handling ------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Loki serves it

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver._connections.add(self.connection)

            def finish(self) -> None:
                with receiver._lock:
                    receiver._connections.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def handle(self) -> None:
                with contextlib.suppress(OSError):  # the client left, or a fault closed it
                    super().handle()

            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length", 0)))
        with self._lock:
            self.requests += 1
            self.headers_seen.append(Headers(h.headers.items()))
            self.paths_seen.append(h.path)
            mode = self._mode
            left, status = self._fail_next
            if left:
                self._fail_next = (left - 1, status)
                mode = _Mode("fail", status)
            redirect = self._redirects.get(h.path)
            too_large = 0 < self._max_body < len(body)
        if redirect is not None:
            return self._reply(h, redirect[0], "", location=redirect[1])
        if h.path not in self.paths:
            return self._reply(h, 404, "404 page not found")
        if mode.kind == "fail":
            return self._reply(h, mode.status, mode.body, mode.retry_after, mode.location)
        if too_large:
            return self._reply(h, 413, f"request body of {len(body)} bytes is over the limit "
                               f"of {self._max_body} bytes")
        if mode.kind == "raw":
            h.close_connection = True
            h.wfile.write(mode.raw)
            return None
        if mode.kind == "reset":
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            h.close_connection = True
            return None
        if mode.kind == "stall":
            self._stopping.wait(mode.seconds)
            if mode.drop:
                h.close_connection = True
                return None
        tenant = h.headers.get("X-Scope-OrgID")
        try:
            streams, errors = self._decode(body, tenant)
        except ValueError as exc:
            return self._reply(h, 400, str(exc))
        stored: list[ReceivedEntry] = []
        for labels, entries in streams:
            rejected = [e for e in entries if mode.predicate and mode.predicate(e.line)]
            stored += [e for e in entries if not (mode.predicate and mode.predicate(e.line))]
            if rejected:
                errors.append(self._rejection(labels, rejected, len(entries), mode.reason,
                                              tenant or "fake"))
        with self._lock:
            self._entries += stored
            self._lock.notify_all()
        if errors:  # like Loki: the valid entries are stored, the answer is still 400
            return self._reply(h, 400, "\n".join(errors))
        return self._reply(h, 204, "")

    @staticmethod
    def _rejection(labels: str, rejected: list[ReceivedEntry], total: int, reason: str,
                   tenant: str) -> str:
        lines = [f"entry with timestamp {e.timestamp_ns} ignored, reason: '{reason}'," for e in
                 rejected]
        return "\n".join([*lines, f"user '{tenant}', total ignored: {len(rejected)} out of "
                                  f"{total} for stream: {labels}"])

    @staticmethod
    def _decode(body: bytes, tenant: str | None
                ) -> tuple[list[tuple[str, list[ReceivedEntry]]], list[str]]:
        """The streams with valid labels, and an error message for each other stream."""
        try:
            request = PushRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
        except Exception as exc:  # cramjam and protobuf raise their own types
            raise ValueError(f"failed to decode push request: {exc}") from None
        streams, errors = [], []
        for stream in request.streams:
            try:
                labels = parse_labels(stream.labels)
            except ValueError as exc:
                errors.append(f"Error parsing labels '{stream.labels}' with error: {exc}")
                continue
            streams.append((stream.labels, [
                ReceivedEntry(labels, e.timestamp.seconds * 1_000_000_000 + e.timestamp.nanos,
                              e.line, {p.name: p.value for p in e.structuredMetadata}, tenant)
                for e in stream.entries]))
        return streams, errors

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, body: str,
               retry_after: str | None = None, location: str | None = None) -> None:
        data = body.encode()
        h.send_response(status)
        if retry_after is not None:
            h.send_header("Retry-After", retry_after)
        if location is not None:
            h.send_header("Location", location)
        h.send_header("Content-Type", "text/plain; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
