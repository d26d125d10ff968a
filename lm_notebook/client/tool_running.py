"""Running the functions of one round's tool calls: the only part of ``act`` written twice (sync and async).

The flow (:mod:`lm_notebook.client.act`) has already found each tool and validated its arguments; it yields a
:class:`RunToolCalls` step and gets back one :class:`Outcome` per call. The sync client runs the calls one after
another, in the order the model gave them (an ``async def`` tool runs to its end on an event loop of its own); the
async client awaits them in order too, except when every call of the round is to an ``async def`` tool: then they
run concurrently, their records still in the model's order. A Stop is checked before every call (in order or
concurrent); on the async client it also cancels the ``async def`` calls running. An exception inside a function
becomes that call's error; ``KeyboardInterrupt`` (Ctrl-C, a cancelled task) stops the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
import time
from collections.abc import Awaitable
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
    ``stopped``: a Stop came first and it did not run (``interrupted``: it was running, and was cancelled)."""

    value: Any = None
    exception: BaseException | None = None
    duration: float = 0.0
    stopped: bool = False
    interrupted: bool = False


@dataclass(frozen=True, eq=False)
class RunToolCalls(Step):
    """Run these calls; the answer is a list of :class:`Outcome`, one per call, in order. ``stop``: once set, the
    calls not yet started do not run."""

    calls: tuple[PreparedCall, ...]
    stop: threading.Event | None = field(default=None)


def _await_in_a_loop_of_its_own(awaitable: Awaitable[Any]) -> Any:
    """Run an ``async def`` tool's coroutine from sync code: here when no loop runs in this thread, else (a Jupyter
    kernel runs one) on a fresh loop in a helper thread, waited for."""

    async def wrapped() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wrapped())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lm_notebook-tool") as pool:
        return pool.submit(asyncio.run, wrapped()).result()


def run_tool_calls(step: RunToolCalls) -> list[Outcome]:
    """The sync client: each call in order."""
    outcomes: list[Outcome] = []
    for call in step.calls:
        if step.stop is not None and step.stop.is_set():
            outcomes.append(Outcome(stopped=True))
            continue
        started = time.perf_counter()
        try:
            value = call.tool.fn(*call.args, **call.kwargs)
            if inspect.isawaitable(value):
                value = _await_in_a_loop_of_its_own(value)
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
        value = call.tool.fn(*call.args, **call.kwargs)
        if inspect.isawaitable(value):
            value = await value
    except asyncio.CancelledError:
        if not _stopped(stop):  # cancelled from outside (Ctrl-C, a cancelled task): the loop ends with it
            raise
        return Outcome(duration=time.perf_counter() - started, stopped=True, interrupted=True)
    except Exception as exc:
        return Outcome(exception=exc, duration=time.perf_counter() - started)
    return Outcome(value, duration=time.perf_counter() - started)


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
