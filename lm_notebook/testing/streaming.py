"""Server-sent events for a generation: chunk encoding, pacing, batching, and the in-stream faults.

Without pacing, many chunks go out in one socket write (up to ``BATCH_BYTES``): a client benchmark must never be
limited by the fake server. With pacing, chunk *i* is due ``ttft + i / tokens_per_second`` after the start, and
everything due is written together, so timing stays right even when the event loop is late. Every pause is taken on
the server's :class:`~lm_notebook.testing.clock.Clock`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lm_notebook.testing.clock import Clock
from lm_notebook.testing.faults import Fault, Quirks
from lm_notebook.testing.generation import Generation
from lm_notebook.testing.wire import ChunkedBody

BATCH_BYTES = 64 * 1024
SPLIT_PAUSE = 0.05  # long enough that the two halves of a character arrive in two reads on a real clock
Event = tuple[bool, bytes]  # (counts as a token chunk, bytes)


def _dumps(value: Any) -> bytes:
    # LM Studio sends UTF-8 as is (not \\u escapes), which is what makes split characters possible
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Framing:
    eol: bytes

    def data(self, payload: bytes) -> bytes:
        return b"data: " + payload + self.eol + self.eol

    def comment(self, text: str) -> bytes:
        return b": " + text.encode() + self.eol + self.eol

    def event(self, name: str, payload: bytes) -> bytes:
        return b"event: " + name.encode() + self.eol + b"data: " + payload + self.eol + self.eol

    @property
    def done(self) -> bytes:
        return self.data(b"[DONE]")


def chat_events(
    gen: Generation, *, chunk_id: str, created: int, model: str, framing: Framing,
    usage: dict[str, Any] | None, completion: bool = False, keep_alive_every: int = 0,
) -> Iterator[Event]:
    """Every event of a chat (or text-completion) stream, in LM Studio's order."""
    meta = _dumps({"id": chunk_id, "object": "text_completion" if completion else "chat.completion.chunk",
                   "created": created, "model": model, "system_fingerprint": model})[:-1]
    eol2 = framing.eol + framing.eol
    if completion:
        prefix = b"data: " + meta + b',"choices":[{"index":0,"text":'
        suffix = b',"logprobs":null,"finish_reason":null}]}' + eol2
    else:
        prefix = b"data: " + meta + b',"choices":[{"index":0,"delta":'
        suffix = b',"logprobs":null,"finish_reason":null}]}' + eol2
    if keep_alive_every:
        yield False, framing.comment("keep-alive")
    first = True
    for count, (name, token) in enumerate(gen.deltas, 1):
        if completion:
            yield True, prefix + _dumps(token) + suffix
        elif first:
            yield True, prefix + b'{"role":"assistant","' + name.encode() + b'":' + _dumps(token) + b"}" + suffix
        else:
            yield True, prefix + b'{"' + name.encode() + b'":' + _dumps(token) + b"}" + suffix
        first = False
        if keep_alive_every and count % keep_alive_every == 0:
            yield False, framing.comment("keep-alive")
    for call in gen.tool_calls:
        head: dict[str, Any] = {"tool_calls": [{"index": call.index, "id": call.id, "type": "function",
                                                "function": {"name": call.name, "arguments": ""}}]}
        if first:
            head = {"role": "assistant", **head}
            first = False
        yield True, prefix + _dumps(head) + suffix
        for piece in call.pieces:
            piece_delta = {"tool_calls": [{"index": call.index, "function": {"arguments": piece}}]}
            yield True, prefix + _dumps(piece_delta) + suffix
    final = b'""' if completion else b"{}"
    yield False, (prefix + final + b',"logprobs":null,"finish_reason":' + _dumps(gen.finish_reason) + b"}]}" + eol2)
    if usage is not None:
        yield False, framing.data(meta + b',"choices":[],"usage":' + _dumps(usage) + b"}")
    yield False, framing.done


async def pause(clock: Clock, seconds: float, client_left: asyncio.Future[None]) -> bool:
    """Wait ``seconds`` on ``clock``, or less when the client leaves meanwhile (``client_left`` is done then);
    False when it has left."""
    if client_left.done():
        return False
    woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not woken.done():
            woken.set_result(None)

    timer = clock.call_later(seconds, wake)
    try:
        await asyncio.wait((woken, client_left), return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()  # off the clock at once when the client leaves first
    return not client_left.done()


def _split_point(data: bytes) -> int:
    """An index inside the first multi-byte UTF-8 character of ``data`` (0 when there is none)."""
    for i, byte in enumerate(data):
        if byte >= 0xC0:
            return i + 1
    return 0


class StreamWriter:
    """Writes events to a chunked body with pacing and the in-stream faults; stops when the client goes away
    (``client_gone`` tells)."""

    def __init__(
        self, body: ChunkedBody, *, ttft: float, tokens_per_second: float, quirks: Quirks, framing: Framing,
        faults: Iterable[Fault], error_payload: Callable[[], dict[str, Any]], clock: Clock,
        client_left: asyncio.Future[None], after_error: Callable[[int], bytes] | None = None,
    ) -> None:
        self.body = body
        self.after_error = after_error  # what follows an in-stream error, given the tokens sent (native: chat.end)
        self.clock = clock
        self.client_left = client_left
        self.client_gone = False
        self.ttft = ttft
        self.interval = 1.0 / tokens_per_second if tokens_per_second > 0 else 0.0
        self.framing = framing
        self.split_pending = quirks.split_multibyte
        self.error_payload = error_payload
        self.faults: dict[int, list[Fault]] = {}
        for fault in faults:
            self.faults.setdefault(max(0, fault.after_chunks), []).append(fault)
        self.batch: list[bytes] = []
        self.size = 0
        self.tokens_sent = 0

    async def _flush(self) -> bool:
        """Write what is batched; False when the client has gone away."""
        if self.batch:
            self.body.write(b"".join(self.batch))
            self.batch.clear()
            self.size = 0
        try:
            await self.body.flush()
        except ConnectionError:
            self.client_gone = True
            return False
        if self.body.closed or self.client_left.done():
            self.client_gone = True
            return False
        return True

    async def _pause(self, seconds: float) -> bool:
        """Flush, then wait on the clock; False when the client has gone (before or during the wait)."""
        if not await self._flush():
            return False
        if not await pause(self.clock, seconds, self.client_left):
            self.client_gone = True
            return False
        return True

    async def _apply_faults(self, faults: list[Fault]) -> bool:
        """Run the faults due now; False when the stream must end here."""
        for fault in faults:
            if fault.kind == "stall":
                if not await self._pause(fault.seconds):
                    return False
            elif fault.kind == "malformed_chunk":
                self.batch.append(self.framing.data(b'{"id":"chatcmpl-broken","object":"chat.completion.chunk",'
                                                    b'"choices":[{"index":0,"delta":{"content":"oops'))
            elif fault.kind == "drop":
                await self._flush()
                self.body.abort()
                return False
            elif fault.kind == "stream_error":
                payload = _dumps(self.error_payload())
                self.batch.append(self.framing.event("error", payload) if fault.form == "event"
                                  else self.framing.data(payload))
                if self.after_error is not None:
                    self.batch.append(self.after_error(self.tokens_sent))
                if await self._flush():
                    await self._finish()
                return False
        return True

    async def _finish(self) -> None:
        try:
            await self.body.finish()
        except ConnectionError:
            self.client_gone = True

    async def send(self, events: Iterable[Event]) -> None:
        start = self.clock.now()
        paced = self.ttft > 0 or self.interval > 0
        for is_token, data in events:
            if self.faults:
                due = self.faults.pop(self.tokens_sent, None) if is_token else self._all_remaining_faults()
                if due and not await self._apply_faults(due):
                    return
            if is_token:
                if paced:
                    delay = start + self.ttft + self.tokens_sent * self.interval - self.clock.now()
                    if delay > 0 and not await self._pause(delay):
                        return  # the client went away: stop generating
                self.tokens_sent += 1
            if self.split_pending:
                cut = _split_point(data)
                if cut:
                    self.split_pending = False
                    self.batch.append(data[:cut])
                    if not await self._pause(SPLIT_PAUSE):
                        return
                    data = data[cut:]
            self.batch.append(data)
            self.size += len(data)
            if self.size >= BATCH_BYTES and not await self._flush():
                return  # the client went away: stop generating
        if await self._flush():
            await self._finish()

    def _all_remaining_faults(self) -> list[Fault]:
        # faults set after more chunks than the answer has happen before its final chunk
        due = [f for key in sorted(self.faults) for f in self.faults[key]]
        self.faults.clear()
        return due
