"""A chat stream's state, as both twins keep it: what was sent (and on which route), what arrived so far, and
whether it finished, failed or was stopped; and :class:`StreamSource`, what a stream needs from its client. The
reading (:mod:`~lm_notebook.client.stream_events`) and the errors (:mod:`~lm_notebook.client.stream_errors`) build
on it; :class:`~lm_notebook.client.stream_base.StreamBase` adds the run.
"""

from __future__ import annotations

import threading
from typing import Any, Generic, Protocol, TypeVar

import httpx

from lm_notebook.client.accumulator import ChatAccumulator
from lm_notebook.client.delta_runs import RunReader
from lm_notebook.client.error_explanation import Explainer
from lm_notebook.client.errors import EndpointNotSupportedError, LMStudioError
from lm_notebook.client.flows import Flow
from lm_notebook.client.native_events import NativeEvents
from lm_notebook.client.native_route import chat_path, is_native_payload
from lm_notebook.client.native_types import StreamProgress
from lm_notebook.client.request_parts import NO_PARTS, RequestParts
from lm_notebook.client.sse import SSEDecoder
from lm_notebook.client.stream_connection import Trace
from lm_notebook.client.types import ChatResult

G = TypeVar("G")  # how the twin hands out what it reads: an Iterator (sync) or an AsyncIterator


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


class StreamState(Generic[G]):
    """What a stream holds and shows: the request, the answer so far, how it ended (no I/O)."""

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

    def _finish(self) -> None:
        self._acc.finish()
        self._closed = True

    def _replay(self) -> list[str]:
        """What iterating a finished stream gives again: its text, in one piece."""
        return [self._acc.content] if self._acc.content else []

