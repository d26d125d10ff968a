"""One throttled live repaint, shared by ``%%lm``'s cell view and the chat panel's streaming answer.

Like rich's ``Live`` (its ``_RefreshThread`` in ``rich/live.py``): the reader only says that something changed, which
costs a lock and a flag at any token rate; one thread paints. Unlike rich, it paints only after a change, and the
first change at once (the time to the first token is what a user feels), then at most once per ``interval``::

    repainter = Repainter(paint, interval=0.1)
    repainter.start()
    for part in stream:
        buffer.append(part)
        repainter.changed()
    repainter.stop(final=paint_final)   # no paint after this one

The interval runs from the end of one paint to the start of the next, so a slow paint still leaves the reader time.
A paint that sent several messages may say how many (it returns an int): the next change then waits that many
intervals, so the messages a second stay at most ``1 / interval`` whatever a paint sends (``%%lm`` appends a finished
block and opens a new tail in one paint).
``clock`` is injectable, and :meth:`Repainter.tick` is one step of the thread, so tests check the throttle without
waiting on wall time.

A ``heartbeat`` also repaints with no change, every ``heartbeat`` seconds, until :meth:`Repainter.end_heartbeat`: what
shows a clock ticking ("Loading qwen… 3 s") while nothing arrives. Heartbeat paints do not hold back the next change,
so the first token after them is still painted at once.

A ``paint`` that raises does not end live painting: the error is logged once (``logging``, this module's logger) and
the next change is painted as ever; the final paint still happens. A paint that hangs holds :meth:`Repainter.stop` up
for at most ``JOIN_TIMEOUT``: see there.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable

JOIN_TIMEOUT = 2.0  # how long stop() waits for a paint in progress before it paints the final view anyway

logger = logging.getLogger(__name__)


class Repainter:
    """Calls ``paint`` after a change: the first at once, then at most every ``interval`` seconds; one final paint.

    ``paint`` runs on the repaint thread, started in a copy of the starter's context (so what it shows lands where
    the starter's output goes: IPython's kernel keeps the cell's parent header in a context variable).
    """

    def __init__(
        self,
        paint: Callable[[], int | None],
        *,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        name: str = "lm_notebook-repaint",
        heartbeat: float | None = None,
    ) -> None:
        self.interval = interval
        self.paints = 0  # paints done by the thread or tick() (the final one not included)
        self.paint_errors = 0  # paints that raised (the first is logged; painting goes on)
        self._paint = paint
        self._clock = clock
        self._name = name
        self._state = threading.Condition()  # guards the flags below; never held while painting
        self._changed = False
        self._stopped = False
        self._waiting = False  # the thread waits (for the interval, a heartbeat or a change): changed() may wake it
        self._last: float | None = None  # when the last paint of a change ended
        self._heartbeat = heartbeat
        self._last_beat = clock()  # when the last paint of any kind ended (or the repainter started)
        self._painting = threading.RLock()  # one paint at a time, and none after the final one
        self._thread: threading.Thread | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def started(self) -> bool:
        """The repaint thread has been started (it may have ended since)."""
        return self._thread is not None

    def start(self) -> None:
        """Start the repaint thread (once)."""
        if self._thread is not None:
            raise RuntimeError("This Repainter is already started: create one per live view.")
        with self._state:
            self._last_beat = self._clock()
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run,), name=self._name, daemon=True)
        self._thread.start()

    def changed(self) -> None:
        """Something to show changed (cheap: call it for every token)."""
        if self._changed:
            # already waiting for its paint, which reads what changed after it resets the flag (under the GIL, this
            # read comes before that reset, so the change is in that paint): no lock for every token
            return
        with self._state:
            if self._changed:
                return  # already waiting for its paint
            self._changed = True
            if self._waiting:  # idle, or waiting for a heartbeat: this change may be due at once
                self._state.notify()

    def end_heartbeat(self) -> None:
        """No more heartbeat paints: from now on only changes are painted (a second call does nothing)."""
        with self._state:
            self._heartbeat = None

    def tick(self) -> float | None:
        """One step: paint now if a change waits and the interval has passed since the last paint of a change, or
        if a heartbeat is due.

        Returns the seconds until the next paint may be due (a waiting change's or the heartbeat's), or None when
        nothing waits (nothing changed and no heartbeat, or the repainter is stopped).
        """
        with self._painting:
            with self._state:
                if self._stopped:
                    return None
                wait, due = self._due()
                if not due:
                    return wait
                shows_change = self._changed  # a heartbeat paint shows a waiting change too
                self._changed = False
            sent = 1
            try:
                sent = self._guarded_paint()
            finally:
                self.paints += 1
                with self._state:
                    self._last_beat = self._clock()
                    if shows_change:  # a paint that sent n messages holds the next change back n intervals
                        self._last = self._last_beat + (sent - 1) * self.interval
            with self._state:
                return None if self._stopped else self._due()[0]

    def _guarded_paint(self) -> int:
        """``paint``, whose error is logged (the first one) instead of ending the repaint thread: one bad frame must
        not freeze the view, and a traceback per frame would flood the log. Returns the messages it sent (≥ 1)."""
        try:
            sent = self._paint()
        except Exception:
            self.paint_errors += 1
            if self.paint_errors == 1:
                logger.exception("%s: a live paint failed (painting goes on; later failures are not logged)",
                                 self._name)
            return 1
        return sent if isinstance(sent, int) and sent > 1 else 1

    def _due(self) -> tuple[float | None, bool]:
        """(seconds until the next paint may be due or None, whether one is due now); ``_state`` is held."""
        now = self._clock()
        waits: list[float] = []
        due = False
        if self._changed:
            change_in = 0.0 if self._last is None else self._last + self.interval - now
            due = change_in <= 0
            waits.append(max(change_in, 0.0))
        if self._heartbeat is not None:
            beat_in = self._last_beat + self._heartbeat - now
            due = due or beat_in <= 0
            waits.append(max(beat_in, 0.0))
        return (min(waits) if waits else None), due

    def stop(self, final: Callable[[], None] | None = None) -> None:
        """End live painting and paint once more: ``final`` if given, else ``paint`` if a change is still unshown.

        No paint starts after this one. A second call does nothing. An error of ``final`` reaches the caller (it is
        the caller's own work, on its thread); one of ``paint`` is logged as on the thread.

        Bounded: a paint still running after ``JOIN_TIMEOUT`` (stuck, say, on a front-end that no longer answers)
        does not hold stop() up. ``final`` then runs without waiting for it, because it is what settles the
        caller's work (the chat panel's answer and its reply): skipping it would leave that unsettled for good,
        which is worse than the stuck paint, if it ever returns, showing its frame over the final one. The flush of
        a last change (no ``final``) is skipped instead: it would run ``paint`` beside itself.
        """
        with self._state:
            if self._stopped:
                return
            self._stopped = True
            pending = self._changed
            self._state.notify_all()
        deadline = time.monotonic() + JOIN_TIMEOUT  # real time, whatever clock the throttle reads
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)
        locked = self._painting.acquire(timeout=max(deadline - time.monotonic(), 0.0))
        try:
            if final is not None:
                final()
            elif pending and locked:
                self._guarded_paint()
        finally:
            if locked:
                self._painting.release()

    def _run(self) -> None:
        while True:
            self.tick()
            with self._state:
                if self._stopped:
                    return
                # decided under the lock that changed() takes: a change from here on finds the thread waiting
                wait, due = self._due()
                if due:
                    continue
                self._waiting = True
                try:
                    self._state.wait(wait)  # None: until a change or stop() wakes it
                finally:
                    self._waiting = False
