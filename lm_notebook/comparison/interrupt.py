"""Stopping a comparison: Ctrl-C, the notebook's Stop button, or a ``KeyboardInterrupt`` raised in a ``progress=``
callback end ``compare`` / ``acompare`` with :class:`ComparisonInterrupted` — a ``KeyboardInterrupt``, so the cell
(and a loop of comparisons, and "Run all") stops — whose ``frame`` holds every row so far.
:func:`last_comparison` keeps that frame (and every finished comparison's) for the user.

How Ctrl-C reaches a run, by where it runs:

- ``compare`` in a script: ``asyncio.run``'s own SIGINT handler cancels the run (Python 3.11+).
- ``compare`` in a notebook cell (inside the kernel's running loop, with nest_asyncio): :class:`CtrlCCancels` sets
  the SIGINT handler in force aside and cancels the run. Left to Python's default handler, Ctrl-C raises
  ``KeyboardInterrupt`` wherever the main thread is, and inside httpx's connection set-up (anyio's task group) it can
  be lost: the run went on to the end (about one Ctrl-C in eight, in the loop test of ``test_compare_interrupt``).
- ``acompare``: a cancellation is a Stop only when a SIGINT came while it ran (:class:`SigintWatch`). Cancelled by
  code (a timeout, a ``TaskGroup``, ``task.cancel()``) it raises ``CancelledError``, as asyncio expects; the rows so
  far are still in :func:`last_comparison`.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Coroutine
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pandas as pd

_RED, _RESET = "\x1b[0;31m", "\x1b[0m"
T = TypeVar("T")

_last: pd.DataFrame | None = None


def last_comparison() -> pd.DataFrame | None:
    """The DataFrame of the latest ``compare()`` / ``acompare()`` in this process (None before the first).

    After an interrupt it is the frame of the stopped run (the same object as ``ComparisonInterrupted.frame``):
    finished rows complete, unfinished ones ``status == "cancelled"`` with their partial text.

    >>> df = lm_notebook.last_comparison()   # doctest: +SKIP
    """
    return _last


def remember(frame: pd.DataFrame) -> None:
    """Keep ``frame`` as :func:`last_comparison`."""
    global _last
    _last = frame


class ComparisonInterrupted(KeyboardInterrupt):
    """``compare()`` or ``acompare()`` was stopped (Ctrl-C, the notebook's Stop, a ``KeyboardInterrupt``).

    - ``frame``: every row so far — finished rows complete, unfinished ones ``status == "cancelled"`` with their
      partial text (also :func:`last_comparison`).
    - ``finished`` of ``total`` rows settled (answered, failed, or taken from the cache).
    - ``scored``: with ``checks=``, the rows with a verdict (``passed`` not <NA>), else None.
    - ``resumable``: the finished answers are in the cache, so running the same call again with the same ``cache=``
      sends only the rest.

    In a notebook it shows as one line (``message``) rather than a traceback.
    """

    def __init__(self, frame: pd.DataFrame, *, resumable: bool = False, caller: str = "compare()") -> None:
        self.frame = frame
        self.total = len(frame)
        self.finished = int((frame["status"] != "cancelled").sum()) if "status" in frame else 0
        self.resumable = resumable
        cancelled = self.total - self.finished
        text = (
            f"{caller} stopped: {self.finished} of {self.total} rows finished, {cancelled} cancelled (an answer cut "
            f"short keeps its partial text); every row is in lm_notebook.last_comparison() (and this exception's "
            ".frame)."
        )
        # with checks=: how many rows have a verdict (a judge the Stop cut short leaves a row no verdict unless another
        # check failed it)
        self.scored = int(frame["passed"].notna().sum()) if "passed" in frame else None
        if self.scored is not None:
            text += f" {self.scored} of {self.finished} finished rows have a verdict (passed or failed)."
        if resumable:
            text += " Re-running it with the same cache= resumes: the finished answers are cached."
        self.message = text
        super().__init__(text)

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: the interrupt is the user's, there is no bug to trace
        return [f"{_RED}{type(self).__name__}{_RESET}: {self.message}"]


def run_to_end(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end: with ``asyncio.run`` in a script, on the running loop (nest_asyncio) in Jupyter.

    Either way the first Ctrl-C cancels the run (which then ends with the rows so far): ``asyncio.run`` does that
    itself, :class:`CtrlCCancels` does it inside a running loop. A cancellation before the run could keep any row
    comes out as ``KeyboardInterrupt``.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        # the run's task returns nothing, its result is kept aside: asyncio.run's SIGINT handler holds the task, and
        # putting the handler back reprs it (signal's enum lookup), result and all — a whole DataFrame's repr, a
        # third of a cached 1,000-row re-run
        kept: list[T] = []
        asyncio.run(_keep(coro, kept))
        return kept[0]
    import nest_asyncio

    nest_asyncio.apply(loop)
    task = loop.create_task(coro)
    with CtrlCCancels(task) as ctrl_c:
        try:
            return loop.run_until_complete(task)
        except asyncio.CancelledError:
            if ctrl_c.pressed:
                raise KeyboardInterrupt from None
            raise


async def _keep(coro: Coroutine[Any, Any, T], kept: list[T]) -> None:
    kept.append(await coro)


async def cancel_and_wait(tasks: list[asyncio.Task[Any]], timeout: float | None) -> None:
    """Cancel ``tasks`` and wait (up to ``timeout`` seconds) for them to end; their errors are retrieved, so none is
    reported as "never retrieved"."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class CtrlCCancels:
    """While a run goes on inside a running loop: the first Ctrl-C cancels ``task`` instead of raising
    ``KeyboardInterrupt``; a second one raises it as usual.

    The handler in force is set aside for the run and put back after: Python's default one, or ipykernel's for a cell
    with a top-level ``await`` (it would cancel the cell's coroutine, which waits for this run without ever reaching
    an ``await``: the run would go on to the end). An ignored SIGINT (``SIG_IGN``) stays ignored.
    """

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.pressed = False
        self._previous: Callable[[int, FrameType | None], Any] | int | None = None
        self._installed = False

    def __enter__(self) -> CtrlCCancels:
        if _main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):
                self._previous = previous
                signal.signal(signal.SIGINT, self._on_sigint)
                self._installed = True
        return self

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.pressed or self.task.done():
            raise KeyboardInterrupt
        self.pressed = True
        self.task.cancel()
        self.task.get_loop().call_soon_threadsafe(lambda: None)  # wake the loop if it waits in select()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._installed and signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, self._previous)


class SigintWatch:
    """Notes whether a SIGINT came while ``acompare`` ran, passing each one on to the handler in force.

    ``asyncio.run`` and ipykernel turn Ctrl-C into a cancellation of the task running ``acompare``; this is how
    ``acompare`` tells that cancellation (a Stop: raise :class:`ComparisonInterrupted`) from one by code. One watch
    handler serves every ``acompare`` running at once; the last one to end puts the previous handler back.
    """

    _presses = 0
    _active = 0
    _previous: Callable[[int, FrameType | None], Any] | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._start = 0
        self._entered = False

    @property
    def pressed(self) -> bool:
        return SigintWatch._presses > self._start

    def __enter__(self) -> SigintWatch:
        cls = SigintWatch
        with cls._lock:
            self._start = cls._presses
            if not _main_thread():
                return self
            if cls._active == 0:
                previous = signal.getsignal(signal.SIGINT)
                if not callable(previous):
                    return self  # SIG_IGN: nothing to watch
                cls._previous = previous
                signal.signal(signal.SIGINT, _watch_sigint)
            cls._active += 1
            self._entered = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        cls = SigintWatch
        with cls._lock:
            if not self._entered:
                return
            cls._active -= 1
            if cls._active == 0:
                if signal.getsignal(signal.SIGINT) is _watch_sigint and cls._previous is not None:
                    signal.signal(signal.SIGINT, cls._previous)
                cls._previous = None


def _watch_sigint(signum: int, frame: FrameType | None) -> None:
    SigintWatch._presses += 1
    previous = SigintWatch._previous
    if previous is None:
        raise KeyboardInterrupt
    previous(signum, frame)
