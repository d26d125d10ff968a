"""The fake server's clock: every pause the server takes waits on it — loading a model, the time to the first token,
the token rate, a ``stall`` fault, the split of a multi-byte character — and every idle ``ttl`` is timed by it.

:class:`LoopClock` (the default) is real time: pauses take as long as they say. :class:`ManualClock` stands still
until the test moves it, so a test checks pacing exactly, and passes the same on a busy machine as on an idle one
(the idea of Twisted's ``task.Clock``)::

    clock = ManualClock()
    with MockLMStudioServer(models=[ModelSpec("m", load_time=2.0)], clock=clock) as server:
        # ... a request to "m" is sent from another thread; the server starts loading the model ...
        assert clock.wait_for_pending() == [2.0]   # the load is due 2 s after the start
        clock.advance(2.0)                          # the load finishes; the answer goes out
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    """What :meth:`Clock.call_later` returns: a pending call that can be called off."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Time as the fake server sees it. ``sleep`` and ``call_later`` are used on the server's event loop only;
    ``now`` may be read from any thread."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle: ...


class LoopClock:
    """Real time: the event loop's own monotonic clock, sleeps and timers."""

    def now(self) -> float:
        return time.monotonic()  # what asyncio's default loop.time() reads too

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback)

    def __repr__(self) -> str:
        return "LoopClock()"


class _Timer:
    """One pending sleep or call on a :class:`ManualClock`; ordered by when it is due, then by when it was set."""

    def __init__(self, clock: ManualClock, when: float, order: int, loop: asyncio.AbstractEventLoop,
                 callback: Callable[[], None]) -> None:
        self.clock = clock
        self.when = when
        self.order = order
        self.loop = loop
        self.callback = callback
        self.cancelled = False

    def __lt__(self, other: _Timer) -> bool:
        return (self.when, self.order) < (other.when, other.order)

    def cancel(self) -> None:
        self.clock._cancel(self)


class ManualClock:
    """A clock that moves only when told to (:meth:`advance`, :meth:`advance_to`), from any thread.

    :meth:`wait_for_pending` is how a test learns that the server has reached a pause (and when it is due), without
    sleeping: ``clock.wait_for_pending(2)`` returns once two sleeps or timers are waiting on the clock.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._timers: list[_Timer] = []  # a heap
        self._order = itertools.count()
        self._changed = threading.Condition()

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now():g}, pending={self.pending()})"

    # --- the server's side (its event loop) ---------------------------------------------------------------------
    def now(self) -> float:
        with self._changed:
            return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        timer = self._add(seconds, loop, wake)
        try:
            await woken
        finally:
            timer.cancel()  # a sleep ended early (the client left, the server stops) is no longer pending

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return self._add(delay, asyncio.get_running_loop(), callback)

    def _add(self, delay: float, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> _Timer:
        with self._changed:
            timer = _Timer(self, self._now + max(delay, 0.0), next(self._order), loop, callback)
            heapq.heappush(self._timers, timer)
            self._changed.notify_all()
            return timer

    def _cancel(self, timer: _Timer) -> None:
        with self._changed:
            if not timer.cancelled:
                timer.cancelled = True
                self._timers.remove(timer)
                heapq.heapify(self._timers)
                self._changed.notify_all()

    # --- the test's side (any thread) ---------------------------------------------------------------------------
    def pending(self) -> list[float]:
        """When each waiting sleep and timer is due, soonest first."""
        with self._changed:
            return sorted(t.when for t in self._timers)

    def wait_for_pending(self, count: int = 1, timeout: float = 10.0) -> list[float]:
        """Block until at least ``count`` sleeps or timers wait on the clock; returns :meth:`pending`.

        Raises ``TimeoutError`` (with what is pending) when that does not happen within ``timeout`` real seconds.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._timers) >= count, timeout):
                pending = sorted(t.when for t in self._timers)
                raise TimeoutError(
                    f"{len(pending)} sleep(s) or timer(s) wait on the clock after {timeout:g} s, not {count}: "
                    f"is the request that should pause still on its way? pending: {pending}"
                )
            return sorted(t.when for t in self._timers)

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward; see :meth:`advance_to`."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds!r})")
        with self._changed:
            target = self._now + seconds
        self.advance_to(target)

    def advance_to(self, when: float) -> None:
        """Move the clock to ``when``, waking every sleep and running every timer due by then, soonest first.

        Returns once they have run on their event loops; what a woken sleep does next runs on as usual (wait for its
        effect, or for its next pause with :meth:`wait_for_pending`).
        """
        with self._changed:
            if when < self._now:
                raise ValueError(f"a clock cannot go back: advance_to({when!r}) at {self._now!r}")
            self._now = when
            due: list[_Timer] = []
            while self._timers and self._timers[0].when <= when:
                timer = heapq.heappop(self._timers)
                timer.cancelled = True  # it is no longer pending: cancelling it later is a no-op
                due.append(timer)
            self._changed.notify_all()
        loops: dict[asyncio.AbstractEventLoop, list[Callable[[], None]]] = {}
        for timer in due:
            loops.setdefault(timer.loop, []).append(timer.callback)
        for loop, callbacks in loops.items():
            _run_on(loop, callbacks)


def _run_on(loop: asyncio.AbstractEventLoop, callbacks: list[Callable[[], None]]) -> None:
    """Run ``callbacks`` in order on ``loop`` (its own thread) and wait for them; a stopped loop has no one to wake."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        for callback in callbacks:
            callback()
        return
    if loop.is_closed():
        return
    ran = threading.Event()

    def run_all() -> None:
        try:
            for callback in callbacks:
                callback()
        finally:
            ran.set()

    try:
        loop.call_soon_threadsafe(run_all)
    except RuntimeError:  # closed between the check and the call
        return
    # a loop that stops before running it must not hang the test: wait while it is alive
    while not ran.wait(0.05):
        if loop.is_closed() or not loop.is_running():
            return
