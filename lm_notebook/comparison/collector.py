"""The garbage collector paused while a comparison makes its rows in bulk, counted across every caller.

A cached re-run's 1,000 records, keys and frame are tens of thousands of new objects; each batch of them set off a
collection of the whole heap's young objects, and now and then of all of it, pandas' included (tens of milliseconds),
for nothing. But the collector's switch is one for the process, shared by every ``acompare`` task on a loop and
every thread: so the pause is counted. The first hold in notes whether the collector was on and turns it off; only
the last one out turns it back on, and only if it was on before the first one came in (a collector the user turned
off stays off). A hold is released on any way out of its ``with`` block: an exception, a cancellation, Ctrl-C.

>>> import gc
>>> with gc_paused():
...     with gc_paused() as inner:
...         inner.release()  # done early: the outer hold still keeps it off
...         gc.isenabled()
False
>>> gc.isenabled()
True
"""

from __future__ import annotations

import gc
import threading
from types import TracebackType

_lock = threading.Lock()
_holders: set[CollectorPause] = set()
_restore = False  # whether the last one out turns the collector back on


class CollectorPause:
    """One hold on the pause: taken by ``with``, given back when the block ends, or earlier by :meth:`release`
    (a run that is going to stream gives it back before the first row is sent). Releasing twice is harmless."""

    __slots__ = ()

    def __enter__(self) -> CollectorPause:
        global _restore
        try:
            with _lock:
                enabled = gc.isenabled()
                _holders.add(self)
                if len(_holders) == 1:
                    _restore = enabled
                    gc.disable()
        except BaseException:  # interrupted on the way in: the block will not run, nor its exit
            self.release()
            raise
        return self

    def release(self) -> None:
        """Give this hold back (once): the last one out restores the collector as the first one in found it."""
        global _restore
        with _lock:
            if self not in _holders:
                return
            _holders.discard(self)
            if not _holders and _restore:
                _restore = False
                gc.enable()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


def gc_paused() -> CollectorPause:
    """A new hold on the collector's pause, for a ``with`` block."""
    return CollectorPause()
