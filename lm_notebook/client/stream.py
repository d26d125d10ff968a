"""A chat stream as an object: iterate it for text deltas, then ``.result()``.

The stream opens its HTTP request lazily (on first iteration or ``with``), stops at ``data: [DONE]``, turns in-band
errors into exceptions that keep the partial answer, and always closes its response in ``finally`` — when the
consumer stops early, leaves a ``with`` block, or is interrupted (``KeyboardInterrupt``). Each ``for`` (``async
for``) gets an iterator of its own: abandoning it (``break``, an exception in the loop's body) closes the connection
at once, with or without ``with``, and ``result()`` is then the partial answer, ``stopped``.

:class:`ChatStream` (from ``LMStudioClient.stream_chat``) and :class:`AsyncChatStream` (from the async client) share
:class:`~lm_notebook.client.stream_base.StreamBase`; each holds only its I/O: reading the bytes, closing.

>>> with client.stream_chat("Hi") as stream:          # doctest: +SKIP
...     for text in stream:
...         print(text, end="")
>>> stream.result().usage                            # doctest: +SKIP
>>> async with aclient.stream_chat("Hi") as stream:   # doctest: +SKIP
...     async for text in stream:
...         print(text, end="")
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, Protocol, TypeVar

import httpx

from lm_notebook.client.accumulator import (
    CONTENT,
    REASONING,
    TOOL_CALL,
    ChatAccumulator,
    PartKind,
    StreamPart,
    TextBuffer,
)
from lm_notebook.client.async_stream import AsyncChatStream, AsyncSource
from lm_notebook.client.chunk_merging import ChunkMerger
from lm_notebook.client.flows import Flow
from lm_notebook.client.request_parts import NO_PARTS, RequestParts
from lm_notebook.client.stream_base import (
    EXPLAINED_IN_BAND,
    OnToken,
    StreamBase,
    StreamSource,
    TokenRelay,
    Trace,
    connect_trace,
    shut_down,
)
from lm_notebook.client.types import ChatResult

# re-exported: the stream's parts are part of its API
__all__ = [
    "CONTENT",
    "REASONING",
    "TOOL_CALL",
    "AsyncChatStream",
    "AsyncSource",
    "ChatAccumulator",
    "ChatStream",
    "PartKind",
    "ReadPacing",
    "StreamPart",
    "SyncSource",
    "TextBuffer",
]

T = TypeVar("T")


class SyncSource(StreamSource, Protocol):
    """The sync client, as its stream uses it: it runs the stream's flows to their value."""

    def _drive(self, flow: Flow[T], /) -> T: ...

    def _connect_ahead(self) -> None: ...


class ChatStream(StreamBase[Generator[Any, None, None]]):
    """A streamed chat answer (sync). Iterate for text deltas; ``iter_parts()`` also gives thinking."""

    def __init__(self, source: SyncSource, payload: dict[str, Any], parts: RequestParts = NO_PARTS) -> None:
        super().__init__(source, payload, parts)
        self._client = source  # the source, as the sync client it is
        self._chunks: Iterator[bytes] | None = None
        self._reader_thread: int | None = None
        self._socket: socket.socket | None = None
        self._probe_socket: socket.socket | None = None  # a route probe's, while the stream asks which route to take
        self._pacing: ReadPacing | None = None
        self._network: Any = None  # the connection's network stream, once connected (read through this stream)
        self._on_sent: Callable[[], object] | None = None  # when_sent()'s callback, until it is called

    def __enter__(self) -> ChatStream:
        self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        if self._closed:  # iterating a finished stream replays its text
            return iter(self._replay())
        reader = self._reader(True)
        return self._consumer(reader if self._content_only else (p.text for p in reader if p.kind is CONTENT))

    def iter_parts(self) -> Iterator[StreamPart]:
        """Every part as it arrives: answer text, thinking and tool-call argument pieces."""
        return self._consumer(self._reader(False))

    def coalesce_reads(
        self, interval: float, *, clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], object] | None = None,
    ) -> ChatStream:
        """After the first token, read the connection at most every ``interval`` seconds; returns the stream.

        Everything that arrived meanwhile is then taken in one read, instead of one wake-up of the reading thread
        per network packet (thousands a second from a fast model): for a reader that shows the text a few times a
        second anyway (``%%lm`` repaints ten times a second), that is most of what reading costs. The first token
        is read the moment it arrives, and a Stop (:meth:`close` from another thread) still ends a wait at once.
        The answer text a read brought then comes as one piece (one part from :meth:`iter_parts`, between the
        other parts in their order) rather than one a token: :attr:`deltas` counts the tokens.
        ``clock`` and ``wait`` (default: waiting on the stop flag) are for tests. Call it before reading starts.
        """
        self._pacing = ReadPacing(interval, self._acc, clock, wait or self._stop_requested.wait, self._stop_requested)
        self._merge = True
        return self

    def when_sent(self, callback: Callable[[], object]) -> ChatStream:
        """Call ``callback`` once, on the reading thread, as soon as the request has gone out (its body written) and
        before its answer is read; returns the stream.

        What a reader shows while the server works (``%%lm``'s placeholder) then waits beside the request instead of
        before it, and still comes before anything the answer brings. With a transport that does not report it (a
        mock), it is called when the response arrives, still before its first part; never when the request was not
        sent (a refused connection: the error is all there is). Call it before reading starts.
        """
        self._on_sent = callback
        return self

    def _request_sent(self) -> None:
        callback, self._on_sent = self._on_sent, None
        if callback is not None:
            callback()

    def _consumer(self, items: Iterator[T]) -> Generator[T, None, None]:
        """``items`` as one loop's own iterator. A loop that leaves early drops it and Python closes it at once
        (``GeneratorExit`` at its ``yield``): that closes the stream, as leaving a ``with`` block would."""
        try:
            yield from items
        except GeneratorExit:
            self.close()
            raise

    def text(self) -> str:
        """Read to the end and return the answer text."""
        return self.result().content

    def result(self) -> ChatResult:
        """The finished result; reads the rest of the stream first if needed."""
        if not self._closed:
            for _ in self:
                pass
        return self._final()

    def _open(self) -> httpx.Response | None:
        if self._reader_thread is None:
            # the thread that opens is the reader from here on (``with`` opens before any iteration): a Stop from
            # another thread during a long opening (a model load) must wake it, not close it from outside
            self._reader_thread = threading.get_ident()
        return self._client._drive(self._opening(connect_trace(self._on_connect, self._request_sent)))

    def _run(self) -> Generator[Any, None, None]:
        """The one reading: open (a flow), take each block of the body, end (a flow); always close."""
        self._reader_thread = threading.get_ident()
        try:
            with self._recording():
                response = self._open()
                if response is not None:
                    self._request_sent()  # (a transport that did not say it went out)
                if response is not None and (take := self._taker(response)) is not None:
                    self._count_reads(response)
                    try:
                        with self._reading():
                            self._chunks = chunks = response.iter_bytes()
                            for raw in chunks:
                                yield from take(raw)
                                if self._ended:
                                    break
                    except EXPLAINED_IN_BAND as err:  # in the stream: explained as an error answer is
                        raise self._client._drive(self._explained(err)) from None
                yield from self._client._drive(self._ending())
        finally:
            if self._chunks is not None:
                self._chunks.close()  # type: ignore[attr-defined]  # a generator: stopping at [DONE] leaves it suspended
            if self._response is not None:
                self._response.close()
            if self._socket is not None:  # it reached the server: the next stream's connection, opened now
                self._client._connect_ahead()

    def _count_reads(self, response: httpx.Response) -> None:
        """The body starts: from here on reads are counted and, when asked, paced. Reads go through
        :meth:`_read_through`, set on the connection's network stream when it connected; a transport that connects
        no socket (a mock) gets it now (its reads are counted and paced, nothing is merged)."""
        self._body_started = True
        if self._pacing is not None:
            self._pacing.start()  # the headers' read may have brought the first token already
        network = response.extensions.get("network_stream")
        if network is not None and network is not self._network and hasattr(network, "read"):
            self._read_through(network, merge=False)

    def _read_through(self, network: Any, *, merge: bool = True) -> None:
        """Read ``network`` (httpcore's network stream: the one the response reads through) through this stream:
        counted and paced once the body starts, and with ``merge``, each read's chunks one chunk for h11
        (:class:`~lm_notebook.client.chunk_merging.ChunkMerger`; a stream's connection is its own, never reused)."""
        self._network = network
        read = network.read
        merger = ChunkMerger() if merge else None

        def reading(max_bytes: int, timeout: float | None = None) -> bytes:
            if self._body_started:
                self.reads += 1
                pacing = self._pacing
                data: bytes = read(max_bytes, timeout) if pacing is None else pacing.read(read, max_bytes, timeout)
            else:
                data = read(max_bytes, timeout)
            if merger is None:
                return data
            merged = merger.take(data)
            while merged is None:  # only the start of a chunk line came: read on to its end
                merged = merger.take(read(max_bytes, timeout))
            return merged

        network.read = reading

    def _read_to_end(self, on_token: OnToken | None) -> ChatResult:
        """``send_message`` streaming: read to the end, telling ``on_token`` each piece."""
        relay = TokenRelay(on_token)
        with self:
            for token in self:
                relay(token)
        return self.result()

    def close(self) -> None:
        """Stop reading and close the connection; what arrived so far stays available. Safe from any thread.

        From the thread that reads the stream, this closes it at once. From another thread (a Stop button), it sets
        a flag and shuts the socket down, which wakes the reader even when the server sends nothing; the reader
        then ends the stream and closes the response itself (a generator must not be closed while it runs).
        """
        self._stop_requested.set()
        reader = self._reader_thread
        if reader is not None and reader != threading.get_ident():
            if not self._closed:
                self._wake_reader()
            return
        if self._gen is not None:
            try:
                self._gen.close()  # runs the generator's finally: closes the response
            except ValueError:  # "generator already executing": another thread has just started reading
                self._wake_reader()
                return
        if self._response is not None:
            self._response.close()
        if not self._closed:
            self._finish()

    def _wake_reader(self) -> None:
        # the socket as connected (known even while the request still waits for its headers, e.g. during a model
        # load), else the one the response reads from; and a route probe's (or the wait for another's)
        shut_down(self._socket, self._response)
        self._waking.set()
        if self._probe_socket is not None:
            shut_down(self._probe_socket, None)

    def _probe_trace(self) -> Trace:
        return connect_trace(self._on_probe_connect)

    def _on_probe_connect(self, network: Any) -> None:
        self._probe_socket = network.get_extra_info("socket")
        if self._stop_requested.is_set():  # stopped while connecting
            self._wake_reader()

    def _on_connect(self, network: Any) -> None:
        if network.get_extra_info("ssl_object") is None:  # the TCP socket (a TLS stream comes after it, over it)
            self._socket = network.get_extra_info("socket")  # (again when a dropped spare's request is sent anew)
        self._read_through(network)
        if self._stop_requested.is_set():  # stopped while connecting
            self._wake_reader()


class ReadPacing:
    """Holds each network read back until ``interval`` after the previous one, once the first token has come (see
    :meth:`ChatStream.coalesce_reads`)."""

    def __init__(
        self, interval: float, acc: ChatAccumulator, clock: Callable[[], float], wait: Callable[[float], object],
        stop: threading.Event | None = None,
    ) -> None:
        self.interval = interval
        self.waits = 0  # reads held back
        self._acc = acc
        self._clock = clock
        self._wait = wait
        self._stop = stop
        self._next = 0.0

    def start(self) -> None:
        """The body starts: a read that comes after the first token waits one interval from now at most."""
        self._next = self._clock() + self.interval

    def read(self, read: Callable[[int, float | None], bytes], max_bytes: int, timeout: float | None) -> bytes:
        if self._acc.first_token_at is not None:
            left = self._next - self._clock()
            if left > 0:
                self.waits += 1
                self._wait(left)
                if self._stop is not None and self._stop.is_set():
                    return b""  # stopped while it waited: read nothing more (the socket is shut down anyway)
        data = read(max_bytes, timeout)
        self._next = self._clock() + self.interval
        return data
