"""A chat stream as an object: iterate it for text deltas, then ``.result()``.

The stream opens its HTTP request lazily (on first iteration or ``with``), stops at ``data: [DONE]``, turns in-band
errors into exceptions that keep the partial answer, and always closes its response in ``finally`` — when the
consumer stops early, leaves a ``with`` block, or is interrupted (``KeyboardInterrupt``).

>>> with client.stream_chat("Hi") as stream:          # doctest: +SKIP
...     for text in stream:
...         print(text, end="")
>>> stream.result().usage                            # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

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
from lm_notebook.client.errors import (
    LMStudioAPIError,
    LMStudioError,
    LMStudioStreamError,
    classify_error,
    error_message_and_code,
    is_error_body,
)
from lm_notebook.client.sse import ServerSentEvent, SSEDecoder
from lm_notebook.client.transport_errors import translate_transport_error
from lm_notebook.client.types import ChatResult

# re-exported: the stream's parts are part of its API
__all__ = [
    "CONTENT",
    "REASONING",
    "TOOL_CALL",
    "AsyncChatStream",
    "ChatAccumulator",
    "ChatStream",
    "PartKind",
    "StreamPart",
    "TextBuffer",
]

_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


class _StreamCore:
    """What both stream twins share: event handling, errors and state (no I/O)."""

    def __init__(self, *, base_url: str, read_timeout: float | None, model: str | None) -> None:
        self._base_url = base_url
        self._read_timeout = read_timeout
        self._model = model
        self._acc = ChatAccumulator(streaming=True)
        self._decoder = SSEDecoder()
        self._done = False  # [DONE] or a clean end was seen
        self._started = False
        self._closed = False
        self._stop_requested = threading.Event()
        self._error: LMStudioError | None = None

    @property
    def done(self) -> bool:
        return self._done

    @property
    def stopped(self) -> bool:
        """True when the stream was closed before the server finished."""
        return self._closed and not self._done and self._error is None

    @property
    def content(self) -> str:
        """The answer text so far."""
        return self._acc.content

    @property
    def reasoning(self) -> str:
        return self._acc.reasoning

    def partial(self) -> ChatResult:
        """A snapshot of what has arrived so far."""
        return self._acc.result(stopped=not self._done)

    def _chunk(self, event: ServerSentEvent) -> dict[str, Any] | None:
        """The parsed chunk of one event; None at ``[DONE]``; in-band errors raise."""
        data = event.data
        if event.event == "error":
            raise self._in_band_error(data)
        if data == "[DONE]":
            self._done = True
            return None
        try:
            # the C scanner directly: json.loads adds two Python-level calls and a regex per chunk
            chunk, end = _scan_json(data, 0)
            if end != len(data) and data[end:].strip():
                raise ValueError(data)
        except (StopIteration, ValueError):
            try:
                chunk = json.loads(data)
            except ValueError:
                chunk = None
        if not isinstance(chunk, dict):
            raise LMStudioStreamError(
                f"LM Studio sent a malformed chunk after {self._acc.content_chars} characters: {data[:200]!r}. "
                "The partial answer is kept (.partial); retry the request.",
                partial=self.partial(),
            )
        if "error" in chunk and "choices" not in chunk:
            raise self._in_band_error(data)
        return chunk

    def _outputs(self, chunk: dict[str, Any], content_only: bool) -> list[Any]:
        """What one (non-plain) chunk gives the consumer: text deltas, or all parts."""
        parts = self._acc.add_chunk(chunk)
        if not content_only:
            return parts
        return [p.text for p in parts if p.kind is CONTENT]

    def _in_band_error(self, data: str) -> LMStudioError:
        try:
            body: Any = json.loads(data)
        except ValueError:
            body = data
        message, code = error_message_and_code(body)
        if not message and isinstance(body, dict):
            message = str(body.get("message", ""))
        partial = self.partial()
        err = classify_error(
            status_code=200,
            body=body,
            message=message,
            code=code,
            base_url=self._base_url,
            method="POST",
            path="/v1/chat/completions",
            model=self._model,
            partial=partial,
        )
        if type(err) is LMStudioAPIError:
            return LMStudioStreamError(
                f"LM Studio reported an error mid-answer after {len(partial.content)} characters: {message}. "
                "The partial answer is kept (.partial).",
                partial=partial,
            )
        return err

    def _transport_error(self, exc: httpx.HTTPError) -> LMStudioError:
        return translate_transport_error(
            exc, base_url=self._base_url, read_timeout=self._read_timeout, partial=self.partial(), streaming=True
        )

    def _dropped(self, message: str) -> LMStudioStreamError:
        err = LMStudioStreamError(message, partial=self.partial())
        err.dropped = True
        return err

    def _check_finished(self) -> None:
        """The body ended (at ``[DONE]`` or not): fine after a finish_reason, else the answer was cut or broken."""
        self._decoder.flush()
        if self._acc.finish_reason is not None:
            self._done = True
            return
        saw_done, self._done = self._done, False
        if saw_done:
            # OpenAI-style servers say why an answer ended before [DONE]; without it the answer was cut short
            raise self._dropped(
                f"The server ended the answer after {self._acc.content_chars} characters without saying why (no "
                "finish_reason before [DONE]): it was cut short. llama.cpp's server does this to serve a waiting "
                "request unless started with --interrupt_requests False. The partial answer is kept (.partial); "
                "retry the request."
            )
        if self._acc.id is None and self._acc.deltas == 0:  # no chunk: it failed before generating; a retry won't help
            raise LMStudioStreamError(
                f"The server at {self._base_url} accepted the request but ended the stream without sending anything. "
                "llama.cpp's server does this when the prompt does not fit in the model's context (its log says "
                '"exceed context window"): shorten the prompt or conversation, or check the server\'s log.',
                partial=self.partial(),
            )
        raise LMStudioStreamError(
            f"LM Studio closed the stream after {self._acc.content_chars} characters without finishing the answer. "
            "The partial answer is kept (.partial); retry the request.",
            partial=self.partial(),
        )

    def _non_stream_body(self, text: str) -> list[StreamPart]:
        """A whole answer where a stream was expected (an error, or a server that ignored ``stream``)."""
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not (is_error_body(body) or "choices" in body):
            raise LMStudioStreamError(
                f"The server at {self._base_url} answered 200 with something that is neither a stream nor a chat "
                f"answer ({text[:120]!r}). Is the base URL right, and is nothing (a proxy, another program) in the "
                "way?",
                partial=self.partial(),
            )
        if is_error_body(body):
            message, code = error_message_and_code(body)
            raise classify_error(
                status_code=200,
                body=body,
                message=message,
                code=code,
                base_url=self._base_url,
                method="POST",
                path="/v1/chat/completions",
                model=self._model,
            )
        self._acc.add_message(body)
        self._done = True
        parts = []
        if self._acc.reasoning:
            parts.append(StreamPart(REASONING, self._acc.reasoning))
        if self._acc.content:
            parts.append(StreamPart(CONTENT, self._acc.content))
        return parts

    def _finish(self) -> None:
        self._acc.finish()
        self._closed = True


class ChatStream(_StreamCore):
    """A streamed chat answer (sync). Iterate for text deltas; ``iter_parts()`` also gives thinking."""

    def __init__(
        self,
        opener: Callable[[Callable[[socket.socket], None]], httpx.Response],
        *,
        base_url: str,
        read_timeout: float | None,
        model: str | None,
        explain_empty: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(base_url=base_url, read_timeout=read_timeout, model=model)
        self._opener = opener
        self._explain_empty = explain_empty
        self._response: httpx.Response | None = None
        self._gen: Iterator[Any] | None = None
        self._content_only = True
        self._reader_thread: int | None = None
        self._socket: socket.socket | None = None

    def __enter__(self) -> ChatStream:
        self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        if self._closed:  # iterating a finished stream replays its text
            return iter([self._acc.content] if self._acc.content else [])
        if self._gen is None:
            self._gen, self._content_only = self._run(True), True
        if self._content_only:
            return self._gen
        return (p.text for p in self._gen if p.kind is CONTENT)

    def iter_parts(self) -> Iterator[StreamPart]:
        """Every part as it arrives: answer text, thinking and tool-call argument pieces."""
        if self._gen is None:
            self._gen, self._content_only = self._run(False), False
        elif self._content_only:
            raise RuntimeError("this stream is already being iterated for text; call iter_parts() first")
        return self._gen

    def _open(self) -> None:
        if self._started:
            return
        self._started = True
        self._acc.started = time.perf_counter()
        try:
            self._response = self._opener(self._on_connect)
        except LMStudioError:
            if self._stop_requested.is_set():  # the wake-up broke the pending request: that is a stop, not a fault
                return
            raise

    def _run(self, content_only: bool) -> Iterator[Any]:
        self._reader_thread = threading.get_ident()
        chunks: Iterator[bytes] | None = None
        try:
            self._open()
            response = self._response
            if response is None or self._stop_requested.is_set():
                return

            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                try:
                    response.read()
                except httpx.HTTPError as exc:
                    raise self._transport_error(exc) from exc
                parts = self._non_stream_body(response.text)
                yield from (p.text for p in parts if p.kind is CONTENT) if content_only else parts
                return
            feed = self._decoder.feed
            decode = self._chunk
            plain = self._acc.take_plain_content
            outputs = self._outputs
            stop = self._stop_requested
            chunks = response.iter_bytes()
            try:
                for raw in chunks:
                    for event in feed(raw):
                        chunk = decode(event)
                        if chunk is None:
                            break
                        text = plain(chunk)
                        if text is None:
                            yield from outputs(chunk, content_only)
                        elif text:
                            yield text if content_only else StreamPart(CONTENT, text)
                    if self._done or stop.is_set():
                        break
            except httpx.HTTPError as exc:
                if stop.is_set():
                    return
                raise self._transport_error(exc) from exc
            if stop.is_set():
                return
            if self._acc.deltas == 0 and self._explain_empty is not None:
                self._explain_empty()  # raises the server's reason for an empty stream, if it has one
            self._check_finished()
        except LMStudioError as err:
            self._error = err
            raise
        finally:
            self._finish()
            if chunks is not None:
                chunks.close()  # type: ignore[attr-defined]  # a generator: stopping at [DONE] leaves it suspended
            if self._response is not None:
                self._response.close()

    def text(self) -> str:
        """Read to the end and return the answer text."""
        return self.result().content

    def result(self) -> ChatResult:
        """The finished result; reads the rest of the stream first if needed."""
        if not self._closed:
            for _ in self:
                pass
        return self._acc.result(stopped=self.stopped)

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
        gen = self._gen
        if gen is not None and hasattr(gen, "close"):
            gen.close()  # runs the generator's finally: closes the response
        if self._response is not None:
            self._response.close()
        if not self._closed:
            self._finish()

    def _wake_reader(self) -> None:
        # the socket as connected (known even while the request still waits for its headers, e.g. during a model
        # load), else the one the response reads from
        sock = self._socket
        if sock is None and self._response is not None:
            network = self._response.extensions.get("network_stream")
            sock = network.get_extra_info("socket") if network is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _on_connect(self, sock: socket.socket) -> None:
        self._socket = sock
        if self._stop_requested.is_set():  # stopped while connecting
            self._wake_reader()


class AsyncChatStream(_StreamCore):
    """The async twin of :class:`ChatStream`: ``async for``, ``async with``, ``await stream.result()``."""

    def __init__(
        self,
        opener: Callable[[], Awaitable[httpx.Response]],
        *,
        base_url: str,
        read_timeout: float | None,
        model: str | None,
        explain_empty: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(base_url=base_url, read_timeout=read_timeout, model=model)
        self._opener = opener
        self._explain_empty = explain_empty
        self._response: httpx.Response | None = None
        self._gen: AsyncIterator[Any] | None = None
        self._content_only = True

    async def __aenter__(self) -> AsyncChatStream:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[str]:
        if self._closed:
            return _replay(self._acc.content)
        if self._gen is None:
            self._gen, self._content_only = self._run(True), True
        if self._content_only:
            return self._gen
        return _only_content(self._gen)

    def iter_parts(self) -> AsyncIterator[StreamPart]:
        if self._gen is None:
            self._gen, self._content_only = self._run(False), False
        elif self._content_only:
            raise RuntimeError("this stream is already being iterated for text; call iter_parts() first")
        return self._gen

    async def _open(self) -> None:
        if self._started:
            return
        self._started = True
        self._acc.started = time.perf_counter()
        self._response = await self._opener()

    async def _run(self, content_only: bool) -> AsyncIterator[Any]:
        chunks: AsyncIterator[bytes] | None = None
        try:
            await self._open()
            response = self._response
            assert response is not None
            if self._stop_requested.is_set():
                return
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                try:
                    await response.aread()
                except httpx.HTTPError as exc:
                    raise self._transport_error(exc) from exc
                for part in self._non_stream_body(response.text):
                    if not content_only:
                        yield part
                    elif part.kind is CONTENT:
                        yield part.text
                return
            feed = self._decoder.feed
            decode = self._chunk
            plain = self._acc.take_plain_content
            outputs = self._outputs
            stop = self._stop_requested
            chunks = response.aiter_bytes()
            try:
                async for raw in chunks:
                    for event in feed(raw):
                        chunk = decode(event)
                        if chunk is None:
                            break
                        text = plain(chunk)
                        if text is None:
                            for out in outputs(chunk, content_only):
                                yield out
                        elif text:
                            yield text if content_only else StreamPart(CONTENT, text)
                    if self._done or stop.is_set():
                        break
            except httpx.HTTPError as exc:
                if stop.is_set():
                    return
                raise self._transport_error(exc) from exc
            if stop.is_set():
                return
            if self._acc.deltas == 0 and self._explain_empty is not None:
                await self._explain_empty()
            self._check_finished()
        except LMStudioError as err:
            self._error = err
            raise
        finally:
            self._finish()
            if chunks is not None:
                # an async generator left suspended at [DONE] would be finalized later, outside any running loop
                await chunks.aclose()  # type: ignore[attr-defined]
            if self._response is not None:
                await self._response.aclose()

    async def text(self) -> str:
        return (await self.result()).content

    async def result(self) -> ChatResult:
        if not self._closed:
            async for _ in self:
                pass
        return self._acc.result(stopped=self.stopped)

    async def aclose(self) -> None:
        self._stop_requested.set()
        gen = self._gen
        if gen is not None and hasattr(gen, "aclose"):
            try:
                await gen.aclose()
            except RuntimeError:  # already running elsewhere: it sees the flag
                pass
        if self._response is not None:
            await self._response.aclose()
        if not self._closed:
            self._finish()


async def _replay(text: str) -> AsyncIterator[str]:
    if text:
        yield text


async def _only_content(parts: AsyncIterator[StreamPart]) -> AsyncIterator[str]:
    async for part in parts:
        if part.kind is CONTENT:
            yield part.text
