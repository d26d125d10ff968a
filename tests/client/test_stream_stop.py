"""Stop means stop, over real loopback HTTP against the fake server: abandoning a ``for`` / ``async for`` closes the
connection at once; ``partial().stopped`` only once stopped; a closed client says so in one line.

The fake server's clock stands still (``ManualClock``) and its model sends one token per (manual) second, so the
answer never ends on its own: only the client leaving ends it, and the server counts that (``abandoned``). No test
here waits on wall-clock time; each waits for the server to see something.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lm_notebook import AsyncLMStudioClient, LMStudioClient, LMStudioError
from lm_notebook.client.native_types import Route
from lm_notebook.client.stream import ChatStream
from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec


@pytest.fixture
def paced() -> Iterator[MockLMStudioServer]:
    """A server whose answer sends its first token, then waits on a clock that never moves."""
    with MockLMStudioServer(models=[ModelSpec("m", loaded=True, tokens_per_second=1)], clock=ManualClock()) as s:
        yield s


def left(server: MockLMStudioServer) -> None:
    """Wait until the server has seen the client hang up on its answer (it raises when it never does)."""
    server.wait_until(lambda: server.counters.abandoned == 1)


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text
    return text


# --- 2. abandoning the iteration closes the connection -------------------------------------------------------------

def test_break_without_with_closes_the_connection_and_result_is_the_stopped_partial(
    paced: MockLMStudioServer,
) -> None:
    client = LMStudioClient(paced.url)
    stream = client.stream_chat("hi", model="m")
    got = []
    for text in stream:
        got.append(text)
        break
    left(paced)  # before the fix the connection stayed open and the server waited for ever
    result = stream.result()
    assert result.stopped and stream.stopped and result.content == "".join(got) != ""
    client.close()


def test_break_out_of_iter_parts_closes_the_connection(paced: MockLMStudioServer) -> None:
    with LMStudioClient(paced.url) as client:
        stream = client.stream_chat("hi", model="m")
        for _part in stream.iter_parts():
            break
        left(paced)
        assert stream.result().stopped


def test_an_exception_in_the_loop_body_closes_the_connection(paced: MockLMStudioServer) -> None:
    with LMStudioClient(paced.url) as client:
        stream = client.stream_chat("hi", model="m")
        with pytest.raises(ZeroDivisionError):
            for _text in stream:
                1 / 0  # noqa: B018
        left(paced)
        assert stream.result().stopped


def test_async_for_break_without_with_closes_the_connection(paced: MockLMStudioServer) -> None:
    async def run() -> tuple[list[str], bool, str]:
        async with AsyncLMStudioClient(paced.url) as client:
            stream = client.stream_chat("hi", model="m")
            got = []
            async for text in stream:
                got.append(text)
                break
            await asyncio.to_thread(left, paced)
            result = await stream.result()
            return got, result.stopped, result.content

    got, stopped, content = asyncio.run(run())
    assert stopped and content == "".join(got) != ""


def test_async_for_over_iter_parts_left_early_closes_the_connection(paced: MockLMStudioServer) -> None:
    async def run() -> bool:
        async with AsyncLMStudioClient(paced.url) as client:
            stream = client.stream_chat("hi", model="m")
            async for _part in stream.iter_parts():
                break
            await asyncio.to_thread(left, paced)
            return (await stream.result()).stopped

    assert asyncio.run(run())


# --- 3. partial().stopped only once stopped --------------------------------------------------------------------------

def test_partial_is_not_stopped_before_the_start_nor_while_streaming(paced: MockLMStudioServer) -> None:
    with LMStudioClient(paced.url) as client:
        stream = client.stream_chat("hi", model="m")
        assert not stream.partial().stopped  # not started
        pieces = iter(stream)
        first = next(pieces)
        assert not stream.partial().stopped and stream.partial().content == first  # streaming
        stream.close()
        assert stream.partial().stopped and stream.result().stopped


def test_a_finished_stream_is_not_stopped() -> None:
    with MockLMStudioServer() as server, LMStudioClient(server.url) as client:
        model = server.loaded_models()[0]
        stream = client.stream_chat("hi", model=model)
        assert not stream.partial().stopped
        text = "".join(stream)
        assert text and not stream.partial().stopped and not stream.result().stopped


def test_async_partial_is_stopped_only_once_stopped(paced: MockLMStudioServer) -> None:
    async def run() -> list[bool]:
        async with AsyncLMStudioClient(paced.url) as client:
            stream = client.stream_chat("hi", model="m")
            seen = [stream.partial().stopped]
            async with stream:
                async for _text in stream:
                    seen.append(stream.partial().stopped)
                    break
            seen.append(stream.partial().stopped)
            return seen

    assert asyncio.run(run()) == [False, False, True]


# --- 4. a closed client says so ---------------------------------------------------------------------------------------

def test_a_closed_client_says_it_is_closed(paced: MockLMStudioServer) -> None:
    client = LMStudioClient(paced.url)
    client.close()
    calls = (client.list_models, lambda: client.chat("hi", model="m"),
             lambda: list(client.stream_chat("hi", model="m")))
    for call in calls:
        with pytest.raises(LMStudioError) as info:  # not httpx's RuntimeError
            call()
        text = one_line(info.value)
        assert text.startswith("This client is closed") and "retry" not in text.lower()
        assert paced.url in text
    assert paced.requests == [] and client.is_closed


def test_closing_the_client_mid_stream_is_not_a_broken_connection(paced: MockLMStudioServer) -> None:
    client = LMStudioClient(paced.url)
    stream = client.stream_chat("hi", model="m")
    pieces = iter(stream)
    first = next(pieces)
    client.close()
    with pytest.raises(LMStudioError) as info:
        next(pieces)
    text = one_line(info.value)
    assert text.startswith("This client is closed") and "retry" not in text.lower() and "broke" not in text
    assert info.value.partial_content == first
    left(paced)


def test_a_closed_async_client_says_it_is_closed(paced: MockLMStudioServer) -> None:
    async def run() -> list[str]:
        client = AsyncLMStudioClient(paced.url)
        stream = client.stream_chat("hi", model="m")
        pieces = stream.__aiter__()
        await pieces.__anext__()
        await client.aclose()
        errors = []
        try:
            await pieces.__anext__()
        except LMStudioError as err:
            errors.append(one_line(err))
        for call in (client.list_models(), client.chat("hi", model="m")):
            try:
                await call
            except LMStudioError as err:
                errors.append(one_line(err))
        return errors

    errors = asyncio.run(run())
    assert len(errors) == 3
    for text in errors:
        assert text.startswith("This client is closed") and "retry" not in text.lower()


# --- 5. a Stop from another thread while the stream is still opening (a model load) ---------------------------------

@pytest.fixture
def loading() -> Iterator[MockLMStudioServer]:
    """A server whose model is not loaded and takes 30 (manual) seconds to load: the chat request waits for ever."""
    with MockLMStudioServer(models=[ModelSpec("m", load_time=30)], clock=ManualClock()) as s:
        yield s


def stop_once_requested(server: MockLMStudioServer, stop: Callable[[], object], entered: threading.Event,
                        path: str = "/v1/chat/completions") -> list[str]:
    """From another thread: wait for the chat request to arrive at ``path``, then ``stop()``. When the opening is not
    woken by it, move the clock past the load so the test fails instead of hanging; the list then says so."""
    failures: list[str] = []

    def run() -> None:
        server.wait_for_requests(1, path=path)
        stop()
        if not entered.wait(10):
            failures.append("the Stop did not wake the opening; it returned only after the whole load")
            assert isinstance(server.clock, ManualClock)
            server.clock.advance(60)

    threading.Thread(target=run, daemon=True).start()
    return failures


# the native route (auto on 0.4) answers at once with the load's progress; the OpenAI route waits for the load
ROUTES_WHILE_LOADING = pytest.mark.parametrize(("route", "path"), [("openai", "/v1/chat/completions"),
                                                                   ("auto", "/api/v1/chat")])


@ROUTES_WHILE_LOADING
def test_a_stop_from_another_thread_wakes_with_stream_while_it_opens(loading: MockLMStudioServer, route: Route,
                                                                     path: str) -> None:
    with LMStudioClient(loading.url, route=route) as client:
        stream = client.stream_chat("hi", model="m")
        entered = threading.Event()
        failures = stop_once_requested(loading, stream.close, entered, path)
        with stream:
            entered.set()
            assert list(stream) == []
        assert failures == []
        assert stream.stopped and stream.result().stopped and stream.result().content == ""


@ROUTES_WHILE_LOADING
def test_a_stop_from_another_thread_wakes_a_streamed_send_message_while_it_opens(
    loading: MockLMStudioServer, route: Route, path: str,
) -> None:
    with LMStudioClient(loading.url, model="m", route=route) as client:
        opened: list[ChatStream] = []
        stream_chat = client.stream_chat

        def keep(*args: Any, **kwargs: Any) -> ChatStream:  # the Stop button's handle on the stream
            opened.append(stream_chat(*args, **kwargs))
            return opened[-1]

        client.stream_chat = keep  # type: ignore[method-assign]
        entered = threading.Event()
        failures = stop_once_requested(loading, lambda: opened[0].close(), entered, path)
        result = client.send_message("hi", stream=True)
        entered.set()
        assert failures == []
        assert result.stopped and result.content == ""


def test_async_for_left_early_is_stopped_at_once_and_its_response_is_closed_on_the_loop(
    paced: MockLMStudioServer,
) -> None:
    async def run() -> tuple[bool, bool, bool]:
        async with AsyncLMStudioClient(paced.url) as client:
            stream = client.stream_chat("hi", model="m")
            async for _text in stream:
                break
            stopped = stream.stopped and stream.partial().stopped  # before any result() or aclose()
            await asyncio.gather(*(asyncio.all_tasks() - {asyncio.current_task()}))  # what the loop was asked to do
            assert stream._response is not None
            closed = stream._response.is_closed
            await asyncio.to_thread(left, paced)
            return stopped, closed, (await stream.result()).stopped

    assert asyncio.run(run()) == (True, True, True)
