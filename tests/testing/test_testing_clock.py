"""The fake server's clocks: a ManualClock wakes sleeps and runs timers only when advanced, soonest first, from any
thread; the LoopClock is real time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from lm_notebook.testing import LoopClock, ManualClock
from lm_notebook.testing.clock import TimerHandle

T = TypeVar("T")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop in its own thread, as the fake server runs one."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=10)


def test_sleeps_wake_when_their_time_comes_soonest_first(loop: asyncio.AbstractEventLoop) -> None:
    clock = ManualClock(start=10.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    late = asyncio.run_coroutine_threadsafe(sleeper("late", 0.5), loop)
    early = asyncio.run_coroutine_threadsafe(sleeper("early", 0.25), loop)
    assert clock.wait_for_pending(2) == [10.25, 10.5]
    clock.advance(0.25)
    early.result(timeout=10)
    assert woke == [("early", 10.25)] and not late.done() and clock.pending() == [10.5]
    clock.advance(1.0)  # past its time: it wakes, late
    late.result(timeout=10)
    assert woke == [("early", 10.25), ("late", 11.25)]


def test_timers_run_in_order_before_advance_returns_and_cancel_takes_them_off(
    loop: asyncio.AbstractEventLoop,
) -> None:
    clock = ManualClock()
    ran: list[str] = []

    async def set_timers() -> TimerHandle:
        clock.call_later(0.5, lambda: ran.append("second"))
        clock.call_later(0.25, lambda: ran.append("first"))
        return clock.call_later(0.375, lambda: ran.append("cancelled"))

    handle = on(loop, set_timers())
    assert clock.pending() == [0.25, 0.375, 0.5]
    handle.cancel()
    assert clock.pending() == [0.25, 0.5]
    clock.advance_to(0.5)
    assert ran == ["first", "second"] and clock.pending() == []


def test_a_sleep_that_ends_early_is_no_longer_pending(loop: asyncio.AbstractEventLoop) -> None:
    clock = ManualClock()
    sleeping = asyncio.run_coroutine_threadsafe(clock.sleep(5.0), loop)
    assert clock.wait_for_pending() == [5.0]
    sleeping.cancel()  # as when a client goes away, or the server stops
    on(loop, asyncio.sleep(0))  # the cancellation has been delivered once the loop runs this
    assert clock.pending() == []


def test_time_never_goes_back_and_waiting_for_a_pause_that_never_comes_says_so() -> None:
    clock = ManualClock(start=1.0)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-0.5)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance_to(0.5)
    with pytest.raises(TimeoutError, match="0 sleep"):
        clock.wait_for_pending(timeout=0.01)


def test_advancing_past_a_stopped_loop_does_not_hang() -> None:
    clock = ManualClock()
    loop = asyncio.new_event_loop()
    handle = loop.run_until_complete(_call_later(clock))
    loop.close()
    clock.advance(1.0)  # nobody is left to run it
    assert clock.pending() == [] and handle is not None


async def _call_later(clock: ManualClock) -> TimerHandle:
    return clock.call_later(0.5, lambda: None)


def test_loop_clock_is_real_time() -> None:
    clock = LoopClock()

    async def run() -> list[str]:
        done = asyncio.Event()
        ran: list[str] = []
        def timer() -> None:
            ran.append("timer")
            done.set()

        clock.call_later(0, timer)
        await clock.sleep(0)
        await done.wait()
        return ran

    before = clock.now()
    assert asyncio.run(run()) == ["timer"]
    assert clock.now() >= before
