"""Running the functions of one round's tool calls: the only part of ``act`` written twice (sync and async).

The flow (:mod:`lm_notebook.client.act`) has already found each tool and validated its arguments; it yields a
:class:`RunToolCalls` step and gets back one :class:`Outcome` per call. The sync client runs the calls one after
another, in the order the model gave them: a plain function in the calling thread, an ``async def`` tool on an event
loop of its own in a helper thread, waited for. The async client awaits them in order too, except when every call of
the round is to an ``async def`` tool: then they run concurrently, their records still in the model's order; there
a plain function runs in the loop's thread (the caller's: thread-bound objects work). Opted in with
``Tool(run_in_thread=True)``, a plain function runs in a daemon helper thread on both clients, so a slow one holds
up neither the event loop (the other rows of a ``compare``) nor a Stop or a Ctrl-C: the wait for it ends at once,
the thread is abandoned (it cannot be killed; the process does not wait for it at exit) and its late value dropped.
A Stop is checked before every call; on both clients it also cancels a running ``async def`` call at its next
``await``; a plain function running in the caller's thread cannot be stopped from outside: it finishes, and its
result is kept. An exception inside a function becomes that call's error. On the sync client a Ctrl-C
(``KeyboardInterrupt``) during a call ends it (an ``async def`` one is cancelled), the round's other calls do not
run, and the act ends with :class:`~lm_notebook.client.act_types.ActInterrupted`; on the async client a
cancellation from outside (Ctrl-C in ``compare``, a cell's interrupt) ends the loop at once, the calls cancelled
(a streamed act keeps what they came to: ``cut``).
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
    ctrl_c: bool = False  # interrupted by a Ctrl-C (a cancellation on the async client): the act ends, ActInterrupted


@dataclass(frozen=True, eq=False)
class RunToolCalls(Step):
    """Run these calls; the answer is a list of :class:`Outcome`, one per call, in order. ``stop``: once set, the
    calls not yet started do not run."""

    calls: tuple[PreparedCall, ...]
    stop: threading.Event | None = field(default=None)


# A Stop's way to cancel the ``async def`` call running on the sync client (``ActStream.close`` calls each).
Cancellers = set[Callable[[], object]]


class _HelperCall:
    """One ``async def`` tool's coroutine run from sync code on a fresh event loop in a helper thread (also when this
    thread runs a loop, as a Jupyter kernel's does), and waited for (:meth:`wait`); or a plain ``function``
    (``run_in_thread=True``) called in the helper thread, with no loop (an awaitable it returns runs on one there).
    :meth:`cancel` (a Stop, from any thread, or a Ctrl-C here) ends the wait at once and cancels the coroutine at its
    next ``await`` (before its first step when it had not started); the daemon thread finishes the cancellation and
    closes its loop; a function cannot be stopped: it is abandoned, its late value dropped. Every state change is
    made under one lock, so a cancel that comes before the thread or the task exists is not missed, and a wait a
    Ctrl-C ends before the thread ran closes the coroutine itself."""

    def __init__(self, coroutine: Awaitable[Any] | None, function: Callable[[], Any] | None = None) -> None:
        self._coroutine = coroutine
        self._function = function
        self._done: concurrent.futures.Future[Any] = concurrent.futures.Future()  # kept PENDING: cancel() works
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Future[Any] | None = None
        self._cancelled = False
        self._began = False  # the helper thread took the coroutine
        self._abandoned = False  # the caller gave up before that: the thread must not run it

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            self._done.cancel()
            if self._task is not None and self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._task.cancel)

    def start(self, context: contextvars.Context) -> concurrent.futures.Future[Any]:
        """Start the daemon thread (in a copy of ``context``: never waited for at exit); the future of the coroutine's
        value, its exception (any ``BaseException``, ``SystemExit`` too), or cancelled (then a late value is
        dropped)."""
        threading.Thread(target=context.run, args=(self._serve,), name="lm_notebook-tool", daemon=True).start()
        return self._done

    def wait(self, context: contextvars.Context) -> Any:
        """Start the thread and wait for the coroutine's value (see :meth:`start`); its exception is raised here,
        ``concurrent.futures.CancelledError`` once cancelled."""
        return self.start(context).result()

    def abandon(self) -> None:
        """The caller's wait ended early (a Stop, a Ctrl-C, also one while the thread started): the coroutine is
        cancelled, or closed here when the thread never took it (the thread, if it starts later, leaves it alone)."""
        self.cancel()
        with self._lock:
            closing = not self._began
            self._abandoned = closing
        if closing and inspect.iscoroutine(self._coroutine):
            self._coroutine.close()

    def _settle(self, value: Any = None, exception: BaseException | None = None) -> None:
        with self._lock:
            if self._done.cancelled():
                return
            if exception is None:
                self._done.set_result(value)
            else:
                self._done.set_exception(exception)

    def _serve(self) -> None:
        """The helper thread: the coroutine as a task on a loop of its own, its end (any exception) handed back."""
        with self._lock:
            if self._abandoned or (self._cancelled and self._function is not None):  # a function cancelled first
                return  # does not run (a coroutine is cancelled before its first step instead)
            self._began = True
        if self._function is not None:
            try:
                value = self._function()
            except BaseException as exc:
                self._settle(exception=exc)
                return
            if not inspect.isawaitable(value):
                self._settle(value)
                return
            self._coroutine = value
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            assert self._coroutine is not None  # given, or returned by the function
            task = asyncio.ensure_future(self._coroutine, loop=loop)
            with self._lock:
                self._loop, self._task = loop, task
                if self._cancelled:  # a cancel before the task existed
                    task.cancel()
            try:
                value = loop.run_until_complete(task)
            except asyncio.CancelledError:
                self._settle(exception=concurrent.futures.CancelledError())
            except BaseException as exc:  # SystemExit / KeyboardInterrupt too: they left the loop before the task's
                self._settle(exception=exc)  # callbacks ran, so the waiting future is completed here
            else:
                self._settle(value)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            with self._lock:
                loop.close()


def _waited(helper: _HelperCall, running: Cancellers, stop: threading.Event | None) -> Any:
    """A helper thread's call, waited for on the sync client: its canceller is in ``running`` (for a Stop) before
    the work is handed over, and a Stop that came before that cancels it too."""
    context = contextvars.copy_context()
    try:
        running.add(helper.cancel)
        if _stopped(stop):
            helper.cancel()
        return helper.wait(context)
    except BaseException:
        helper.abandon()
        raise
    finally:
        running.discard(helper.cancel)


def _threaded(call: PreparedCall) -> _HelperCall | None:
    """A plain function with ``run_in_thread=True``: its call in a helper thread (None: it runs in this thread)."""
    if not call.tool.run_in_thread or call.tool.is_async:
        return None
    return _HelperCall(None, lambda: call.tool.fn(*call.args, **call.kwargs))


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
            helper = _threaded(call)
            if helper is not None:
                value = _waited(helper, cancellers, step.stop)
            else:
                value = call.tool.fn(*call.args, **call.kwargs)
                if inspect.isawaitable(value):
                    value = _waited(_HelperCall(value), cancellers, step.stop)
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
        value = await _called(call)
    except asyncio.CancelledError:
        if not _stopped(stop):  # cancelled from outside (Ctrl-C, a cancelled task): the loop ends with it
            raise
        return Outcome(duration=time.perf_counter() - started, stopped=True, interrupted=True)
    except Exception as exc:
        return Outcome(exception=exc, duration=time.perf_counter() - started)
    return Outcome(value, duration=time.perf_counter() - started)


async def _called(call: PreparedCall) -> Any:
    """The call's value: an ``async def`` tool awaited on this loop; a plain function called here, in the loop's
    thread (as the user's thread-bound objects expect), or, with ``Tool(run_in_thread=True)``, in a daemon worker
    thread: a Stop or a cancellation from outside (Ctrl-C) does not wait for that one (it is abandoned there, its
    late result dropped)."""
    helper = _threaded(call)
    if helper is not None:
        try:
            return await asyncio.wrap_future(helper.start(contextvars.copy_context()))
        except BaseException:
            helper.abandon()
            raise
    value = call.tool.fn(*call.args, **call.kwargs)
    if inspect.isawaitable(value):
        value = await value
    return value


async def arun_tool_calls(step: RunToolCalls, running: set[asyncio.Task[Outcome]] | None = None,
                          cut: list[Outcome] | None = None) -> list[Outcome]:
    """The async client: concurrently when every call is to an ``async def`` tool, else in order.

    Each call runs as a task, kept in ``running`` while it runs: a Stop (``AsyncActStream.aclose``) sets
    ``step.stop`` and cancels them, so an ``async def`` tool ends at its next ``await`` (its record says it was
    stopped while it ran); a call cancelled before it started did not run. Cancelled from outside (a Ctrl-C), the
    calls are cancelled too, the cancellation goes on, and ``cut`` (when given) gets what each call came to: the
    finished ones' outcomes, the running ones interrupted as a Ctrl-C interrupts them, the others not run."""
    watched: set[asyncio.Task[Outcome]] = set() if running is None else running
    tasks: list[asyncio.Task[Outcome]] = []

    def started(call: PreparedCall) -> asyncio.Task[Outcome]:
        task = asyncio.ensure_future(_one(call, step.stop))
        watched.add(task)
        task.add_done_callback(watched.discard)
        tasks.append(task)
        return task

    def outcome(task: asyncio.Task[Outcome]) -> Outcome:
        return Outcome(stopped=True) if task.cancelled() else task.result()

    try:
        if len(step.calls) > 1 and all(call.tool.is_async for call in step.calls):
            await asyncio.wait([started(call) for call in step.calls])
        else:
            for call in step.calls:
                await asyncio.wait([started(call)])
    except asyncio.CancelledError:  # the caller was cancelled: so are the calls
        for task in tasks:
            task.cancel()
        if cut is not None:
            ended = [outcome(t) if t.done() else Outcome(stopped=True, interrupted=True, ctrl_c=True) for t in tasks]
            cut[:] = ended + [Outcome(stopped=True)] * (len(step.calls) - len(tasks))
        raise
    return [outcome(task) for task in tasks]
