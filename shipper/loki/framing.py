"""How an HTTP/1.1 answer is read off a stream: its head, then its body by its framing.

Strict where int() would be lenient ("+5", "1_0", "0x5" are not lengths) and bounded
everywhere: a malformed answer raises ValueError (or asyncio's LimitOverrunError), a truncated
one IncompleteReadError, never anything the caller does not expect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

MAX_BODY = 64 * 1024  # of an answer: Loki's are short; the rest of a longer one is not read
MAX_HEADERS = 100  # and as many trailer lines
HEX = frozenset(b"0123456789abcdefABCDEF")


def parse_head(head: bytes) -> tuple[str, int, dict[str, str]]:
    """Status line and headers (names lower-cased) of an answer, its blank line included."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code, separator = rest[:3], rest[3:4]
    if (version not in ("HTTP/1.0", "HTTP/1.1") or separator not in ("", " ")
            or not (code.isdigit() and code.isascii()) or not 100 <= int(code) <= 599):
        raise ValueError(f"bad status line {status_line[:80]!r}")
    if int(code) == 101:  # never asked for: what follows is not HTTP/1.1
        raise ValueError("unexpected 101 Switching Protocols")
    if len(lines) > MAX_HEADERS:
        raise ValueError(f"more than {MAX_HEADERS} headers")
    headers: dict[str, str] = {}
    for line in lines[:-2]:  # the split leaves two empty strings after the blank line
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {line[:80]!r}")
        name, value = name.strip().lower(), value.strip()
        # A repeated header is one list (RFC 9110 5.3): two Content-Lengths stop being a number.
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return version, int(code), headers


def _content_length(value: str) -> int:
    # Digits only: int() would also take "+5", " 5" and "1_0".
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"bad Content-Length {value[:40]!r}")
    return int(value)


async def read_body(reader: asyncio.StreamReader, status: int, headers: Mapping[str, str]
                    ) -> tuple[bytes, bool]:
    """The body up to MAX_BODY, and whether it was read to its end (the connection reusable)."""
    if status in (204, 304):
        return b"", True
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _chunked(reader)
    if "content-length" in headers:
        length = _content_length(headers["content-length"])
        return await reader.readexactly(min(length, MAX_BODY)), length <= MAX_BODY
    return await _until_closed(reader), False  # delimited by the server closing


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """A close-delimited body, up to MAX_BODY: read() returns whatever one segment held."""
    body = bytearray()
    while len(body) < MAX_BODY and (data := await reader.read(MAX_BODY - len(body))):
        body += data
    return bytes(body)


async def _chunked(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    """The body up to MAX_BODY, and whether it was read to its end (the connection reusable)."""
    body = bytearray()
    while True:
        size = _chunk_size(await reader.readuntil(b"\n"))
        if size == 0:
            for _ in range(MAX_HEADERS):
                if (await reader.readuntil(b"\n")).strip() == b"":
                    return bytes(body), True
            raise ValueError(f"more than {MAX_HEADERS} trailer lines")
        if len(body) + size > MAX_BODY:
            body += await reader.readexactly(MAX_BODY - len(body))
            return bytes(body), False
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("chunk data not followed by CRLF")


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";")[0].strip()
    # Hex digits only (int(x, 16) would take "0x5", "-5" and "1_0"); 15 of them exceed any body.
    if not digits or len(digits) > 15 or not HEX.issuperset(digits):
        raise ValueError(f"bad chunk size line {line[:40]!r}")
    return int(digits, 16)


__all__ = ["MAX_BODY", "parse_head", "read_body"]
