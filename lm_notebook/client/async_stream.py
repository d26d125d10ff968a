"""The async chat stream (from ``AsyncLMStudioClient.stream_chat``): ``async with``, ``async for``, ``await
stream.result()``. It shares :class:`~lm_notebook.client.stream_base.StreamBase` with the sync
:class:`~lm_notebook.client.stream.ChatStream` and holds only its I/O: reading the bytes, closing, and stopping when
an ``async for`` is abandoned.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

import httpx

from lm_notebook.client.accumulator import CONTENT, StreamPart
from lm_notebook.client.chunk_merging import ChunkMerger
from lm_notebook.client.flows import Flow
from lm_notebook.client.request_parts import NO_PARTS, RequestParts
from lm_notebook.client.stream_base import (
    EXPLAINED_IN_BAND,
    OnToken,
    StreamBase,
    StreamSource,
    TokenRelay,
    connect_trace,
    shut_down,
)
from lm_notebook.client.types import ChatResult

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class AsyncSource(StreamSource, Protocol):
    """The async client, as its stream uses it: it runs the stream's flows as coroutines."""

    def _drive(self, flow: Flow[T], /) -> Coroutine[Any, Any, T]: ...


class AsyncChatStream(StreamBase[AsyncGenerator[Any, None]]):
    """The async twin of :class:`~lm_notebook.client.stream.ChatStream`: ``async with``, ``async for``, ``await
    stream.result()``.

    >>> async with client.stream_chat("Hi", model="qwen2.5-7b-instruct") as stream:   # doctest: +SKIP
    ...     async for text in stream:
    ...         print(text, end="")
    >>> (await stream.result()).usage                                               # doctest: +SKIP
    """

    def __init__(self, source: AsyncSource, payload: dict[str, Any], parts: RequestParts = NO_PARTS) -> None:
        super().__init__(source, payload, parts)
        self._client = source  # the source, as the async client it is
        self._chunks: AsyncIterator[bytes] | None = None
        self._closing: asyncio.Task[None] | None = None  # the closing an abandoned ``async for`` handed to the loop

    async def __aenter__(self) -> AsyncChatStream:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[str]:
        if self._closed:  # iterating a finished stream replays its text
            return _each(self._replay())
        reader = self._reader(True)
        return _Consumer(self, reader if self._content_only else _only_content(reader))

    def iter_parts(self) -> AsyncIterator[StreamPart]:
        """Every part as it arrives: answer text, thinking and tool-call argument pieces."""
        return _Consumer(self, self._reader(False))

    async def text(self) -> str:
        """Read to the end and return the answer text."""
        return (await self.result()).content

    async def result(self) -> ChatResult:
        """The finished result; reads the rest of the stream first if needed (after a Stop or an abandoned
        ``async for``: closes it, and the result is the partial answer)."""
        if not self._closed:
            if self._stop_requested.is_set():
                await self.aclose()
            else:
                async for _ in self:
                    pass
        elif self._closing is not None:
            await self._closing
        return self._final()

    async def _open(self) -> httpx.Response | None:
        # an async stream is stopped by cancelling its task, or by aclose() from its own loop: the trace only has its
        # body read through the stream, each read's chunks one chunk
        return await self._client._drive(self._opening(connect_trace(self._on_connect, asynchronous=True)))

    def _on_connect(self, network: Any) -> None:
        """Read ``network`` (httpcore's async network stream, the stream's own connection) through this stream:
        counted once the body starts, each read's chunks one chunk for h11 (see :meth:`ChatStream._read_through`)."""
        read = network.read
        merger = ChunkMerger()

        async def reading(max_bytes: int, timeout: float | None = None) -> bytes:
            if self._body_started:
                self.reads += 1
            merged = merger.take(await read(max_bytes, timeout))
            while merged is None:  # only the start of a chunk line came: read on to its end
                merged = merger.take(await read(max_bytes, timeout))
            return merged

        network.read = reading

    async def _run(self) -> AsyncGenerator[Any, None]:
        try:
            with self._recording():
                response = await self._open()
                if response is not None and (take := self._taker(response)) is not None:
                    self._body_started = True
                    try:
                        with self._reading():
                            self._chunks = chunks = response.aiter_bytes()
                            async for raw in chunks:
                                for out in take(raw):
                                    yield out
                                if self._ended:
                                    break
                    except EXPLAINED_IN_BAND as err:  # in the stream: explained as an error answer is
                        raise await self._client._drive(self._explained(err)) from None
                for out in await self._client._drive(self._ending()):
                    yield out
        finally:
            if self._chunks is not None:
                if self._response is not None and sys.get_asyncgen_hooks().finalizer is None:
                    # no loop hooks (nest_asyncio's run_until_complete): closing the byte iterator drops httpx's and
                    # httpcore's generators under it, and the garbage collector finalises them at once, outside
                    # this task; with the connection still open each would await its closing there ("Exception
                    # ignored … cancel scope in a different task" on stderr). Closed first, they await nothing.
                    await self._response.aclose()
                # an async generator left suspended at [DONE] would be finalized later, outside any running loop
                await self._chunks.aclose()  # type: ignore[attr-defined]
            if self._response is not None:
                await self._response.aclose()

    async def _read_to_end(self, on_token: OnToken | None) -> ChatResult:
        """``send_message`` streaming: read to the end, telling ``on_token`` each piece."""
        relay = TokenRelay(on_token)
        async with self:
            async for token in self:
                relay(token)
        return await self.result()

    def _abandon(self) -> None:
        """An ``async for`` left early (its iterator was dropped): stop at once, as the sync twin does. The stream is
        stopped from now on and the socket is shut down (the server sees the client leave now). Nothing can be
        awaited here: closing the reading and the response is handed to the running loop (``result()`` and
        ``aclose()`` wait for it); with no loop running, the stream is collected with its response."""
        self._stop_requested.set()
        shut_down(None, self._response)
        self._finish()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._closing = loop.create_task(self._close_reading())

    async def aclose(self) -> None:
        """Stop reading and close the connection; what arrived so far stays available."""
        self._stop_requested.set()
        await self._close_reading()
        if not self._closed:
            self._finish()

    async def _close_reading(self) -> None:
        if self._closing is not None and self._closing is not asyncio.current_task():
            await self._closing  # an abandoned loop's closing, already under way
            return
        if self._gen is not None:
            try:
                await self._gen.aclose()
            except RuntimeError:  # already running elsewhere: it sees the flag
                pass
        if self._response is not None:
            await self._response.aclose()


class _Consumer(Generic[T_co]):
    """One ``async for``'s own iterator over an async stream. An async generator left early is only closed later,
    by a task the event loop schedules; this one stops its stream the moment the loop drops it."""

    __slots__ = ("_next", "_stream")

    def __init__(self, stream: AsyncChatStream, items: AsyncIterator[T_co]) -> None:
        self._stream = stream
        self._next = items.__anext__

    def __aiter__(self) -> _Consumer[T_co]:
        return self

    def __anext__(self) -> Awaitable[T_co]:
        return self._next()

    def __del__(self) -> None:
        stream = self._stream
        if not stream._closed:
            stream._abandon()


async def _each(texts: list[str]) -> AsyncIterator[str]:
    for text in texts:
        yield text


async def _only_content(parts: AsyncIterator[StreamPart]) -> AsyncIterator[str]:
    async for part in parts:
        if part.kind is CONTENT:
            yield part.text
