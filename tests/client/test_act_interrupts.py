"""Stop means stop, nothing is lost — for the acts the other files do not stop: a ``run_in_thread=True`` tool
(the act does not wait for it: a Stop or a real Ctrl-C ends the act at once, the worker thread is abandoned and
its late result dropped) and a Ctrl-C while a round of ``stream_act`` streams (the conversation so far is kept).

Each tool waits on a future the test releases only after the act has ended (a watchdog releases it after 30 s
should the act wait for it, so a regression fails instead of hanging)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from lm_notebook.client import AsyncLMStudioClient, LMStudioClient
from lm_notebook.client.act_types import ActInterrupted, ActResult
from lm_notebook.client.tools import tool_from_function
from lm_notebook.testing import CHAT_PATHS, MockLMStudioServer

QWEN = "qwen2.5-7b-instruct"
CHAT = "/v1/chat/completions"
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="sends a real SIGINT (POSIX signals)")


def plot_it(title: str) -> str:
    """Draw a plot."""
    return f"plotted {title}"


def lookup(city: str) -> str:
    """Facts about a city."""
    return f"{city}: 2.1 million people"


class Blocking:
    """A plain tool's body that blocks until the test releases it (after the act ended), then returns "late"."""

    def __init__(self, on_start: Callable[[], object] = lambda: None) -> None:
        self.started, self.returned = threading.Event(), threading.Event()
        self.release: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.thread: threading.Thread | None = None
        self._on_start = on_start

    def __call__(self, city: str) -> str:
        self.thread = threading.current_thread()
        self.started.set()
        self._on_start()
        try:
            self.release.result(timeout=30)  # the watchdog's end: the act waited for it (the test then fails)
        except concurrent.futures.TimeoutError:
            pass
        self.returned.set()
        return "late"

    def let_go(self) -> None:
        if not self.release.done():
            self.release.set_result(None)


def threaded(body: Blocking) -> Any:
    def slow_lookup(city: str) -> str:
        """Facts about a city, slowly."""
        return body(city)

    return tool_from_function(slow_lookup, name="lookup", run_in_thread=True)


def assert_a_valid_conversation(messages: tuple[Any, ...]) -> None:
    """Every assistant tool call is answered by one tool message with its id, before the next assistant turn."""
    pending: set[str] = set()
    for message in messages:
        if message["role"] == "assistant":
            assert not pending, f"tool calls without results: {pending}"
            pending = {c["id"] for c in message.get("tool_calls", [])}
        elif message["role"] == "tool":
            pending.discard(message["tool_call_id"])
    assert not pending, f"tool calls without results: {pending}"


def assert_stopped_while_the_tool_ran(result: ActResult, body: Blocking) -> None:
    """The act ended before the tool returned: its record says so, the finished call is kept, the late value is
    nowhere; the worker thread is a daemon (not waited for at exit)."""
    assert not body.returned.is_set(), "the act waited for the threaded tool"
    assert [(c.name, c.failure) for c in result.calls] == [("plot_it", None), ("lookup", "stopped")]
    assert "stopped while it ran" in (result.calls[1].error or "")
    assert result.stopped and result.rounds == 1
    assert [m["role"] for m in result.messages] == ["user", "assistant", "tool", "tool"]
    assert_a_valid_conversation(result.messages)
    assert body.thread is not None and body.thread.daemon and body.thread is not threading.main_thread()
    body.let_go()
    assert body.returned.wait(30)
    assert "late" not in str(result.messages) and result.calls[1].output is None


# --- 1. a tool in a worker thread: Stop and Ctrl-C do not wait for it ---------------------------------------------

def test_async_stop_does_not_wait_for_a_threaded_tool(server: MockLMStudioServer) -> None:
    body = Blocking()

    async def main() -> ActResult:
        async with AsyncLMStudioClient(server.url, model=QWEN) as aclient:
            stream = aclient.stream_act("plot_it then lookup", [plot_it, threaded(body)])

            async def stop_once_started() -> None:
                await asyncio.to_thread(body.started.wait, 30)
                await stream.aclose()

            stopper = asyncio.ensure_future(stop_once_started())
            async for _ in stream:
                pass
            await stopper
            return await stream.result()

    try:
        result = asyncio.run(main())
        assert_stopped_while_the_tool_ran(result, body)
    finally:
        body.let_go()
    assert len([r for r in server.requests if r.path == CHAT]) == 1


def test_sync_stop_does_not_wait_for_a_threaded_tool(server: MockLMStudioServer) -> None:
    """On the sync client too, ``run_in_thread=True`` runs the function in a worker thread: the panel's Stop (another
    thread's ``close()``) ends the wait at once."""
    holder: dict[str, Any] = {}
    body = Blocking(on_start=lambda: threading.Thread(target=holder["stream"].close).start())
    try:
        with LMStudioClient(server.url, model=QWEN) as client:
            stream = client.stream_act("plot_it then lookup", [plot_it, threaded(body)])
            holder["stream"] = stream
            kinds = [p.kind for p in stream]
            result = stream.result()
        assert kinds.count("tool_result") == 2 and stream.stopped
        assert_stopped_while_the_tool_ran(result, body)
    finally:
        body.let_go()


@posix_only
def test_ctrl_c_does_not_wait_for_a_threaded_tool_on_the_sync_client(server: MockLMStudioServer,
                                                                     sigint: Callable[[], None]) -> None:
    body = Blocking(on_start=sigint)  # Ctrl-C while the function blocks in its worker thread
    try:
        with LMStudioClient(server.url, model=QWEN) as client, pytest.raises(ActInterrupted) as caught:
            client.act("plot_it then lookup", [plot_it, threaded(body)])
        assert_stopped_while_the_tool_ran(caught.value.act_result, body)
    finally:
        body.let_go()


@posix_only
def test_ctrl_c_does_not_wait_for_a_threaded_tool_on_the_async_client(server: MockLMStudioServer,
                                                                      sigint: Callable[[], None]) -> None:
    """``asyncio.run`` (as a script's Ctrl-C, and ipykernel's for a cell that awaits) cancels the act's task: it
    ends at once; ``stream.result()`` keeps the finished call and a valid conversation."""
    body = Blocking(on_start=sigint)
    holder: dict[str, Any] = {}

    async def main() -> None:
        async with AsyncLMStudioClient(server.url, model=QWEN) as aclient:
            holder["stream"] = stream = aclient.stream_act("plot_it then lookup", [plot_it, threaded(body)])
            async for _ in stream:
                pass

    try:
        with pytest.raises(KeyboardInterrupt):
            asyncio.run(main())
        assert_stopped_while_the_tool_ran(asyncio.run(holder["stream"].result()), body)
    finally:
        body.let_go()


# --- 2. Ctrl-C while a round of stream_act streams: the conversation so far is kept -----------------------------

def stalling_lookup(server: MockLMStudioServer) -> Callable[[str], str]:
    """``lookup`` that makes the next round (the answer) stall after its first chunks, so that a Ctrl-C lands
    while that round streams."""

    def lookup(city: str) -> str:
        """Facts about a city."""
        server.set_fault("stall", seconds=600, after_chunks=2, times=1)
        return f"{city}: 2.1 million people"

    return lookup


def assert_kept_up_to_the_cut(result: ActResult) -> None:
    assert result.stopped and result.result.stopped and result.rounds == 2
    assert [(c.name, c.failure) for c in result.calls] == [("lookup", None)]
    roles = [m["role"] for m in result.messages]
    assert roles == ["user", "assistant", "tool", "assistant"], roles
    assert result.messages[0]["content"] == "lookup Paris"
    assert result.messages[1]["tool_calls"][0]["function"]["name"] == "lookup"
    assert result.messages[2]["content"] == result.calls[0].output
    cut = result.messages[3]
    assert cut["content"] and cut["content"] == result.content and "tool_calls" not in cut
    assert_a_valid_conversation(result.messages)


@posix_only
def test_ctrl_c_while_a_round_streams_keeps_the_conversation(server: MockLMStudioServer,
                                                             sigint: Callable[[], None]) -> None:
    """The Ctrl-C lands in the round's read (or, the machine busy, in the loop's body: ``with`` closes the stream
    then); either way ``result()`` keeps the prompt, the finished round and call, and the answer so far."""
    presser = threading.Thread(target=sigint)
    with LMStudioClient(server.url, model=QWEN) as client:
        stream = client.stream_act("lookup Paris", [stalling_lookup(server)])
        with pytest.raises(KeyboardInterrupt), stream:
            for part in stream:
                if part.kind == "content" and presser.ident is None:  # the answer streams: Ctrl-C
                    presser.start()
        presser.join()
        result = stream.result()
    assert_kept_up_to_the_cut(result)


@posix_only
def test_ctrl_c_while_an_async_round_streams_keeps_the_conversation(server: MockLMStudioServer,
                                                                    sigint: Callable[[], None]) -> None:
    holder: dict[str, Any] = {}

    async def main() -> None:
        async with AsyncLMStudioClient(server.url, model=QWEN) as aclient:
            holder["stream"] = stream = aclient.stream_act("lookup Paris", [stalling_lookup(server)])
            async for part in stream:
                if part.kind == "content":
                    sigint()  # asyncio.run's handler cancels the task at its next await: in the round's read

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(main())
    assert_kept_up_to_the_cut(asyncio.run(holder["stream"].result()))


# --- 3. Ctrl-C while act() (not streamed) waits for the model: the rounds and calls so far are kept -------------

def press_at_the_second_round(server: MockLMStudioServer, sigint: Callable[[], None]) -> threading.Thread:
    """A thread that presses Ctrl-C once the second round's request (the answer, stalled) reached the server."""
    def press() -> None:
        server.wait_for_requests(2, path=CHAT_PATHS, timeout=30)
        sigint()

    presser = threading.Thread(target=press, daemon=True)
    presser.start()
    return presser


@posix_only
def test_ctrl_c_while_act_waits_for_the_model_keeps_the_rounds_and_calls(server: MockLMStudioServer,
                                                                         sigint: Callable[[], None]) -> None:
    def lookup(city: str) -> str:
        """Facts about a city."""
        server.set_fault("stall", seconds=600, times=1)  # the next round (the answer) never comes
        return f"{city}: 2.1 million people"

    presser = press_at_the_second_round(server, sigint)
    with LMStudioClient(server.url, model=QWEN, timeout=600) as client, pytest.raises(KeyboardInterrupt) as caught:
        client.act("lookup Paris", [lookup])
    presser.join()
    assert isinstance(caught.value, ActInterrupted), repr(caught.value)  # before: a bare KeyboardInterrupt
    result = caught.value.act_result
    assert result.stopped and result.rounds == 1
    assert [(c.name, c.failure) for c in result.calls] == [("lookup", None)]
    assert result.calls[0].output is not None and result.calls[0].output.endswith(": 2.1 million people")
    assert [m["role"] for m in result.messages] == ["user", "assistant", "tool"]
    assert result.messages[0]["content"] == "lookup Paris"
    assert_a_valid_conversation(result.messages)
    assert "1 round and 1 finished call are kept in err.act_result" in str(caught.value)
