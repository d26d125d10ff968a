"""What the two chat streams share (:class:`~lm_notebook.client.stream.ChatStream` and its async twin): the
opening and ending of the request, written once as flows (see :mod:`lm_notebook.client.flows`), over the stream's
state (:mod:`~lm_notebook.client.stream_state`), reading (:mod:`~lm_notebook.client.stream_events`) and errors
(:mod:`~lm_notebook.client.stream_errors`). No I/O here: the twins read the bytes and close.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from lm_notebook.client.accumulator import CONTENT
from lm_notebook.client.errors import ContextLengthExceededError, LMStudioError
from lm_notebook.client.flows import Flow, Step
from lm_notebook.client.stream_connection import OnConnect, Trace, connect_trace, shut_down
from lm_notebook.client.stream_errors import EXPLAINED_IN_BAND
from lm_notebook.client.stream_events import StreamEvents
from lm_notebook.client.stream_state import G, StreamSource
from lm_notebook.client.transport_errors import translated

# re-exported: what the twins and the clients take from here
__all__ = [
    "EXPLAINED_IN_BAND",
    "OnConnect",
    "OnToken",
    "ReadStream",
    "StreamBase",
    "StreamSource",
    "TokenRelay",
    "Trace",
    "connect_trace",
    "shut_down",
]

OnToken = Callable[[str, str], object]


@dataclass(frozen=True, slots=True)
class ReadStream(Step):
    """Read ``stream`` to its end, telling ``on_token(token, text so far)`` each piece; the answer is its result
    (``send_message`` with a callback)."""

    stream: StreamBase[Any]
    on_token: OnToken | None



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


class StreamBase(StreamEvents[G]):
    """Everything both stream twins share: state, event handling, errors and the flows (no I/O)."""

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
