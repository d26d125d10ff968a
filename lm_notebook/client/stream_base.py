"""What the two chat streams share (:class:`~lm_notebook.client.stream.ChatStream` and its async twin): reading
events into text and parts, in-band errors, the checks at the end, and the opening and ending of the request
written once as flows (see :mod:`lm_notebook.client.flows`). No I/O here: the twins read the bytes and close.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import httpx

from lm_notebook.client.accumulator import CONTENT, REASONING, ChatAccumulator, StreamPart
from lm_notebook.client.delta_runs import RunReader
from lm_notebook.client.error_classification import classify_error, error_message_and_code, is_error_body
from lm_notebook.client.error_explanation import Explainer, as_not_loaded, overflow_with_model_facts
from lm_notebook.client.errors import (
    ContextLengthExceededError,
    EndpointNotSupportedError,
    LMStudioAPIError,
    LMStudioError,
    LMStudioStreamError,
    ModelNotFoundError,
    NoModelLoadedError,
)
from lm_notebook.client.flows import Flow, Step
from lm_notebook.client.native_events import NativeEvents, add_native_body
from lm_notebook.client.native_route import chat_path, is_native_payload
from lm_notebook.client.native_types import StreamProgress
from lm_notebook.client.request_parts import NO_PARTS, RequestParts
from lm_notebook.client.routes import token_sent
from lm_notebook.client.sse import ServerSentEvent, SSEDecoder
from lm_notebook.client.transport_errors import translated
from lm_notebook.client.types import ChatResult

# errors a stream may carry in band that the model list explains further (see StreamBase._explained)
EXPLAINED_IN_BAND = (ContextLengthExceededError, ModelNotFoundError, NoModelLoadedError)
OnConnect = Callable[[Any], None]  # told the httpcore network stream of a stream's connection
Trace = Callable[[str, dict[str, Any]], Any]  # an httpx ``trace`` extension (a coroutine function for async)
OnToken = Callable[[str, str], object]
G = TypeVar("G")  # how the twin hands out what it reads: an Iterator (sync) or an AsyncIterator

_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _plain_delta(data: str) -> str | None:
    """The text of a native ``message.delta`` that carries nothing else, or None (then it takes the general way)."""
    try:
        body, end = _scan_json(data, 0)  # the C scanner directly: json.loads adds two Python-level calls and a regex
    except (StopIteration, ValueError):
        return None
    if end != len(data) or type(body) is not dict or len(body) != 2:
        return None
    text = body.get("content")
    return text if type(text) is str and body.get("type") == "message.delta" else None


class StreamSource(Explainer, Protocol):
    """What a stream needs from its client: where it talks to, the flows that open it and explain an empty one, and
    its quick probe (an in-band error is explained with the model list, as an error answer is)."""

    timeout: httpx.Timeout

    def _open_stream(self, payload: dict[str, Any], trace: Trace | None) -> Flow[httpx.Response]: ...

    def _explain_empty_stream(self, payload: dict[str, Any]) -> Flow[None]: ...

    def _takes_native(
        self, trace: Trace | None = None, stop: threading.Event | None = None, woken: threading.Event | None = None
    ) -> Flow[bool]: ...

    def _native_refused(self, err: EndpointNotSupportedError, payload: dict[str, Any]) -> EndpointNotSupportedError: ...

    def _closed_error(self, partial: ChatResult | None = None) -> LMStudioError | None: ...


@dataclass(frozen=True, slots=True)
class ReadStream(Step):
    """Read ``stream`` to its end, telling ``on_token(token, text so far)`` each piece; the answer is its result
    (``send_message`` with a callback)."""

    stream: StreamBase[Any]
    on_token: OnToken | None


def connect_trace(
    on_connect: OnConnect, on_sent: Callable[[], None] | None = None, *, asynchronous: bool = False
) -> Trace:
    """An httpx ``trace`` extension that tells ``on_connect`` the connection's network stream as soon as it connects
    (and again, the TLS one, after a TLS handshake): a Stop from another thread can then wake a request still
    waiting for its answer (a model load can take minutes), and the stream reads its body through it. ``on_sent`` is
    told when the request has gone out (its body written), before its answer is waited for. The async client's
    transport awaits its trace: ``asynchronous`` makes it a coroutine function."""

    def trace(event: str, info: dict[str, Any]) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            network = info.get("return_value")
            if network is not None:
                on_connect(network)
        elif on_sent is not None and event.endswith(".send_request_body.complete"):
            on_sent()

    if not asynchronous:
        return trace

    async def atrace(event: str, info: dict[str, Any]) -> None:
        trace(event, info)

    return atrace


def shut_down(sock: socket.socket | None, response: httpx.Response | None) -> None:
    """Shut down ``sock``, else the socket ``response`` reads from: the server sees the client leave now, and a read
    blocked on it (in another thread, or awaited later) wakes at once."""
    if sock is None and response is not None:
        network = response.extensions.get("network_stream")
        sock = network.get_extra_info("socket") if network is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class TokenRelay:
    """Calls ``on_token(token, text so far)`` for each piece of a streamed answer (``send_message``'s callback)."""

    __slots__ = ("_on_token", "_text")

    def __init__(self, on_token: OnToken | None) -> None:
        self._on_token = on_token
        self._text = ""

    def __call__(self, token: str) -> None:
        self._text += token
        if self._on_token is not None:
            self._on_token(token, self._text)


class StreamBase(Generic[G]):
    """Everything both stream twins share: state, event handling, errors and the flows (no I/O)."""

    def __init__(self, source: StreamSource, payload: dict[str, Any], parts: RequestParts = NO_PARTS) -> None:
        self._source = source
        self._parts = parts  # images sent, the answer's schema: what the result adds
        self._base_url = source.base_url
        self._read_timeout = source.timeout.read
        self._model: str | None = payload.get("model")
        self._acc = ChatAccumulator(streaming=True)
        self._decoder = SSEDecoder()
        self._done = False  # [DONE] or a clean end was seen
        self._started = False
        self._closed = False
        self._stop_requested = threading.Event()
        self._error: LMStudioError | None = None
        self._response: httpx.Response | None = None
        self._whole: list[bytes] | None = None  # the body, when the server answered without streaming
        self._gen: G | None = None
        self._content_only = True
        # route="auto" on a server not known yet: the native body to send instead, if it has the native route
        self._native_once_known: dict[str, Any] | None = None
        self._waking = threading.Event()  # a Stop sets it: ends a wait for another request's route probe
        self._take(payload)

    def _take(self, payload: dict[str, Any]) -> None:
        """Send ``payload``: LM Studio 0.4's native route reads named events instead of chunks."""
        self._payload = payload
        self._native = (NativeEvents(self._acc, payload.get("max_output_tokens")) if is_native_payload(payload)
                        else None)
        self._path = chat_path(payload)
        self._acc.route = "native" if self._native is not None else "openai"
        self._runs = RunReader.of_route(self._acc, lambda: self._done, native=self._native is not None)
        self._merge = False  # one piece of text a block (coalesce_reads)
        self._body_started = False
        self.reads = 0  # network reads of the body so far (what coalescing saves)

    @property
    def done(self) -> bool:
        return self._done

    @property
    def stopped(self) -> bool:
        """True once the stream was closed (or its iteration abandoned) before the server finished; False before it
        starts, while it streams, after it finished or failed."""
        return self._closed and not self._done and self._error is None

    @property
    def deltas(self) -> int:
        """The pieces of answer, thinking and tool-call text received so far (about one token each)."""
        return self._acc.deltas

    @property
    def content(self) -> str:
        """The answer text so far."""
        return self._acc.content

    @property
    def reasoning(self) -> str:
        return self._acc.reasoning

    def _final(self) -> ChatResult:
        """The result once the stream has ended: with the images it sent and, with a schema, the parsed answer
        (``AnswerFormatError`` when it breaks the schema). An answer that failed is left as it came."""
        result = self._acc.result(stopped=self.stopped)
        return result if self._error is not None else self._parts.finish(result)
    @property
    def progress(self) -> StreamProgress | None:
        """The latest progress of a stage before the answer (a model load, the prompt's reading; native route
        only), None before any."""
        return self._acc.progress

    def partial(self) -> ChatResult:
        """A snapshot of what has arrived so far; its ``stopped`` is the stream's (True only once stopped)."""
        return self._acc.result(stopped=self.stopped)

    # --- the run, as the twins drive it ----------------------------------------------------------------------
    def _run(self) -> G:
        raise NotImplementedError

    def _reader(self, content_only: bool) -> G:
        """The one reading of the stream, started for text (``content_only``) or for every part."""
        if self._gen is None:
            self._gen, self._content_only = self._run(), content_only
        elif self._content_only and not content_only:
            raise RuntimeError("this stream is already being iterated for text; call iter_parts() first")
        return self._gen

    def _probe_trace(self) -> Trace | None:
        """The trace the route probes go with (the sync stream's: a Stop can shut their socket down)."""
        return None

    def _opening(self, trace: Trace | None) -> Flow[httpx.Response | None]:
        """Send the request, once (whichever comes first: ``with`` or iteration); None when a Stop came first."""
        if self._started:
            return self._response
        self._started = True
        native, self._native_once_known = self._native_once_known, None
        try:
            if native is not None and (yield from self._source._takes_native(
                self._probe_trace(), self._stop_requested, self._waking,
            )):
                self._take(native)
        except LMStudioError:
            if self._stop_requested.is_set():  # the Stop broke the probe
                return None
            raise
        if self._stop_requested.is_set():  # stopped while the client asked which route the server has
            return None
        self._acc.started = time.perf_counter()
        try:
            self._response = yield from self._source._open_stream(self._payload, trace)
        except LMStudioError:
            if self._stop_requested.is_set():  # the wake-up broke the pending request: that is a stop, not a fault
                return None
            raise
        return self._response

    def _taker(self, response: httpx.Response) -> Callable[[bytes], Iterator[Any]] | None:
        """How to take each block of the body (None: a Stop came first, read nothing)."""
        if self._stop_requested.is_set():
            return None
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return self._events if self._native is None else self._native_events
        self._whole = []
        return self._keep_whole

    def _events(self, raw: bytes) -> Iterator[Any]:
        """What one block of the event stream gives the consumer: text deltas, or every part (``iter_parts``). Runs
        of plain text events are read at once (:mod:`~lm_notebook.client.delta_runs`)."""
        return self._runs.read(raw, self._decoder, self._chunk_events, content_only=self._content_only,
                               merge=self._merge)

    def _native_events(self, raw: bytes) -> Iterator[Any]:
        """What one block of a native stream gives the consumer (``chat.end`` ends it; an ``error`` before it is
        raised there, with whatever ``chat.end`` carried as the partial answer)."""
        return self._runs.read(raw, self._decoder, self._named_events, content_only=self._content_only,
                               merge=self._merge)

    def _chunk_events(self, raw: bytes) -> Iterator[Any]:
        """``_events`` the general way: each event on its own."""
        content_only = self._content_only
        plain = self._acc.take_plain_content
        for event in self._decoder.feed(raw):
            chunk = self._chunk(event)
            if chunk is None:
                break
            text = plain(chunk)
            if text is None:
                yield from self._outputs(chunk, content_only)
            else:
                self._runs.learn(event.data, text, chunk)
                if text:
                    yield text if content_only else StreamPart(CONTENT, text)

    def _named_events(self, raw: bytes) -> Iterator[Any]:
        """``_native_events`` the general way: each event on its own."""
        native = self._native
        assert native is not None
        content_only = self._content_only
        plain = self._acc.take_plain_text
        for event in self._decoder.feed(raw):
            if event.event == "message.delta":  # the hot path: answer text and nothing else
                text = _plain_delta(event.data)
                if text is not None and plain(text):
                    self._runs.learn(event.data, text, None)
                    if text:
                        yield text if content_only else StreamPart(CONTENT, text)
                    continue
            data = self._native_data(event)
            name = event.event if event.event != "message" else str(data.get("type", ""))
            for part in native.add(name, data):
                if not content_only:
                    yield part
                elif part.kind is CONTENT:
                    yield part.text
            if native.ended:
                self._done = True
                if native.error is not None:
                    raise self._in_band_error_body(native.error)
                break

    def _native_data(self, event: ServerSentEvent) -> dict[str, Any]:
        try:
            data = json.loads(event.data)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise LMStudioStreamError(
                f"LM Studio sent a malformed {event.event!r} event after {self._acc.content_chars} characters: "
                f"{event.data[:200]!r}. The partial answer is kept (.partial); retry the request.",
                partial=self.partial(),
            )
        return data

    def _keep_whole(self, raw: bytes) -> Iterator[Any]:
        assert self._whole is not None
        self._whole.append(raw)
        return iter(())

    @property
    def _ended(self) -> bool:
        """Read no further: ``[DONE]`` arrived, or a Stop."""
        return self._done or self._stop_requested.is_set()

    def _ending(self) -> Flow[list[Any]]:
        """After the body: a whole answer's parts; or the checks that the stream finished (an empty stream is
        explained by a probe first); nothing after a Stop."""
        if self._response is None or self._stop_requested.is_set():
            return []
        closed = self._source._closed_error(self.partial())
        if closed is not None:  # the body ended because the client was closed under it
            raise closed
        if self._whole is not None:
            text = b"".join(self._whole).decode(self._response.encoding or "utf-8", errors="replace")
            try:
                parts = self._non_stream_body(text)
            except ContextLengthExceededError as err:
                raise (yield from self._explained(err)) from None
            return [p.text for p in parts if p.kind is CONTENT] if self._content_only else parts
        if self._native is not None:
            self._check_native_finished()
            return []
        if self._acc.deltas == 0:
            # raises the server's reason for an empty stream, if it has one
            yield from self._source._explain_empty_stream(self._payload)
        self._check_finished()
        return []

    def _explained(self, err: LMStudioAPIError) -> Flow[LMStudioAPIError]:
        """An error the server sent with its 200 (in the stream, or as the whole body) with what the model list
        adds, as ``chat()`` gets it: an overflow's contexts (else its advice could name a context larger than the
        model's largest); a model the list says is downloaded but not loaded (the native route's ``error`` event)."""
        model = getattr(err, "model", None) or self._model
        if isinstance(err, ContextLengthExceededError):
            return (yield from overflow_with_model_facts(self._source, err, model))
        if model is not None and isinstance(err, (ModelNotFoundError, NoModelLoadedError)):
            return (yield from as_not_loaded(self._source, err, model)) or err
        return err

    def _reading(self) -> AbstractContextManager[None]:
        """Around reading the body: httpx errors become ours, keeping the partial answer (none after a Stop)."""
        return translated(
            base_url=self._base_url,
            read_timeout=self._read_timeout,
            partial=self.partial,
            unless=self._stop_requested,
            closed=self._source._closed_error,
        )

    @contextmanager
    def _recording(self) -> Iterator[None]:
        """Around the whole run: keep the error it ends with, and finish the answer however it ends."""
        try:
            yield
        except LMStudioError as err:
            self._error = err
            raise
        finally:
            self._finish()

    def _finish(self) -> None:
        self._acc.finish()
        self._closed = True

    def _replay(self) -> list[str]:
        """What iterating a finished stream gives again: its text, in one piece."""
        return [self._acc.content] if self._acc.content else []

    # --- events to parts, errors ---------------------------------------------------------------------------------
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
        return self._in_band_error_body(body)

    def _in_band_error_body(self, body: Any) -> LMStudioError:
        message, code = error_message_and_code(body)
        if not message and isinstance(body, dict):
            message = str(body.get("message", ""))
        partial = self.partial()
        err = self._classified(body, message, code, partial)
        if type(err) is not LMStudioAPIError:
            return err
        if self._native is not None and not partial.content and not partial.reasoning:
            return err  # refused before any answer (a bad previous_response_id): as chat() says it
        return LMStudioStreamError(
            f"LM Studio reported an error mid-answer after {len(partial.content)} characters: "
            f"{message.rstrip().rstrip('.')}. "
            "The partial answer is kept (.partial).",
            partial=partial,
            body=body,
        )

    def _classified(self, body: Any, message: str, code: str | None, partial: ChatResult | None) -> LMStudioAPIError:
        """An error the server sent with its 200 (in the stream, or as the whole body)."""
        err = classify_error(
            status_code=200,
            body=body,
            message=message,
            code=code,
            base_url=self._base_url,
            method="POST",
            path=self._path,
            model=self._model,
            partial=partial,
            max_tokens=self._payload.get("max_tokens", self._payload.get("max_output_tokens")),
            token_sent=self._response is not None and token_sent(self._response.request),
        )
        if self._native is not None and isinstance(err, EndpointNotSupportedError):
            return self._source._native_refused(err, self._payload)
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
            raise LMStudioStreamError(
                f"The server ended the answer after {self._acc.content_chars} characters without saying why (no "
                "finish_reason before [DONE]): it was cut short. llama.cpp's server does this to serve a waiting "
                "request unless started with --interrupt_requests False. The partial answer is kept (.partial); "
                "retry the request.",
                partial=self.partial(),
                dropped=True,
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

    def _check_native_finished(self) -> None:
        """A native stream's body ended: fine after ``chat.end``; an ``error`` without it is raised now."""
        self._decoder.flush()
        native = self._native
        assert native is not None
        if native.error is not None:
            raise self._in_band_error_body(native.error)
        if native.ended:
            self._done = True
            return
        raise LMStudioStreamError(
            f"LM Studio closed the native stream after {self._acc.content_chars} characters without its chat.end "
            "event: the answer was cut short. The partial answer is kept (.partial); retry the request.",
            partial=self.partial(),
        )

    def _non_stream_body(self, text: str) -> list[StreamPart]:
        """A whole answer where a stream was expected (an error, or a server that ignored ``stream``)."""
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = None
        native_body = self._native is not None and isinstance(body, dict) and "output" in body
        if not isinstance(body, dict) or not (is_error_body(body) or "choices" in body or native_body):
            raise LMStudioStreamError(
                f"The server at {self._base_url} answered 200 with something that is neither a stream nor a chat "
                f"answer ({text[:120]!r}). Is the base URL right, and is nothing (a proxy, another program) in the "
                "way?",
                partial=self.partial(),
            )
        if is_error_body(body):
            raise self._classified(body, *error_message_and_code(body), None)
        if native_body:
            add_native_body(self._acc, body, max_output_tokens=self._payload.get("max_output_tokens"))
        else:
            self._acc.add_message(body)
        self._done = True
        parts = []
        if self._acc.reasoning:
            parts.append(StreamPart(REASONING, self._acc.reasoning))
        if self._acc.content:
            parts.append(StreamPart(CONTENT, self._acc.content))
        return parts
