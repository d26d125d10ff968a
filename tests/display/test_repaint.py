"""The one throttled repaint: first change at once, then at most once an interval, and a final paint on stop.

Driven by a fake clock and :meth:`Repainter.tick` (one step of its thread), then the thread itself, waited on with
events: nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import logging
import threading

import pytest

from lm_notebook.display import repaint
from lm_notebook.display.repaint import Repainter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Canvas:
    """Records what was painted: the live paints and the final one, and on which thread."""

    def __init__(self) -> None:
        self.version = 0  # what the "reader" has written so far
        self.painted: list[str] = []
        self.threads: list[str] = []
        self.event = threading.Event()

    def paint(self) -> None:
        self.painted.append(f"v{self.version}")
        self.threads.append(threading.current_thread().name)
        self.event.set()

    def final(self) -> None:
        self.painted.append("final")


def test_the_first_change_is_painted_at_once_then_at_most_once_an_interval() -> None:
    clock, canvas = FakeClock(), Canvas()
    repainter = Repainter(canvas.paint, interval=0.5, clock=clock)
    assert repainter.tick() is None and canvas.painted == []  # nothing changed: nothing to paint
    canvas.version = 1
    repainter.changed()
    assert repainter.tick() is None and canvas.painted == ["v1"]  # at once, no interval to wait
    canvas.version = 2
    repainter.changed()
    assert repainter.tick() == pytest.approx(0.5)  # too soon: wait half a second
    clock.advance(0.3)
    canvas.version = 3
    repainter.changed()
    assert repainter.tick() == pytest.approx(0.2) and canvas.painted == ["v1"]
    clock.advance(0.2)
    assert repainter.tick() is None and canvas.painted == ["v1", "v3"]  # the changes of an interval, in one paint
    clock.advance(10)
    assert repainter.tick() is None and canvas.painted == ["v1", "v3"]  # no change, no paint, however long
    assert repainter.paints == 2


def test_the_interval_runs_from_the_end_of_a_paint() -> None:
    clock = FakeClock()

    def slow_paint() -> None:
        clock.advance(0.4)  # the paint itself takes 0.4 s

    repainter = Repainter(slow_paint, interval=0.5, clock=clock)
    repainter.changed()
    repainter.tick()
    repainter.changed()
    assert repainter.tick() == pytest.approx(0.5)  # the reader gets a whole interval after a slow paint


def test_stop_paints_the_final_view_once_and_nothing_after_it() -> None:
    clock, canvas = FakeClock(), Canvas()
    repainter = Repainter(canvas.paint, interval=0.5, clock=clock)
    canvas.version = 1
    repainter.changed()
    repainter.tick()
    canvas.version = 2
    repainter.changed()  # a change still waiting for its interval...
    repainter.stop(final=canvas.final)  # ...gives way to the final paint
    assert canvas.painted == ["v1", "final"] and repainter.stopped
    repainter.changed()
    clock.advance(10)
    assert repainter.tick() is None
    repainter.stop(final=canvas.final)  # a second stop does nothing
    assert canvas.painted == ["v1", "final"]


def test_stop_without_a_final_view_flushes_the_last_change() -> None:
    clock, canvas = FakeClock(), Canvas()
    repainter = Repainter(canvas.paint, interval=0.5, clock=clock)
    canvas.version = 1
    repainter.changed()
    repainter.tick()
    canvas.version = 2
    repainter.changed()
    repainter.stop()
    assert canvas.painted == ["v1", "v2"]
    quiet = Repainter(canvas.paint, interval=0.5, clock=clock)
    quiet.stop()  # nothing changed: nothing to flush
    assert canvas.painted == ["v1", "v2"]


def test_the_thread_paints_the_first_change_at_once_and_waits_for_the_clock_after() -> None:
    clock, canvas = FakeClock(), Canvas()
    repainter = Repainter(canvas.paint, interval=0.05, clock=clock, name="test-repaint")
    repainter.start()
    canvas.version = 1
    repainter.changed()
    assert canvas.event.wait(10)  # painted with the clock standing still
    canvas.event.clear()
    canvas.version = 2
    repainter.changed()
    clock.advance(0.05)  # the interval has passed: the thread paints the change
    assert canvas.event.wait(10)
    canvas.version = 3
    repainter.changed()  # the clock stands still from here: only stop() shows this one
    repainter.stop(final=canvas.final)
    assert canvas.painted == ["v1", "v2", "final"]
    assert set(canvas.threads) == {"test-repaint"}
    with pytest.raises(RuntimeError, match="already started"):
        repainter.start()


def test_the_thread_runs_in_the_starters_context() -> None:
    import contextvars

    cell: contextvars.ContextVar[str] = contextvars.ContextVar("cell", default="none")
    seen: list[str] = []
    done = threading.Event()

    def paint() -> None:
        seen.append(cell.get())
        done.set()

    repainter = Repainter(paint, interval=0.01)
    cell.set("cell 7")  # what IPython's kernel does with the parent header of the cell being run
    repainter.start()
    repainter.changed()
    assert done.wait(10)
    repainter.stop()
    assert seen == ["cell 7"]


def test_a_heartbeat_repaints_with_no_change_and_never_holds_back_a_change() -> None:
    clock, canvas = FakeClock(), Canvas()
    repainter = Repainter(canvas.paint, interval=0.5, clock=clock, heartbeat=1.0)
    assert repainter.tick() == pytest.approx(1.0) and canvas.painted == []  # the first beat is a second away
    clock.advance(1.0)
    assert repainter.tick() == pytest.approx(1.0) and canvas.painted == ["v0"]  # painted with nothing changed
    clock.advance(0.4)
    assert repainter.tick() == pytest.approx(0.6)
    canvas.version = 1
    repainter.changed()  # just after a heartbeat paint, the first change is painted at once all the same
    assert repainter.tick() == pytest.approx(1.0) and canvas.painted == ["v0", "v1"]
    repainter.end_heartbeat()
    clock.advance(30)
    assert repainter.tick() is None and canvas.painted == ["v0", "v1"]  # no beats after the heartbeat ends
    canvas.version = 2
    repainter.changed()
    repainter.changed()  # changes still paint, throttled as ever
    assert repainter.tick() is None and canvas.painted == ["v0", "v1", "v2"]
    assert repainter.paints == 3


def test_the_thread_beats_on_the_clock_and_a_change_during_a_long_beat_is_painted_at_once() -> None:
    clock, canvas = FakeClock(), Canvas()
    beating = Repainter(canvas.paint, interval=0.5, clock=clock, heartbeat=0.01, name="test-beat")
    beating.start()
    clock.advance(0.01)  # a beat's worth of clock: the thread paints with nothing changed
    assert canvas.event.wait(10)
    beating.stop()
    assert canvas.painted[0] == "v0" and set(canvas.threads) == {"test-beat"}

    canvas = Canvas()
    waiting = Repainter(canvas.paint, interval=0.5, clock=clock, heartbeat=3600.0)
    waiting.start()  # the thread now waits an hour for its beat...
    canvas.version = 1
    waiting.changed()  # ...and a change wakes it: painted with the clock standing still
    assert canvas.event.wait(10)
    waiting.stop()
    assert canvas.painted == ["v1"]


def test_a_paint_that_raises_is_logged_once_and_painting_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    clock, canvas = FakeClock(), Canvas()
    failures = 2  # the first two paints fail
    failed = threading.Event()

    def paint() -> None:
        nonlocal failures
        if failures:
            failures -= 1
            failed.set()
            raise ValueError("the front-end refused the frame")
        canvas.paint()

    repainter = Repainter(paint, interval=0.0, clock=clock, name="test-failing")  # every change painted at once
    caplog.set_level(logging.ERROR, logger="lm_notebook.display.repaint")
    repainter.start()
    repainter.changed()  # painted at once, and fails
    assert failed.wait(10)
    failed.clear()
    repainter.changed()  # fails again: not logged again
    assert failed.wait(10)
    canvas.version = 3
    repainter.changed()  # the thread is still there: this one is painted
    assert canvas.event.wait(10)
    repainter.stop(final=canvas.final)
    assert canvas.painted == ["v3", "final"] and repainter.paint_errors == 2
    logged = [r for r in caplog.records if r.name == "lm_notebook.display.repaint"]
    assert len(logged) == 1 and "test-failing" in logged[0].getMessage()
    assert logged[0].exc_info is not None and "refused the frame" in str(logged[0].exc_info[1])


def test_the_final_paint_happens_after_a_paint_that_raised() -> None:
    clock, canvas = FakeClock(), Canvas()

    def paint() -> None:
        raise ValueError("broken")

    repainter = Repainter(paint, interval=0.5, clock=clock)
    repainter.changed()
    assert repainter.tick() is None  # the error did not escape the step
    repainter.changed()
    repainter.stop(final=canvas.final)
    assert canvas.painted == ["final"] and repainter.paint_errors == 1


def test_stop_returns_while_a_paint_is_stuck_and_still_paints_the_final_view(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(repaint, "JOIN_TIMEOUT", 0.01)  # how long stop() gives the stuck paint
    canvas = Canvas()
    painting, release = threading.Event(), threading.Event()

    def stuck_paint() -> None:
        painting.set()
        release.wait()  # held by the test: a front-end that never answers

    repainter = Repainter(stuck_paint, interval=0.5, clock=FakeClock(), name="test-stuck")
    repainter.start()
    repainter.changed()
    assert painting.wait(10)
    returned = threading.Event()

    def stop() -> None:
        repainter.stop(final=canvas.final)
        returned.set()

    stopper = threading.Thread(target=stop, name="test-stopper", daemon=True)
    stopper.start()
    try:
        assert returned.wait(10), "stop() waited on the stuck paint"
        assert canvas.painted == ["final"]
    finally:
        release.set()
        stopper.join(10)
    repainter.changed()
    assert repainter.tick() is None and canvas.painted == ["final"]  # nothing paints after the final view


def test_stop_skips_the_flush_rather_than_paint_beside_a_stuck_paint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repaint, "JOIN_TIMEOUT", 0.01)
    calls: list[str] = []
    painting, release = threading.Event(), threading.Event()

    def stuck_paint() -> None:
        calls.append(threading.current_thread().name)
        painting.set()
        release.wait()

    repainter = Repainter(stuck_paint, interval=0.5, clock=FakeClock(), name="test-stuck")
    repainter.start()
    repainter.changed()
    assert painting.wait(10)
    repainter.changed()  # a change the stuck paint will not show
    returned = threading.Event()

    def stop() -> None:
        repainter.stop()
        returned.set()

    stopper = threading.Thread(target=stop, name="test-stopper", daemon=True)
    stopper.start()
    try:
        assert returned.wait(10), "stop() waited on the stuck paint"
        assert calls == ["test-stuck"]  # no second paint beside the stuck one
    finally:
        release.set()
        stopper.join(10)


def test_a_paint_that_sent_several_messages_holds_the_next_change_back_as_many_intervals() -> None:
    clock = FakeClock()
    sent = [2]
    repainter = Repainter(lambda: sent[0], interval=0.5, clock=clock)
    repainter.changed()
    assert repainter.tick() is None and repainter.paints == 1  # the first change at once; it sent two messages
    repainter.changed()
    assert repainter.tick() == pytest.approx(1.0)  # two intervals: ≤ 1 / interval messages a second
    clock.advance(1.0)
    sent[0] = 1
    assert repainter.tick() is None and repainter.paints == 2
    repainter.changed()
    assert repainter.tick() == pytest.approx(0.5)  # one message: one interval
