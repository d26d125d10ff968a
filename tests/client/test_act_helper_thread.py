"""The sync client's helper thread for ``async def`` tools, at its edges: a Stop that lands as the call starts, a
Ctrl-C while the helper thread starts, and a tool that raises SystemExit / KeyboardInterrupt. Each edge is made
certain (the Stop from inside the call's start, the Ctrl-C raised by ``Thread.start``), not hoped for."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, ClassVar

import pytest

from lm_notebook.client import LMStudioClient, tool_running
from lm_notebook.client.act_types import ActInterrupted
from lm_notebook.client.tools import Tool
from lm_notebook.testing import MockLMStudioServer

QWEN = "qwen2.5-7b-instruct"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture
def client(server: MockLMStudioServer) -> Any:
    with LMStudioClient(server.url, model=QWEN) as c:
        yield c


class Waiting:
    """An ``async def`` tool's body that waits until cancelled (or released at the test's end)."""

    def __init__(self) -> None:
        self.ran, self.cancelled = threading.Event(), threading.Event()
        self._release: concurrent.futures.Future[None] = concurrent.futures.Future()  # (never set while all goes well)

    def release(self) -> None:
        """Let the body finish, from any thread (its cancellation also cancels the wait)."""
        if not self._release.done():
            self._release.set_result(None)

    async def body(self) -> str:
        self.ran.set()
        try:
            await asyncio.wrap_future(self._release)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return "finished"


def test_a_stop_as_an_async_tool_starts_cancels_it(server: MockLMStudioServer, client: LMStudioClient) -> None:
    """The Stop lands after the tool was called but before its coroutine reached the helper thread (the tool's
    function itself closes the stream, then hands back its coroutine): the coroutine does not run its body."""
    waiting = Waiting()
    holder: dict[str, Any] = {}

    def lookup(city: str) -> Coroutine[Any, Any, str]:
        holder["stream"].close()  # the panel's Stop, right as the call starts
        return waiting.body()

    stream = client.stream_act("lookup it", [Tool("lookup", "Facts.", SCHEMA, lookup)])
    holder["stream"] = stream
    try:
        watchdog = threading.Thread(target=lambda: (waiting.ran.wait(30) and waiting.cancelled.wait(30))
                                    or waiting.release(), daemon=True)
        watchdog.start()
        result = stream.result()
    finally:
        waiting.release()
    (call,) = result.calls
    assert call.failure == "stopped", (call.failure, call.output)
    assert result.stopped and not waiting.ran.is_set()


class InterruptedStart(threading.Thread):
    """A helper thread whose ``start()`` is hit by a Ctrl-C: after the thread started (``after=True``) or before."""

    after = True
    made: ClassVar[list[threading.Thread]] = []

    def start(self) -> None:
        InterruptedStart.made.append(self)
        if InterruptedStart.after:
            super().start()
        raise KeyboardInterrupt


@pytest.mark.parametrize("after", [True, False], ids=["thread-started", "thread-not-started"])
def test_ctrl_c_while_the_helper_thread_starts_leaves_nothing_running(
        server: MockLMStudioServer, client: LMStudioClient, monkeypatch: pytest.MonkeyPatch, after: bool) -> None:
    """A Ctrl-C between the helper thread's start and the wait: the act ends with ActInterrupted; a coroutine that
    began is cancelled, and the helper thread ends; one that had not is closed without running."""
    waiting = Waiting()

    async def lookup(city: str) -> str:
        return await waiting.body()

    monkeypatch.setattr(InterruptedStart, "after", after)
    made: list[threading.Thread] = []
    monkeypatch.setattr(InterruptedStart, "made", made)
    monkeypatch.setattr(tool_running.threading, "Thread", InterruptedStart)
    try:
        with pytest.raises(ActInterrupted):
            client.act("lookup it", [Tool("lookup", "Facts.", SCHEMA, lookup)])
        monkeypatch.undo()
        (helper,) = made
        if after:
            helper.join(30)  # ends once its coroutine ended: cancelled at its await, or before its first step
            assert not helper.is_alive(), "the helper thread (and its loop) was left running"
            assert waiting.cancelled.is_set() or not waiting.ran.is_set(), "the coroutine ran on"
        else:
            assert not waiting.ran.is_set()
    finally:
        monkeypatch.undo()
        waiting.release()


@pytest.mark.parametrize("raised", [SystemExit(3), KeyboardInterrupt()], ids=["SystemExit", "KeyboardInterrupt"])
def test_an_async_tool_raising_systemexit_or_keyboardinterrupt_ends_the_act(
        server: MockLMStudioServer, client: LMStudioClient, raised: BaseException) -> None:
    """SystemExit from an ``async def`` tool reaches the caller (as from a plain function); a KeyboardInterrupt from
    it ends the act like a Ctrl-C (ActInterrupted). Before, the helper loop stopped without completing the wait."""

    async def lookup(city: str) -> str:
        await asyncio.sleep(0)
        raise raised

    ended: list[BaseException | object] = []

    def run() -> None:
        try:
            ended.append(client.act("lookup it", [Tool("lookup", "Facts.", SCHEMA, lookup)]))
        except BaseException as exc:  # what the act ended with is the result
            ended.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(60)
    assert ended, "act() is still waiting for the tool"
    if isinstance(raised, SystemExit):
        assert isinstance(ended[0], SystemExit) and ended[0].code == 3
    else:
        assert isinstance(ended[0], ActInterrupted), repr(ended[0])


def test_a_stop_as_a_threaded_tool_starts_does_not_run_it(server: MockLMStudioServer, client: LMStudioClient,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``run_in_thread=True`` function: the Stop lands after its call began but before its worker thread ran
    (``Thread.start`` itself presses it): the function does not run at all."""
    ran = threading.Event()

    def lookup(city: str) -> str:
        ran.set()
        return "ran"

    stream = client.stream_act("lookup it", [Tool("lookup", "Facts.", SCHEMA, lookup, run_in_thread=True)])
    made: list[threading.Thread] = []

    class StoppedStart(threading.Thread):
        def start(self) -> None:
            made.append(self)
            stream.close()  # the panel's Stop, right as the worker thread starts
            super().start()

    monkeypatch.setattr(tool_running.threading, "Thread", StoppedStart)
    try:
        result = stream.result()
    finally:
        monkeypatch.undo()
    (worker,) = made
    worker.join(30)
    assert not worker.is_alive() and not ran.is_set(), "the function ran after the Stop"
    (call,) = result.calls
    assert call.failure == "stopped" and call.output is None and result.stopped
