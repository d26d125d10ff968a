"""Running the functions of one round's tool calls: the only part of ``act`` written twice (sync and async).

The flow (:mod:`lm_notebook.client.act`) has already found each tool and validated its arguments; it yields a
:class:`RunToolCalls` step and gets back one :class:`Outcome` per call. The sync client runs the calls one after
another, in the order the model gave them: a plain function in the calling thread, an ``async def`` tool on an event
loop of its own in a helper thread, waited for. The async client awaits them in order too, except when every call of
the round is to an ``async def`` tool: then they run concurrently, their records still in the model's order; there
a plain function runs in a worker thread, so it does not hold up the event loop (the other rows of a ``compare``,
a Stop). A Stop is checked before every call; on both clients it also cancels a running ``async def`` call at its
next ``await``; a plain function cannot be stopped from outside: it finishes, and its result is kept. An exception
inside a function becomes that call's error. On the sync client a Ctrl-C (``KeyboardInterrupt``) during a call
ends it (an ``async def`` one is cancelled), the round's other calls do not run, and the act ends with
:class:`~lm_notebook.client.act_types.ActInterrupted`; on the async client a cancellation from outside (Ctrl-C in
``compare``) ends the loop at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from lm_notebook.client.flows import Step
from lm_notebook.client.tools import Tool


@dataclass(frozen=True)
class PreparedCall:
    """A call whose tool was found and whose arguments fit: what to call it with."""

    tool: Tool
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What a call came to: its return ``value``, or the exception it raised; ``duration`` in seconds.
    ``stopped``: a Stop came first and it did not run (``interrupted``: it was running, and was cancelled;
    ``ctrl_c``: by a Ctrl-C)."""

    value: Any = None
    exception: BaseException | None = None
    duration: float = 0.0
    stopped: bool = False
    interrupted: bool = False
    ctrl_c: bool = False  # interrupted by a Ctrl-C on the sync client: the act ends with ActInterrupted


@dataclass(frozen=True, eq=False)
class RunToolCalls(Step):
    """Run these calls; the answer is a list of :class:`Outcome`, one per call, in order. ``stop``: once set, the
    calls not yet started do not run."""

    calls: tuple[PreparedCall, ...]
    stop: threading.Event | None = field(default=None)


# A Stop's way to cancel the ``async def`` call running on the sync client (``ActStream.close`` calls each).
Cancellers = set[Callable[[], object]]
# the async client's plain functions: a pool of its own, so that asyncio.run does not wait at its end for a function a
# Ctrl-C left running (it would wait for the default executor's threads)
_TOOL_THREADS = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="lm_notebook-tool")


def _await_in_a_thread(awaitable: Awaitable[Any], running: Cancellers) -> Any:
    """Run an ``async def`` tool's coroutine from sync code, on a fresh event loop in a helper thread (also when this
    thread runs a loop, as a Jupyter kernel's does), and wait for it. A Stop (``running``) or a Ctrl-C here cancels it
    at its next ``await``, and the wait ends at once (the daemon thread finishes the cancellation)."""

    async def wrapped() -> Any:
        return await awaitable

    loop = asyncio.new_event_loop()
    threading.Thread(target=_serve, args=(loop,), name="lm_notebook-tool", daemon=True).start()
    future = asyncio.run_coroutine_threadsafe(wrapped(), loop)  # (in a copy of this thread's context)
    running.add(future.cancel)
    try:
        return future.result()
    except BaseException:
        future.cancel()  # Ctrl-C: the coroutine ends at its next await
        raise
    finally:
        running.discard(future.cancel)
        loop.call_soon_threadsafe(loop.stop)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The helper thread of :func:`_await_in_a_thread`: the loop until stopped, then a cancelled coroutine's end."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def run_tool_calls(step: RunToolCalls, running: Cancellers | None = None) -> list[Outcome]:
    """The sync client: each call in order. ``running``: where a Stop finds the running ``async def`` call."""
    cancellers: Cancellers = set() if running is None else running
    outcomes: list[Outcome] = []
    for call in step.calls:
        if _stopped(step.stop) or any(o.ctrl_c for o in outcomes):
            outcomes.append(Outcome(stopped=True))
            continue
        started = time.perf_counter()
        try:
            value = call.tool.fn(*call.args, **call.kwargs)
            if inspect.isawaitable(value):
                value = _await_in_a_thread(value, cancellers)
        except KeyboardInterrupt:  # Ctrl-C: this call ends, the others do not run, the act ends (ActInterrupted)
            outcomes.append(Outcome(duration=time.perf_counter() - started, stopped=True, interrupted=True,
                                    ctrl_c=True))
        except concurrent.futures.CancelledError as exc:
            if not _stopped(step.stop):  # the coroutine cancelled itself: that is its error
                outcomes.append(Outcome(exception=exc, duration=time.perf_counter() - started))
            else:
                outcomes.append(Outcome(duration=time.perf_counter() - started, stopped=True, interrupted=True))
        except Exception as exc:
            outcomes.append(Outcome(exception=exc, duration=time.perf_counter() - started))
        else:
            outcomes.append(Outcome(value, duration=time.perf_counter() - started))
    return outcomes


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


async def _one(call: PreparedCall, stop: threading.Event | None) -> Outcome:
    if _stopped(stop):  # a Stop came before this call started: it does not run
        return Outcome(stopped=True)
    started = time.perf_counter()
    try:
        value = await _called(call, stop)
    except asyncio.CancelledError:
        if not _stopped(stop):  # cancelled from outside (Ctrl-C, a cancelled task): the loop ends with it
            raise
        return Outcome(duration=time.perf_counter() - started, stopped=True, interrupted=True)
    except Exception as exc:
        return Outcome(exception=exc, duration=time.perf_counter() - started)
    return Outcome(value, duration=time.perf_counter() - started)


async def _called(call: PreparedCall, stop: threading.Event | None) -> Any:
    """The call's value: an ``async def`` tool awaited on this loop, a plain function in a worker thread. A Stop
    cannot end a plain function: it is waited for, and its result kept; a cancellation from outside (Ctrl-C in
    ``compare``) does not wait for it (it finishes in its thread, its result dropped)."""
    if call.tool.is_async:
        value = call.tool.fn(*call.args, **call.kwargs)
    else:
        context = contextvars.copy_context()
        ran = _TOOL_THREADS.submit(context.run, call.tool.fn, *call.args, **call.kwargs)
        try:
            value = await asyncio.wrap_future(ran)
        except asyncio.CancelledError:
            if not _stopped(stop) or ran.cancelled():
                raise
            value = await asyncio.wrap_future(ran)
    if inspect.isawaitable(value):
        value = await value
    return value


async def arun_tool_calls(step: RunToolCalls, running: set[asyncio.Task[Outcome]] | None = None) -> list[Outcome]:
    """The async client: concurrently when every call is to an ``async def`` tool, else in order.

    Each call runs as a task, kept in ``running`` while it runs: a Stop (``AsyncActStream.aclose``) sets
    ``step.stop`` and cancels them, so an ``async def`` tool ends at its next ``await`` (its record says it was
    stopped while it ran); a call cancelled before it started did not run."""
    watched: set[asyncio.Task[Outcome]] = set() if running is None else running

    def started(call: PreparedCall) -> asyncio.Task[Outcome]:
        task = asyncio.ensure_future(_one(call, step.stop))
        watched.add(task)
        task.add_done_callback(watched.discard)
        return task

    def outcome(task: asyncio.Task[Outcome]) -> Outcome:
        return Outcome(stopped=True) if task.cancelled() else task.result()

    if len(step.calls) > 1 and all(call.tool.is_async for call in step.calls):
        tasks = [started(call) for call in step.calls]
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError:  # the caller was cancelled: so are the calls
            for task in tasks:
                task.cancel()
            raise
        return [outcome(task) for task in tasks]
    outcomes: list[Outcome] = []
    for call in step.calls:
        task = started(call)
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            task.cancel()
            raise
        outcomes.append(outcome(task))
    return outcomes
