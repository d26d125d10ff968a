"""A chat answer in a notebook cell: streamed live (throttled), then rendered exactly once it is complete.

How a streamed cell looks on the wire (the order matters for nbval, which ignores ``update_display_data``)::

    display_data          PLACEHOLDER (an empty text/plain), with a display_id
    update_display_data   live views of the answer, at most ``1 / interval`` a second, from one repaint thread
    update_display_data   PLACEHOLDER again: the live output empties itself
    execute_result        the final render (or display_data for a stopped / failed answer)

So a saved notebook holds ``[PLACEHOLDER, final]`` and nbval, which only sees the first and the last message,
collects the same ``[PLACEHOLDER, final]``. Where a frontend cannot update displays (terminal IPython), text is
written to ``sys.stdout`` as it arrives instead.

The views only collect parts; what they show comes from the pure renderers (:mod:`~lm_notebook.display.render`,
:mod:`~lm_notebook.display.footer`) and the live repaints from the one throttle (:mod:`~lm_notebook.display.repaint`).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol, cast

from lm_notebook.client.stream import ChatStream, StreamPart
from lm_notebook.client.types import ChatResult
from lm_notebook.display.footer import facts_text, footer_text, live_facts
from lm_notebook.display.render import AnswerFormat, Bundle, render_answer, render_bundle
from lm_notebook.display.render import RenderedChatResult as RenderedChatResult  # what %%lm returns, as before
from lm_notebook.display.repaint import Repainter

# The live output's first and last content. Empty text/plain renders as nothing in JupyterLab, Notebook 7 and
# VS Code; it must be the same object at both ends so the saved notebook and nbval agree.
PLACEHOLDER: Bundle = {"text/plain": ""}

DEFAULT_INTERVAL = 0.1  # seconds between repaints: ≤ 10 display messages a second, whatever the token rate


class StreamView(Protocol):
    """Where a streamed answer goes while it arrives."""

    def start(self) -> None: ...

    def add(self, part: StreamPart) -> None: ...

    def stop(self) -> None:
        """No more parts: end live updates (called on success, error and interrupt alike)."""

    def show_final(self, result: ChatResult, fmt: AnswerFormat, *, parsed: Any = None, note: str | None = None) -> None:
        """Show a stopped or failed answer (a finished one is the cell's value instead)."""


def live_updates_supported(shell: Any) -> bool:
    """True in a Jupyter kernel (JupyterLab, Notebook, VS Code): the frontend can update a display in place."""
    return getattr(shell, "kernel", None) is not None


def _display(bundle: Bundle, **kwargs: Any) -> None:
    from IPython.display import display

    display(bundle, raw=True, **kwargs)  # type: ignore[no-untyped-call]


class NotebookStreamView:
    """Live, throttled output of one answer in a notebook cell.

    The reading loop only appends text (cheap at any token rate); a :class:`Repainter` shows the first token at once,
    then repaints at most every ``interval`` seconds and only when something changed, so a fast model costs the kernel
    almost nothing and a stall still shows the last tokens. ``clock`` is the throttle's (tests pass a fake one).
    """

    def __init__(
        self,
        fmt: AnswerFormat,
        model: str | None,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fmt = fmt
        self.model = model or ""
        self.interval = interval
        self.display_id = uuid.uuid4().hex
        self.repaints = 0
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._tokens = 0
        self._repainter = Repainter(self._paint_live, interval=interval, clock=clock, name="lm_notebook-cell-repaint")

    def start(self) -> None:
        _display(PLACEHOLDER, display_id=self.display_id)
        self._paint_live()  # "waiting for the first token…"
        self._repainter.start()

    def add(self, part: StreamPart) -> None:
        if part.kind == "content":
            self._content.append(part.text)
        elif part.kind == "reasoning":
            self._reasoning.append(part.text)
        else:
            return
        self._tokens += 1
        self._repainter.changed()

    def stop(self) -> None:
        # the live output empties itself last: nothing repaints over the placeholder
        self._repainter.stop(final=lambda: self._update(PLACEHOLDER))

    def show_final(self, result: ChatResult, fmt: AnswerFormat, *, parsed: Any = None, note: str | None = None) -> None:
        _display(render_answer(result, fmt, parsed=parsed, note=note))

    def _paint_live(self) -> None:
        content = "".join(self._content)
        reasoning = "".join(self._reasoning)
        footer = facts_text(live_facts(self.model, self._tokens))
        self._update(render_bundle(content, reasoning, self.fmt, footer, live=True))

    def _update(self, bundle: Bundle) -> None:
        self.repaints += 1
        _display(bundle, display_id=self.display_id, update=True)


class TerminalStreamView:
    """Terminal IPython: write answer text to ``sys.stdout`` as it comes (thinking dimmed, apart)."""

    def __init__(self, fmt: AnswerFormat, model: str | None) -> None:
        self.fmt = fmt
        self.model = model
        self.wrote_answer = False
        self._in_thinking = False
        self._tty = bool(getattr(sys.stdout, "isatty", lambda: False)())

    def _write(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def start(self) -> None:
        pass

    def add(self, part: StreamPart) -> None:
        if part.kind == "reasoning":
            if not self._in_thinking:
                self._in_thinking = True
                self._write("\x1b[2m[thinking] " if self._tty else "[thinking] ")
            self._write(part.text)
            return
        if part.kind != "content":
            return
        if self._in_thinking:
            self._in_thinking = False
            self._write("\x1b[0m\n\n" if self._tty else "\n\n")
        self.wrote_answer = True
        self._write(part.text)

    def stop(self) -> None:
        if self._in_thinking:
            self._in_thinking = False
            self._write("\x1b[0m\n" if self._tty else "\n")

    def show_final(self, result: ChatResult, fmt: AnswerFormat, *, parsed: Any = None, note: str | None = None) -> None:
        """Text already written stays; add what is missing and the footer."""
        if not self.wrote_answer:
            bundle = render_answer(result, fmt, parsed=parsed, note=note)
            self._write(cast(str, bundle["text/plain"]) + "\n")
            return
        footer = footer_text(result, note=note)
        self._write(f"\n\n— {footer}\n" if footer else "\n")


def make_view(shell: Any, fmt: AnswerFormat, model: str | None, *, interval: float = DEFAULT_INTERVAL) -> StreamView:
    if live_updates_supported(shell):
        return NotebookStreamView(fmt, model, interval=interval)
    return TerminalStreamView(fmt, model)


def stream_into(stream: ChatStream, view: StreamView) -> ChatResult:
    """Feed every part of ``stream`` to ``view``; return the result.

    On any exception (``KeyboardInterrupt`` included) the stream is closed and live updates end before it
    propagates; ``stream.result()`` then gives what arrived, marked ``stopped``.
    """
    view.start()
    try:
        for part in stream.iter_parts():
            view.add(part)
    except BaseException:
        stream.close()
        view.stop()
        raise
    view.stop()
    return stream.result()


def show_bundle(bundle: Bundle) -> None:
    """Display a ready mimebundle as one output."""
    _display(bundle)
