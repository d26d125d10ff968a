"""Stand-ins for the client tests: LM Studio's answers through ``httpx.MockTransport``, and one harness that drives
``LMStudioClient`` and ``AsyncLMStudioClient`` with the same calls, so every case runs against both."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from lm_notebook import AsyncLMStudioClient, ChatResult, LMStudioClient, LMStudioError

Handler = Callable[[httpx.Request], httpx.Response]


def chunk(content: str | None = None, *, finish: str | None = None, role: bool = False, **delta: Any) -> bytes:
    d: dict[str, Any] = dict(delta)
    if role:
        d["role"] = "assistant"
    if content is not None:
        d["content"] = content
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1747835957,
        "model": "m",
        "system_fingerprint": "m",
        "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def usage_chunk(prompt: int, completion: int) -> bytes:
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def sse_stream(texts: Iterable[str], *, usage: bool = True) -> list[bytes]:
    texts = list(texts)
    out = [chunk(t, role=(i == 0)) for i, t in enumerate(texts)]
    out.append(chunk(finish="stop"))
    if usage:
        out.append(usage_chunk(5, len(texts)))
    out.append(DONE)
    return out


def completion(content: str = "Hello!", **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-gb1t",
        "object": "chat.completion",
        "created": 1730913210,
        "model": "m",
        "choices": [
            {"index": 0, "logprobs": None, "finish_reason": "stop",
             "message": {"role": "assistant", "content": content, **message}}
        ],
        "usage": {"prompt_tokens": 24, "completion_tokens": 53, "total_tokens": 77},
        "system_fingerprint": "m",
    }


class RecordingStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body given piece by piece; remembers whether it was closed. An exception in ``pieces`` is raised
    when reached (to drop a connection or interrupt mid-stream)."""

    def __init__(self, pieces: Iterable[bytes | BaseException]) -> None:
        self.pieces = list(pieces)
        self.closed = False
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for p in self.pieces:
            if isinstance(p, BaseException):
                raise p
            self.sent += 1
            yield p

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for p in self.pieces:
            if isinstance(p, BaseException):
                raise p
            self.sent += 1
            yield p

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def sse_response(pieces: Iterable[bytes | BaseException], stream: RecordingStream | None = None) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, stream=stream or RecordingStream(pieces)
    )


@dataclass
class Outcome:
    """What a streamed call produced: the deltas seen, then the result or the error."""

    deltas: list[str] = field(default_factory=list)
    result: ChatResult | None = None
    error: LMStudioError | None = None


class Harness:
    """Drives the sync or async client with one set of calls (``mode`` is "sync" or "async")."""

    def __init__(self, mode: str, handler: Handler, **client_kw: Any) -> None:
        self.mode = mode
        self.handler = handler
        self.client_kw = client_kw
        self.requests: list[httpx.Request] = []

    def _record(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def sync_client(self) -> LMStudioClient:
        return LMStudioClient(transport=httpx.MockTransport(self._record), **self.client_kw)

    def async_client(self) -> AsyncLMStudioClient:
        return AsyncLMStudioClient(transport=httpx.MockTransport(self._record), **self.client_kw)

    def call(self, method: str, *args: Any, **kw: Any) -> Any:
        if self.mode == "sync":
            with self.sync_client() as c:
                return getattr(c, method)(*args, **kw)

        async def run() -> Any:
            async with self.async_client() as c:
                return await getattr(c, method)(*args, **kw)

        return asyncio.run(run())

    def stream(self, messages: Any = "hi", *, stop_after: int | None = None, **kw: Any) -> Outcome:
        out = Outcome()
        kw.setdefault("model", "m")
        if self.mode == "sync":
            with self.sync_client() as c:
                s = c.stream_chat(messages, **kw)
                try:
                    with s:
                        for d in s:
                            out.deltas.append(d)
                            if stop_after is not None and len(out.deltas) >= stop_after:
                                break
                    out.result = s.result()
                except LMStudioError as err:
                    out.error = err
            return out

        async def run() -> None:
            async with self.async_client() as c:
                s = c.stream_chat(messages, **kw)
                try:
                    async with s:
                        async for d in s:
                            out.deltas.append(d)
                            if stop_after is not None and len(out.deltas) >= stop_after:
                                break
                    out.result = await s.result()
                except LMStudioError as err:
                    out.error = err

        asyncio.run(run())
        return out

    def body(self, i: int = -1) -> Any:
        return json.loads(self.requests[i].content)


class CountingTransport(httpx.AsyncBaseTransport):
    """A real async HTTP transport that notes each request as it is sent and as its response is closed:
    ``events`` holds ``("sent" | "ended", path, model)`` in order (``model`` from a JSON body, else None). For
    servers that keep no request log (llama.cpp's): how many requests a run made, and whether one waited for
    another."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.events: list[tuple[str, str, str | None]] = []

    def sent(self, path: str, model: str | None = None) -> list[str | None]:
        """The models of the requests sent to ``path`` (every model when ``model`` is None)."""
        return [m for kind, p, m in self.events if kind == "sent" and p == path and model in (None, m)]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            body = json.loads(request.content) if request.content else None
        except ValueError:
            body = None
        model = body.get("model") if isinstance(body, dict) else None
        note = (request.url.path, model)
        self.events.append(("sent", *note))
        response = await self._inner.handle_async_request(request)
        inner = response.stream
        events = self.events

        class _Noted(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                async for piece in inner:  # type: ignore[union-attr]
                    yield piece

            async def aclose(self) -> None:
                events.append(("ended", *note))
                await inner.aclose()  # type: ignore[union-attr]

        response.stream = _Noted()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
