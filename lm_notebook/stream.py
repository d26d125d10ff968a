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
from typing import Any, Literal, NamedTuple

import httpx

from lm_notebook.errors import (
    LMStudioAPIError,
    LMStudioError,
    LMStudioStreamError,
    classify_error,
    error_message_and_code,
    is_error_body,
)
from lm_notebook.http_errors import translate_transport_error
from lm_notebook.sse import ServerSentEvent, SSEDecoder
from lm_notebook.types import ChatResult, Timings, ToolCall, Usage

PartKind = Literal["content", "reasoning", "tool_call"]
CONTENT: PartKind = "content"
REASONING: PartKind = "reasoning"
TOOL_CALL: PartKind = "tool_call"

_OPEN, _CLOSE = "<think>", "</think>"
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


class StreamPart(NamedTuple):
    kind: PartKind
    text: str


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``tag``."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


class TextBuffer:
    """Appends many small strings; memory stays proportional to the text, not to the number of pieces.

    (``io.StringIO`` keeps every written piece alive until it is read, which costs ~60 bytes a chunk.)
    """

    __slots__ = ("_blocks", "_pieces", "chars")
    _COMPACT_EVERY = 512

    def __init__(self) -> None:
        self._blocks: list[str] = []
        self._pieces: list[str] = []
        self.chars = 0

    def write(self, text: str) -> None:
        pieces = self._pieces
        pieces.append(text)
        self.chars += len(text)
        if len(pieces) >= self._COMPACT_EVERY:
            self._blocks.append("".join(pieces))
            pieces.clear()

    def getvalue(self) -> str:
        if self._pieces:
            self._blocks.append("".join(self._pieces))
            self._pieces.clear()
        if len(self._blocks) > 1:
            self._blocks[:] = ["".join(self._blocks)]
        return self._blocks[0] if self._blocks else ""


class ChatAccumulator:
    """Builds a :class:`ChatResult` from chat-completion chunks or a whole answer (pure; no I/O).

    Thinking is kept apart from the answer whichever form the server used: ``reasoning_content`` or ``reasoning``
    fields, or ``<think>…</think>`` at the start of ``content``.
    """

    def __init__(self, *, streaming: bool, started: float | None = None) -> None:
        self.streaming = streaming
        self.started = time.perf_counter() if started is None else started
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self._content = TextBuffer()
        self._reasoning = TextBuffer()
        self._tools: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.stats: dict[str, Any] | None = None
        self.deltas = 0
        # <think> tag state: "start" (only whitespace seen), "think" (inside), "answer" (after / no tags)
        self._tag_state = "start"
        self._tag_tail = ""
        self._lstrip = True

    # --- feeding -------------------------------------------------------------------------------------------------
    def add_chunk(self, chunk: dict[str, Any]) -> list[StreamPart]:
        """Take one parsed ``chat.completion.chunk``; return the parts it adds."""
        if self.id is None:
            self.id = chunk.get("id")
            self.model = chunk.get("model")
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_json(usage)
        choices = chunk.get("choices")
        if not choices:  # the trailing usage chunk has "choices": []
            return []
        choice = choices[0]
        finish = choice.get("finish_reason")
        if finish:
            self.finish_reason = finish
        delta = choice.get("delta")
        if not delta:
            return []
        parts: list[StreamPart] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            self._add_reasoning(reasoning, parts)
        content = delta.get("content")
        if content:
            self._add_content(content, parts)
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            self._add_tool_pieces(tool_calls, parts)
        return parts

    def add_message(self, body: dict[str, Any]) -> None:
        """Take a whole non-streamed ``chat.completion`` answer."""
        self.id = body.get("id")
        self.model = body.get("model")
        self.usage = Usage.from_json(body.get("usage"))
        stats = body.get("stats")
        self.stats = stats if isinstance(stats, dict) and stats else None
        choices = body.get("choices") or [{}]
        choice = choices[0]
        self.finish_reason = choice.get("finish_reason")
        message = choice.get("message") or {}
        parts: list[StreamPart] = []
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if reasoning:
            self._add_reasoning(reasoning, parts)
        if message.get("content"):
            self._add_content(message["content"], parts)
        if message.get("tool_calls"):
            for i, call in enumerate(message["tool_calls"]):
                self._add_tool_pieces([{**call, "index": call.get("index", i)}], parts)
        self.finished_at = time.perf_counter()

    def _mark_first(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def _add_reasoning(self, text: str, parts: list[StreamPart]) -> None:
        self._mark_first()
        self.deltas += 1
        self._reasoning.write(text)
        parts.append(StreamPart(REASONING, text))

    def _add_content(self, text: str, parts: list[StreamPart]) -> None:
        self._mark_first()
        self.deltas += 1
        if self._tag_state == "answer" and not self._lstrip:
            self._content.write(text)
            parts.append(StreamPart(CONTENT, text))
            return
        self._split_think(text, parts)

    def _emit_content(self, text: str, parts: list[StreamPart]) -> None:
        if self._lstrip:
            text = text.lstrip()
            if not text:
                return
            self._lstrip = False
        self._content.write(text)
        parts.append(StreamPart(CONTENT, text))

    def _split_think(self, text: str, parts: list[StreamPart]) -> None:
        text = self._tag_tail + text
        self._tag_tail = ""
        while text:
            if self._tag_state == "start":
                stripped = text.lstrip()
                if not stripped:
                    return
                if stripped.startswith(_OPEN):
                    self._tag_state = "think"
                    text = stripped[len(_OPEN) :]
                    continue
                if _OPEN.startswith(stripped):  # "<thi" so far: wait for more
                    self._tag_tail = stripped
                    return
                self._tag_state = "answer"
                continue
            if self._tag_state == "think":
                end = text.find(_CLOSE)
                if end < 0:
                    keep = _partial_tag_suffix(text, _CLOSE)
                    body, self._tag_tail = (text[:-keep], text[-keep:]) if keep else (text, "")
                    if body:
                        self._reasoning.write(body)
                        parts.append(StreamPart(REASONING, body))
                    return
                if end:
                    self._reasoning.write(text[:end])
                    parts.append(StreamPart(REASONING, text[:end]))
                text = text[end + len(_CLOSE) :]
                self._tag_state = "answer"
                self._lstrip = True
                continue
            self._emit_content(text, parts)
            return

    def _add_tool_pieces(self, pieces: list[dict[str, Any]], parts: list[StreamPart]) -> None:
        for piece in pieces:
            index = piece.get("index", 0)
            slot = self._tools.setdefault(index, {"id": None, "type": "function", "name": "", "arguments": []})
            if piece.get("id"):
                slot["id"] = piece["id"]
            if piece.get("type"):
                slot["type"] = piece["type"]
            fn = piece.get("function") or {}
            if fn.get("name"):
                slot["name"] += fn["name"]
            self.deltas += 1
            args = fn.get("arguments")
            if args:
                slot["arguments"].append(args if isinstance(args, str) else json.dumps(args))
                parts.append(StreamPart(TOOL_CALL, args if isinstance(args, str) else json.dumps(args)))

    def finish(self) -> None:
        if self._tag_tail:
            tail, self._tag_tail = self._tag_tail, ""
            (self._reasoning if self._tag_state == "think" else self._content).write(tail)
        if self.finished_at is None:
            self.finished_at = time.perf_counter()

    def take_plain_content(self, chunk: dict[str, Any]) -> str | None:
        """The hot path: the answer text of a chunk that carries nothing else, or None (use ``add_chunk``)."""
        if self._lstrip or self._tag_state != "answer":
            return None
        choices = chunk.get("choices")
        if not choices:
            return None
        choice = choices[0]
        delta = choice.get("delta")
        if delta is None or len(delta) != 1 or choice.get("finish_reason") is not None or "usage" in chunk:
            return None
        text = delta.get("content")
        if text is None:
            return None
        self.deltas += 1
        self._content.write(text)
        return text  # type: ignore[no-any-return]

    @property
    def content_chars(self) -> int:
        return self._content.chars

    # --- reading -------------------------------------------------------------------------------------------------
    @property
    def content(self) -> str:
        return self._content.getvalue()

    @property
    def reasoning(self) -> str:
        return self._reasoning.getvalue()

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=s["id"], name=s["name"], arguments="".join(s["arguments"]), type=s["type"], index=i)
            for i, s in sorted(self._tools.items())
        )

    def timings(self) -> Timings:
        end = self.finished_at if self.finished_at is not None else time.perf_counter()
        total = end - self.started
        ttft = (self.first_token_at - self.started) if (self.first_token_at is not None and self.streaming) else None
        tokens = self.usage.completion_tokens if self.usage and self.usage.completion_tokens else None
        if tokens is None and self.streaming:
            tokens = self.deltas
        if self.first_token_at is not None and self.streaming:
            # the first token arrives at TTFT; the rate is of the ones after it (one token has no rate)
            gen = end - self.first_token_at
            tokens = tokens - 1 if tokens else tokens
        else:
            gen = total
        tps = (tokens / gen) if tokens and gen > 0 else None
        if self.stats and not self.streaming:
            ttft = self.stats.get("time_to_first_token", ttft)
            tps = self.stats.get("tokens_per_second", tps)
        return Timings(time_to_first_token=ttft, total=total, tokens_per_second=tps)

    def result(self, *, stopped: bool = False) -> ChatResult:
        return ChatResult(
            content=self.content,
            reasoning=self.reasoning.strip(),  # <think>\n…\n</think> keeps newlines that are not thinking
            finish_reason=self.finish_reason,
            usage=self.usage,
            model=self.model,
            tool_calls=self.tool_calls(),
            timings=self.timings(),
            streaming=self.streaming,
            id=self.id,
            stopped=stopped,
            stats=self.stats,
        )


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

    def _check_finished(self) -> None:
        """The body ended (at ``[DONE]`` or not): fine after a finish_reason, else the answer was cut or broken."""
        self._decoder.flush()
        if self._acc.finish_reason is not None:
            self._done = True
            return
        saw_done, self._done = self._done, False
        if saw_done:
            # OpenAI-style servers say why an answer ended before [DONE]; without it the answer was cut short
            raise LMStudioStreamError(
                f"The server ended the answer after {self._acc.content_chars} characters without saying why (no "
                "finish_reason before [DONE]): it was cut short. llama.cpp's server does this to serve a waiting "
                "request unless started with --interrupt_requests False. The partial answer is kept (.partial); "
                "retry the request.",
                partial=self.partial(),
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

    def _non_stream_body(self, body: Any) -> list[StreamPart]:
        """A JSON answer where a stream was expected (an error, or a server that ignored ``stream``)."""
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
        opener: Callable[[], httpx.Response],
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
        self._response = self._opener()

    def _run(self, content_only: bool) -> Iterator[Any]:
        self._reader_thread = threading.get_ident()
        chunks: Iterator[bytes] | None = None
        try:
            self._open()
            response = self._response
            assert response is not None
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                response.read()
                parts = self._non_stream_body(response.json())
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
        if reader is not None and reader != threading.get_ident() and not self._closed:
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
        response = self._response
        network = response.extensions.get("network_stream") if response is not None else None
        sock = network.get_extra_info("socket") if network is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


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
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                await response.aread()
                for part in self._non_stream_body(response.json()):
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
