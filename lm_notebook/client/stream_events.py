"""A chat stream's reading: each block of the body into text or parts — OpenAI-style chunks, LM Studio's native
named events, or a whole answer where a stream was expected. Runs of plain text events are read at once
(:mod:`~lm_notebook.client.delta_runs`); the rest goes one event at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from lm_notebook.client.accumulator import CONTENT, REASONING, StreamPart
from lm_notebook.client.error_classification import error_message_and_code, is_error_body
from lm_notebook.client.errors import LMStudioStreamError
from lm_notebook.client.native_events import add_native_body
from lm_notebook.client.sse import ServerSentEvent
from lm_notebook.client.stream_errors import StreamErrors
from lm_notebook.client.stream_state import G

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


class StreamEvents(StreamErrors[G]):
    """The body of a stream into what its consumer gets (no I/O)."""

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
