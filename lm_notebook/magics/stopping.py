"""A cell the user stopped ends in one line, however often Stop is pressed.

The first Ctrl-C (Jupyter's Stop) stops the cell; its handler then shows what is kept (the partial answer, the
tool calls) and makes the one-line message. Stop pressed again meanwhile (an impatient user, a frontend that
repeats it) raised a second ``KeyboardInterrupt`` inside that wind-down: the cell ended in a raw traceback and lost
what was being shown. :func:`hold_interrupts` makes the cell deaf to Ctrl-C from the moment it is stopping until it
ends (IPython's ``post_execute``): it is already stopping, which is all a second Stop asks for.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from IPython.core.interactiveshell import InteractiveShell


def hold_interrupts(shell: InteractiveShell) -> None:
    """Ignore Ctrl-C until the running cell ends (then the handler before is back). Only the main thread can do
    this (signals are its own); elsewhere, or when SIGINT's handler was not set from Python, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return
    before = signal.getsignal(signal.SIGINT)
    if before is None or before == signal.SIG_IGN:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def restore(*_: Any) -> None:
        shell.events.unregister("post_execute", restore)
        signal.signal(signal.SIGINT, before)

    shell.events.register("post_execute", restore)
