"""The push transport against scripted asyncio servers on 127.0.0.1, plain and TLS."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from shipper.config import TLSConfig
from shipper.loki.http import (
    MAX_BODY,
    MAX_HEAD,
    ConnectError,
    ConnectionLost,
    HttpClient,
    ProtocolError,
    RequestTimeout,
    build_ssl_context,
)
from tests.support.tls import make_cert

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    body = await reader.readexactly(int(headers["content-length"]))
    return lines[0].encode(), headers, body


class Server:
    """Serves each connection with `handler(reader, writer, n)` per request (n counts requests
    over all connections) until the handler returns False."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl = ssl_context
        self.connections = 0
        self.requests: list[tuple[bytes, dict[str, str], bytes]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                self.requests.append(await read_request(reader))
                if not await self.handler(reader, writer, len(self.requests)):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def answer(raw: bytes, *, keep: bool = True) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(raw)
        await writer.drain()
        return keep
    return handler


NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


def client(server: Server, timeout: float = 2.0, scheme: str = "http",
           context: ssl.SSLContext | None = None) -> HttpClient:
    return HttpClient(f"{scheme}://127.0.0.1:{server.port}/loki/api/v1/push?x=1",
                      timeout=timeout, ssl=context)


def test_posts_the_body_with_headers_and_reuses_the_connection() -> None:
    async def scenario() -> None:
        async with Server(answer(NO_CONTENT)) as server:
            http = client(server)
            for i in range(3):
                response = await http.post(b"body%d" % i, {"X-Scope-OrgID": "team-a"})
                assert response.status == 204 and response.body == b""
            await http.aclose()
        assert server.connections == 1
        line, headers, body = server.requests[2]
        assert line == b"POST /loki/api/v1/push?x=1 HTTP/1.1"
        assert headers["host"] == f"127.0.0.1:{server.port}"
        assert headers["x-scope-orgid"] == "team-a"
        assert body == b"body2"
    asyncio.run(scenario())


@pytest.mark.parametrize(("raw", "body", "reused"), [
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nhello", b"hello", True),
    (b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: 1\r\n\r\n", b"abcdefg", True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", b"ok", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok", False),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nServer: x\r\n\r\n", b"", True),
])
def test_response_framings(raw: bytes, body: bytes, reused: bool) -> None:
    async def scenario() -> None:
        async with Server(answer(raw)) as server:
            http = client(server)
            first = await http.post(b"a", {})
            second = await http.post(b"b", {})
            await http.aclose()
        assert first.body == body and second.body == body
        assert server.connections == (1 if reused else 2)
    asyncio.run(scenario())


def test_close_delimited_body_and_a_body_cap() -> None:
    async def scenario() -> None:
        async with Server(answer(b"HTTP/1.1 503 No\r\n\r\nuntil close", keep=False)) as server:
            http = client(server)
            response = await http.post(b"a", {})
            assert (response.status, response.body) == (503, b"until close")
            await http.aclose()
        big = b"x" * (MAX_BODY + 10)
        raw = b"HTTP/1.1 400 Big\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big)
        async with Server(answer(raw)) as server:
            http = client(server)
            assert (await http.post(b"a", {})).body == big[:MAX_BODY]
            assert (await http.post(b"b", {})).body == big[:MAX_BODY]
            await http.aclose()
        assert server.connections == 2  # the unread rest makes the connection unusable
    asyncio.run(scenario())


def test_a_keep_alive_connection_closed_by_the_server_is_retried_once() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(NO_CONTENT)
        await writer.drain()
        return False  # close after answering, without saying so: an idle-timeout close

    async def scenario() -> None:
        async with Server(handler) as server:
            http = client(server)
            assert (await http.post(b"a", {})).status == 204
            await asyncio.sleep(0.05)
            assert (await http.post(b"b", {})).status == 204
            await http.aclose()
        assert server.connections == 2
    asyncio.run(scenario())


def test_a_reused_connection_failing_before_any_answer_byte_is_retried_once() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if n in (2, 4, 5):  # read the request, then close without a byte of answer
            return False
        writer.write(NO_CONTENT)
        await writer.drain()
        return True

    async def scenario() -> None:
        async with Server(handler) as server:
            http = client(server)
            assert (await http.post(b"a", {})).status == 204  # request 1, connection 1
            assert (await http.post(b"b", {})).status == 204  # 2 fails, 3 on connection 2
            assert server.connections == 2
            with pytest.raises(ConnectionLost):  # 4 fails on reused 2, 5 fails on fresh 3
                await http.post(b"c", {})
            await http.aclose()
        assert [body for *_, body in server.requests] == [b"a", b"b", b"b", b"c", b"c"]
        assert server.connections == 3
    asyncio.run(scenario())


def test_a_reset_before_any_answer_on_a_fresh_connection_is_a_transport_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()
        return False

    async def scenario() -> None:
        async with Server(handler) as server:
            http = client(server)
            with pytest.raises(ConnectionLost):
                await http.post(b"a", {})
            await http.aclose()
        assert server.connections == 1  # not retried: the connection was not a reused one
    asyncio.run(scenario())


def test_refused_connection_and_timeout() -> None:
    async def scenario() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        http = HttpClient(f"http://127.0.0.1:{port}/", timeout=1.0, ssl=None)
        with pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
            await http.post(b"a", {})

        async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        n: int) -> bool:
            if n == 1:
                await asyncio.sleep(5)
            writer.write(NO_CONTENT)
            return True

        async with Server(stall) as server:
            http = client(server, timeout=0.2)
            with pytest.raises(RequestTimeout):
                await http.post(b"a", {})
            assert (await http.post(b"b", {})).status == 204  # on a fresh connection
            await http.aclose()
        assert server.connections == 2
    asyncio.run(scenario())


@pytest.mark.parametrize("raw", [b"garbage\r\n\r\n", b"HTTP/1.1 2x4 No\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"])
def test_protocol_errors(raw: bytes) -> None:
    async def scenario() -> None:
        async with Server(answer(raw)) as server:
            http = client(server)
            with pytest.raises(ProtocolError):
                await http.post(b"a", {})
            await http.aclose()
    asyncio.run(scenario())


def test_truncated_answer_is_connection_lost_and_header_injection_refused() -> None:
    async def scenario() -> None:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"
        async with Server(answer(raw, keep=False)) as server:
            http = client(server)
            with pytest.raises(ConnectionLost):
                await http.post(b"a", {})
            with pytest.raises(ValueError, match="line break"):
                await http.post(b"a", {"X-Scope-OrgID": "a\r\nInjected: 1"})
            await http.aclose()
    asyncio.run(scenario())


# -- odd answers: each a TransportError, the connection never reused ------------------------------

BIG = MAX_HEAD + 1024
ODD_ANSWERS = {  # the exact bytes of an answer, whether the server then closes, what it raises
    "head-over-the-limit": (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * BIG + b"\r\n\r\n", False,
                            ProtocolError),
    "garbage-without-blank-line": (b"\x00garbage" * (BIG // 8), False, ProtocolError),
    "garbage-then-close": (b"SSH-2.0-OpenSSH_9.2\r\n", True, ConnectionLost),
    "closed-mid-head": (b"HTTP/1.1 200 OK\r\nContent-", True, ConnectionLost),
    "status-code-of-four-digits": (b"HTTP/1.1 2000 OK\r\n\r\n", False, ProtocolError),
    "status-code-out-of-range": (b"HTTP/1.1 099 Odd\r\n\r\n", False, ProtocolError),
    "not-http": (b"ICY 200 OK\r\n\r\n", False, ProtocolError),
    "switching-protocols": (b"HTTP/1.1 101 Switching Protocols\r\n\r\n" + NO_CONTENT, False,
                            ProtocolError),
    "interim-storm": (b"HTTP/1.1 100 Continue\r\n\r\n" * 100 + NO_CONTENT, False,
                      ProtocolError),
    "chunk-size-0x": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"0x5\r\nhello\r\n0\r\n\r\n", False, ProtocolError),
    "chunk-size-not-hex": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"zz\r\nhello\r\n0\r\n\r\n", False, ProtocolError),
    "chunk-size-underscore": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n", False, ProtocolError),
    "chunk-without-crlf": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"5\r\nhelloXY0\r\n\r\n", False, ProtocolError),
    "chunked-then-close": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
                           True, ConnectionLost),
    "content-length-plus": (b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", False,
                            ProtocolError),
    "content-length-negative": (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", False,
                                ProtocolError),
    "content-lengths-that-differ": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                    b"Content-Length: 4\r\n\r\nokok", False, ProtocolError),
    "content-length-longer-than-sent": (b"HTTP/1.1 400 Bad\r\nContent-Length: 100\r\n\r\nshort",
                                        True, ConnectionLost),
}


@pytest.mark.parametrize("name", ODD_ANSWERS)
def test_an_odd_answer_is_a_transport_error_and_the_next_post_uses_a_new_connection(
        name: str) -> None:
    raw, close, error = ODD_ANSWERS[name]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(raw if n == 1 else NO_CONTENT)
        await writer.drain()
        return not (n == 1 and close)

    async def scenario() -> None:
        async with Server(handler) as server:
            http = client(server)
            with pytest.raises(error):
                await http.post(b"a", {})
            assert (await http.post(b"b", {})).status == 204
            await http.aclose()
        assert server.connections == 2
    asyncio.run(scenario())


def test_a_close_delimited_body_is_read_to_its_end_across_segments() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\nfirst part, ")
        await writer.drain()
        await asyncio.sleep(0.05)  # a second TCP segment
        writer.write(b"second part")
        await writer.drain()
        return False

    async def scenario() -> None:
        async with Server(handler) as server:
            http = client(server)
            response = await http.post(b"a", {})
            await http.aclose()
        assert (response.status, response.body) == (400, b"first part, second part")
    asyncio.run(scenario())


# -- TLS -----------------------------------------------------------------------------------------

def test_tls_with_ca_file_client_certificate_and_insecure_skip_verify(tmp_path: Path) -> None:
    server_cert, server_key = make_cert(tmp_path, "loki")
    client_cert, client_key = make_cert(tmp_path, "shipper")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=client_cert)
    server_context.load_cert_chain(server_cert, server_key)
    server_context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: the client must show its cert

    async def scenario() -> None:
        async with Server(answer(NO_CONTENT), server_context) as server:
            trusted = build_ssl_context(TLSConfig(ca_file=str(server_cert),
                                                  cert_file=str(client_cert),
                                                  key_file=str(client_key)))
            http = client(server, scheme="https", context=trusted)
            assert (await http.post(b"a", {})).status == 204
            await http.aclose()

            untrusted = build_ssl_context(TLSConfig(cert_file=str(client_cert),
                                                    key_file=str(client_key)))
            http = client(server, scheme="https", context=untrusted)
            with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.post(b"a", {})
            await http.aclose()

            insecure = build_ssl_context(TLSConfig(cert_file=str(client_cert),
                                                   key_file=str(client_key),
                                                   insecure_skip_verify=True))
            http = client(server, scheme="https", context=insecure)
            assert (await http.post(b"a", {})).status == 204
            await http.aclose()

            no_client_cert = build_ssl_context(TLSConfig(ca_file=str(server_cert)))
            http = client(server, scheme="https", context=no_client_cert)
            with pytest.raises((ConnectError, ConnectionLost)):  # refused during/after handshake
                await http.post(b"a", {})
            await http.aclose()
    asyncio.run(scenario())
