"""A cell the user stopped ends in one line, however often Stop is pressed.

The first Ctrl-C (Jupyter's Stop) stops the cell; its handler then shows what is kept (the partial answer, the
tool calls) and makes the one-line message. Stop pressed again meanwhile (an impatient user, a frontend that
repeats it) raised a second ``KeyboardInterrupt`` inside that wind-down: the cell ended in a raw traceback and lost
what was being shown. :func:`interrupts_held` makes the cell deaf to Ctrl-C for that wind-down only: it is already
stopping, which is all a second Stop asks for. Ctrl-C works again as soon as it is done — the rest of a cell that
catches the ``KeyboardInterrupt`` (a loop of ``run_cell_magic`` calls) can be stopped again, and so can a script
calling the magic outside any cell; IPython's ``post_execute`` restores it too, should the wind-down not end.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from IPython.core.interactiveshell import InteractiveShell


@contextmanager
def interrupts_held(shell: InteractiveShell) -> Iterator[None]:
    """Ignore Ctrl-C inside the block (then the handler before is back; at the latest when the running cell ends).
    Only the main thread can do this (signals are its own); elsewhere, or when SIGINT's handler was not set from
    Python, nothing changes."""
    restore = hold_interrupts(shell)
    try:
        yield
    finally:
        restore()


def hold_interrupts(shell: InteractiveShell) -> Callable[..., None]:
    """Ignore Ctrl-C until the returned ``restore()`` is called or the running cell ends, whichever comes first."""
    if threading.current_thread() is not threading.main_thread():
        return _nothing
    before = signal.getsignal(signal.SIGINT)
    if before is None or before == signal.SIG_IGN:
        return _nothing
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    restored = False

    def restore(*_: Any) -> None:
        nonlocal restored
        if restored:
            return
        restored = True
        shell.events.unregister("post_execute", restore)
        signal.signal(signal.SIGINT, before)

    shell.events.register("post_execute", restore)
    return restore


def _nothing(*_: Any) -> None:
    return None
