"""Stop means stop, over real loopback HTTP against the fake server: abandoning a ``for`` / ``async for`` closes the
connection at once; ``partial().stopped`` only once stopped; a closed client says so in one line.

The fake server's clock stands still (``ManualClock``) and its model sends one token per (manual) second, so the
answer never ends on its own: only the client leaving ends it, and the server counts that (``abandoned``). No test
here waits on wall-clock time; each waits for the server to see something.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from lm_notebook import AsyncLMStudioClient, LMStudioClient, LMStudioError
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
