"""The LM Studio client: :class:`LMStudioClient` and its async twin :class:`AsyncLMStudioClient`.

Every operation is written once, as a flow on the shared :class:`~lm_notebook.client.client_base.BaseClient`; each
twin holds only its I/O: performing a step (send a request, read a body, read a stream), and closing.

>>> client = LMStudioClient()                       # doctest: +SKIP
>>> [m.id for m in client.list_models()]            # doctest: +SKIP
>>> client.set_current_model("qwen2.5-7b-instruct")  # doctest: +SKIP
>>> for text in client.stream_chat("Tell me a joke"):  # doctest: +SKIP
...     print(text, end="")

The async client has the same methods, awaited, and streams with ``async for``:

>>> async with AsyncLMStudioClient(model="qwen2.5-7b-instruct") as client:   # doctest: +SKIP
...     print((await client.chat("Hello")).content)
...     async with client.stream_chat("Tell me a joke") as stream:
...         async for text in stream:
...             print(text, end="")
"""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar

import httpx

from lm_notebook.client.act import ActOperations
from lm_notebook.client.act_stream import ActStream, AsyncActStream
from lm_notebook.client.client_base import BaseClient
from lm_notebook.client.flows import Await, Flow, Pause, ReadBody, Send, Step, arun_flow, run_flow
from lm_notebook.client.model_operations import ModelOperations
from lm_notebook.client.routes import LoadResult
from lm_notebook.client.settings import DEFAULT_BASE_URL, normalize_base_url, resolve_timeout
from lm_notebook.client.stream import AsyncChatStream, ChatStream
from lm_notebook.client.stream_base import ReadStream
from lm_notebook.client.tool_running import RunToolCalls, arun_tool_calls, run_tool_calls

# the settings and the load result stay importable from here, as before
__all__ = [
    "DEFAULT_BASE_URL",
    "AsyncLMStudioClient",
    "LMStudioClient",
    "LoadResult",
    "normalize_base_url",
    "resolve_timeout",
]

T = TypeVar("T")


async def _answer_of(step: Await) -> None:
    """Wait in this loop for another flow's answer (it may come from another thread or loop); a cancellation of
    this wait leaves the answer alone for the others waiting."""
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not answered.done():
            answered.set_result(None)

    def on_answer(_answer: object) -> None:
        try:
            loop.call_soon_threadsafe(wake)
        except RuntimeError:  # that loop is closed: nobody waits there any more
            pass

    step.answer.add_done_callback(on_answer)
    await answered


class LMStudioClient(BaseClient[httpx.Client, httpx.BaseTransport, ChatStream], ActOperations[ActStream],
                     ModelOperations):
    """Talks to LM Studio's server (``LMSTUDIO_BASE_URL``, default ``http://127.0.0.1:1234``).

    ``base_url`` may be pasted as an endpoint (``…/v1/chat/completions``, ``…/v1``, ``…/api/v1``): it is reduced to
    the server's base; a user and password in it (``http://user:pw@host:1234``, a proxy in front of LM Studio) are
    sent as HTTP Basic auth and never shown. ``api_key`` (else ``LM_API_TOKEN``, else ``LMSTUDIO_API_TOKEN``) is
    sent as a Bearer token and never shown. ``timeout``: seconds to wait for an answer (connect stays short),
    ``float("inf")`` for no read timeout, or an ``httpx.Timeout``; a bad value is refused here, in one line.
    ``transport``: an httpx transport (e.g. ``httpx.MockTransport``) for tests. ``model``: the current model.
    """

    _http_type = httpx.Client
    _connects_ahead = True
    _stream_type = ChatStream
    _act_stream_type = ActStream

    def _drive(self, flow: Flow[T]) -> T:
        return run_flow(flow, self._perform)

    def _perform(self, step: Step) -> object:
        """Do one step's I/O."""
        if isinstance(step, Send):
            return (self._stream_http if step.stream else self._http).send(step.request, stream=step.stream)
        if isinstance(step, ReadBody):
            try:
                step.response.read()
            finally:
                step.response.close()
            return step.response
        if isinstance(step, Pause):
            time.sleep(step.seconds)
            return None
        if isinstance(step, Await):
            step.woken.wait()
            return None
        if isinstance(step, ReadStream) and isinstance(step.stream, ChatStream):
            return step.stream._read_to_end(step.on_token)
        if isinstance(step, RunToolCalls):
            return run_tool_calls(step)
        raise TypeError(f"LMStudioClient cannot perform {step!r}")

    def close(self) -> None:
        """Close the connections; using the client afterwards (or a stream it was reading) raises
        ``ClientClosedError``."""
        self._closed = True
        self._http.close()
        self._stream_http.close()
        if self._spares is not None:
            self._spares.close()

    def __enter__(self) -> LMStudioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncLMStudioClient(
    BaseClient[httpx.AsyncClient, httpx.AsyncBaseTransport, AsyncChatStream], ActOperations[AsyncActStream],
    ModelOperations,
):
    """The async twin of :class:`LMStudioClient`: the same methods and arguments, awaited; ``stream_chat`` gives an
    :class:`~lm_notebook.client.stream.AsyncChatStream` (``async with``, ``async for``); ``aclose`` instead of
    ``close``. ``transport`` is an async one (``httpx.MockTransport`` is both).

    ``AsyncLMStudioClient.from_client(client)`` makes one for the same server, token and current model as a sync
    client (the kernel's shared one, say); ``with_options`` copies one with another base URL or timeout.

    >>> async with AsyncLMStudioClient.from_client(get_client()) as client:   # doctest: +SKIP
    ...     models = await client.list_models()
    ...     answer = await client.send_message("Hi", on_token=lambda token, full: None)
    """

    _http_type = httpx.AsyncClient
    _stream_type = AsyncChatStream
    _act_stream_type = AsyncActStream

    async def _drive(self, flow: Flow[T]) -> T:
        return await arun_flow(flow, self._perform)

    async def _perform(self, step: Step) -> object:
        """Do one step's I/O."""
        if isinstance(step, Send):
            return await (self._stream_http if step.stream else self._http).send(step.request, stream=step.stream)
        if isinstance(step, ReadBody):
            try:
                await step.response.aread()
            finally:
                await step.response.aclose()
            return step.response
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
            return None
        if isinstance(step, Await):
            await _answer_of(step)
            return None
        if isinstance(step, ReadStream) and isinstance(step.stream, AsyncChatStream):
            return await step.stream._read_to_end(step.on_token)
        if isinstance(step, RunToolCalls):
            return await arun_tool_calls(step)
        raise TypeError(f"AsyncLMStudioClient cannot perform {step!r}")

    async def aclose(self) -> None:
        """Close the connections; using the client afterwards (or a stream it was reading) raises
        ``ClientClosedError``."""
        self._closed = True
        await self._http.aclose()
        await self._stream_http.aclose()

    async def __aenter__(self) -> AsyncLMStudioClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
