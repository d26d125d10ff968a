"""HTTP/1.1 over asyncio streams: a small, strict request parser and the two ways to answer.

Requests: request line, headers, and a body by ``Content-Length`` or chunked transfer-encoding (both at once is
refused, as smuggling protection); ``Expect: 100-continue`` is honoured (curl sends it for larger bodies).
Answers: a whole body with ``Content-Length``, or a chunked body for server-sent events, which is how LM Studio's
Express server streams and what keeps the connection reusable afterwards. Each connection's protocol also tells
when the client has left.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def dump_json(value: object) -> bytes:
    """JSON as Express's ``res.json`` sends it: compact, UTF-8 as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class BadRequest(Exception):
    """The bytes are not an HTTP/1.1 request we accept; the connection gets a 400 and is closed."""


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    path: str
    query: str
    version: str
    headers: Mapping[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
    """The next request on the connection, or None when the client closed it between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest("incomplete request head") from exc
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc
    lines = head[:-4].lstrip(b"\r\n").split(b"\r\n")  # RFC 9112 §2.2: ignore empty lines before the request
    try:
        request_line = lines[0].decode("ascii")
        method, target, version = request_line.split(" ")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("malformed request line") from exc
    if version not in ("HTTP/1.1", "HTTP/1.0") or not method or not set(method) <= _TOKEN_CHARS:
        raise BadRequest("unsupported request line")
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        name_b, sep, value_b = raw.partition(b":")
        name = name_b.decode("latin-1")
        if not sep or not name or not set(name) <= _TOKEN_CHARS:  # also refuses obsolete line folding
            raise BadRequest("malformed header line")
        key = name.lower()
        value = value_b.decode("latin-1").strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    path_raw, _, query = target.partition("?")
    body = await _read_body(reader, writer, headers)
    return Request(method, target, unquote(path_raw), query, version, headers, body)


async def _read_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]) -> bytes:
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    length_s = headers.get("content-length")
    if chunked and length_s is not None:
        raise BadRequest("both Content-Length and Transfer-Encoding")
    if headers.get("expect", "").lower() == "100-continue" and (chunked or length_s not in (None, "0")):
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        if chunked:
            return await _read_chunked(reader)
        if length_s is None:
            return b""
        if not length_s.isdigit():
            raise BadRequest("bad Content-Length")
        length = int(length_s)
        if length > MAX_BODY_BYTES:
            raise BadRequest("body too large")
        return await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError as exc:
        raise BadRequest("body shorter than announced") from exc


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = (await reader.readuntil(b"\r\n"))[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError as exc:
            raise BadRequest("bad chunk size") from exc
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers: read and ignore
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY_BYTES:
            raise BadRequest("body too large")
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise BadRequest("chunk not followed by CRLF")


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", f"Date: {email.utils.formatdate(usegmt=True)}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def write_response(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    *,
    content_type: str | None = "application/json; charset=utf-8",
    headers: list[tuple[str, str]] | None = None,
    keep_alive: bool = True,
) -> None:
    """Queue a whole answer (head and body in one write)."""
    all_headers = [("X-Powered-By", "Express")]
    if content_type:
        all_headers.append(("Content-Type", content_type))
    all_headers.append(("Content-Length", str(len(body))))
    all_headers.extend(headers or [])
    all_headers.append(("Connection", "keep-alive" if keep_alive else "close"))
    writer.write(_head(status, all_headers) + body)


class ChunkedBody:
    """A streamed answer body in HTTP chunked encoding; each :meth:`write` is one chunk on the wire."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.finished = False

    @classmethod
    def start(
        cls, writer: asyncio.StreamWriter, status: int, content_type: str, headers: list[tuple[str, str]] | None
    ) -> ChunkedBody:
        all_headers = [("X-Powered-By", "Express"), ("Content-Type", content_type), ("Cache-Control", "no-cache"),
                       ("Connection", "keep-alive"), ("Transfer-Encoding", "chunked")]
        all_headers.extend(headers or [])
        writer.write(_head(status, all_headers))
        return cls(writer)

    @property
    def closed(self) -> bool:
        return self._writer.transport.is_closing()

    def write(self, data: bytes) -> None:
        if data:
            self._writer.write(b"%x\r\n%b\r\n" % (len(data), data))

    async def flush(self) -> None:
        await self._writer.drain()

    async def finish(self) -> None:
        self._writer.write(b"0\r\n\r\n")
        self.finished = True
        await self._writer.drain()

    def abort(self) -> None:
        """Cut the connection without ending the body, like a crashed server."""
        self._writer.transport.abort()


class ConnectionProtocol(asyncio.StreamReaderProtocol):
    """What ``asyncio.start_server`` builds for each connection, plus ``client_left``: done as soon as the client
    closes its side or the connection is lost, so a paced answer ends at once, as LM Studio stops generating for a
    client that has gone (asyncio's streams only tell at a failed write, some tokens later)."""

    def __init__(self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Future[None]],
                                         Coroutine[Any, Any, None]]) -> None:
        self.client_left: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        super().__init__(asyncio.StreamReader(limit=MAX_HEAD_BYTES),
                         lambda reader, writer: handler(reader, writer, self.client_left))

    def _leave(self) -> None:
        if not self.client_left.done():
            self.client_left.set_result(None)

    def eof_received(self) -> bool:
        self._leave()
        return bool(super().eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave()
        super().connection_lost(exc)
