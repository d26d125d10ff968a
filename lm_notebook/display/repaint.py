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
``clock`` is injectable, and :meth:`Repainter.tick` is one step of the thread, so tests check the throttle without
waiting on wall time.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable

JOIN_TIMEOUT = 2.0  # how long stop() waits for a paint in progress before it paints the final view anyway


class Repainter:
    """Calls ``paint`` after a change: the first at once, then at most every ``interval`` seconds; one final paint.

    ``paint`` runs on the repaint thread, started in a copy of the starter's context (so what it shows lands where
    the starter's output goes: IPython's kernel keeps the cell's parent header in a context variable).
    """

    def __init__(
        self,
        paint: Callable[[], None],
        *,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        name: str = "lm_notebook-repaint",
    ) -> None:
        self.interval = interval
        self.paints = 0  # paints done by the thread or tick() (the final one not included)
        self._paint = paint
        self._clock = clock
        self._name = name
        self._state = threading.Condition()  # guards the flags below; never held while painting
        self._changed = False
        self._stopped = False
        self._idle = False  # the thread waits for a change with no timeout: changed() must wake it
        self._last: float | None = None  # when the last paint ended
        self._painting = threading.RLock()  # one paint at a time, and none after the final one
        self._thread: threading.Thread | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped

    def start(self) -> None:
        """Start the repaint thread (once)."""
        if self._thread is not None:
            raise RuntimeError("This Repainter is already started: create one per live view.")
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run,), name=self._name, daemon=True)
        self._thread.start()

    def changed(self) -> None:
        """Something to show changed (cheap: call it for every token)."""
        with self._state:
            self._changed = True
            if self._idle:
                self._idle = False
                self._state.notify()

    def tick(self) -> float | None:
        """One step: paint now if a change waits and the interval has passed since the last paint.

        Returns the seconds until the waiting change may be painted, or None when nothing waits (it was just painted,
        nothing changed, or the repainter is stopped).
        """
        with self._painting:
            with self._state:
                if self._stopped or not self._changed:
                    return None
                if self._last is not None:
                    remaining = self._last + self.interval - self._clock()
                    if remaining > 0:
                        return remaining
                self._changed = False
            try:
                self._paint()
            finally:
                self.paints += 1
                with self._state:
                    self._last = self._clock()
        return None

    def stop(self, final: Callable[[], None] | None = None) -> None:
        """End live painting and paint once more: ``final`` if given, else ``paint`` if a change is still unshown.

        No paint starts after this one. A second call does nothing.
        """
        with self._state:
            if self._stopped:
                return
            self._stopped = True
            pending = self._changed
            self._state.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)
        with self._painting:
            if final is not None:
                final()
            elif pending:
                self._paint()

    def _run(self) -> None:
        while True:
            wait = self.tick()
            with self._state:
                if self._stopped:
                    return
                if wait is not None:
                    self._state.wait(wait)
                elif not self._changed:  # a change that came during the paint is handled by the next tick
                    self._idle = True
                    self._state.wait_for(lambda: not self._idle or self._stopped)
                    self._idle = False
