"""Serve /metrics, /healthz and /ready from the event loop (no metrics thread)."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

from shipper.config import ConfigError
from shipper.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)


class HealthServer:
    """A deliberately small HTTP/1.1 server: GET only, one request per connection. `healthy`
    and `ready` say whether /healthz and /ready answer 200, and why not."""

    def __init__(self, listen: str, metrics: Metrics, ready: Callable[[], tuple[bool, str]],
                 healthy: Callable[[], tuple[bool, str]]) -> None:
        self._listen = listen
        self._metrics = metrics
        self._ready = ready
        self._healthy = healthy
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        if not self._listen:
            return
        host, _, port = self._listen.rpartition(":")
        try:
            self._server = await asyncio.start_server(self._handle, host or None, int(port))
        except OSError as exc:  # the address comes from the config: say which key, and why
            raise ConfigError("server.listen",
                              f"cannot listen on {self._listen}: {_listen_problem(exc)}") from None
        log.info("serving /metrics, /healthz, /ready", extra={"listen": self._listen})

    @property
    def port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, target = head.split(b" ", 2)[:2]
            verb, path = method.decode(), target.decode().split("?")[0]
            try:
                status, ctype, body = self._route(verb, path)
            except Exception as exc:
                # Each request runs on its own: a failing one must not take the probes' server
                # down, nor fail silently.
                log.error("request failed; answering 500", exc_info=exc,
                          extra={"target": path[:200]})
                self._metrics.task_failures.labels("server").inc()
                status, ctype, body = "500 Internal Server Error", "text/plain", b"failed\n"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + (body if method != b"HEAD" else b""))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError, ValueError):
            pass  # a broken or slow client: nothing to answer
        finally:
            writer.close()

    def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE, self._metrics.exposition()
        if path == "/healthz":
            ok, why = self._healthy()
            status = "200 OK" if ok else "500 Internal Server Error"
            return status, "text/plain", (why + "\n").encode()
        if path == "/ready":
            ok, why = self._ready()
            status = "200 OK" if ok else "503 Service Unavailable"
            return status, "text/plain", (why + "\n").encode()
        return "404 Not Found", "text/plain", b"try /metrics, /healthz or /ready\n"


def _listen_problem(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    if exc.errno == errno.EADDRINUSE:
        return "the port is already in use"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "the host is not an address of this machine"
    if exc.errno == errno.EACCES:
        return ("permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE: "
                "choose a higher port)")
    return exc.strerror or str(exc)
