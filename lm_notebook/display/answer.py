"""A chat answer in a notebook cell: streamed live (throttled), then rendered exactly once it is complete.

How a streamed cell looks on the wire::

    display_data          the first live view ("waiting for the first token…" or "Loading MODEL… 0 s"), with a
                          display_id, shown once the request has gone out (the server works meanwhile)
    update_display_data   live views of the answer's unfinished tail, at most ``1 / interval`` messages a second, from
                          one repaint thread (and once a second while a model loads, the seconds ticking)
    display_data          a new tail below, each time the old one is updated a last time to the finished Markdown
                          blocks it held: each finished block is sent once (:mod:`~lm_notebook.display.live_answer`)
    clear_output          wait=True: the live view goes when the next output comes, so it never flickers away
    execute_result        the final render (or display_data for a stopped / failed answer, or the error)

So JupyterLab, Notebook 7, VS Code and nbclient (``jupyter nbconvert --execute``) save ``[final]``: the answer,
once. Whoever shows the answer after :meth:`NotebookStreamView.stop` must show something (the cell's value, a
display or an error), or the last live view stays. nbval 0.11 ignores ``clear_output`` and
``update_display_data``: it needs the frontend's reading of them, :class:`~lm_notebook.display.frontend.FrontendReplay`
(``notebooks/conftest.py`` installs it). Where a frontend cannot update displays (terminal IPython), text is written
to ``sys.stdout`` as it arrives instead.

The views only collect parts; what they show comes from the pure renderers (:mod:`~lm_notebook.display.render`,
:mod:`~lm_notebook.display.footer`) and the live repaints from the one throttle (:mod:`~lm_notebook.display.repaint`).
"""

from __future__ import annotations

import itertools
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol, cast

from lm_notebook.client.native_types import StreamProgress
from lm_notebook.client.stream import ChatStream, StreamPart
from lm_notebook.client.types import ChatResult
from lm_notebook.display.footer import facts_text, footer_text, live_facts
from lm_notebook.display.live_answer import LiveAnswer, Op
from lm_notebook.display.render import AnswerFormat, Bundle, render_answer
from lm_notebook.display.render import RenderedChatResult as RenderedChatResult  # what %%lm returns, as before
from lm_notebook.display.repaint import Repainter

DEFAULT_INTERVAL = 0.1  # seconds between repaints: ≤ 10 display messages a second, whatever the token rate
LOADING_TICK = 1.0  # seconds between repaints of "Loading MODEL… N s" while nothing arrives

# Display ids: unique in this process by a counter, across processes (a restarted kernel, other kernels of the same
# notebook) by a random prefix drawn once. A uuid4 per view read os.urandom on the way to the first token, and in a
# kernel every system call lets the kernel's other threads take the GIL first (0.5 ms a view, measured).
_DISPLAY_ID_PREFIX = uuid.uuid4().hex[:20]
_display_numbers = itertools.count()


def new_display_id() -> str:
    """An id for one live output, unique to it (a frontend updates every output shown with an id)."""
    return f"{_DISPLAY_ID_PREFIX}{next(_display_numbers):012x}"


class StreamView(Protocol):
    """Where a streamed answer goes while it arrives."""

    def start(self) -> None: ...

    def add(self, part: StreamPart) -> None: ...

    def stop(self) -> None:
        """No more parts: end live updates (called on success, error and interrupt alike). In a notebook the cell's
        next output (its value, a display, the error) replaces the live view: show one."""

    def show_final(self, result: ChatResult, fmt: AnswerFormat, *, parsed: Any = None, note: str | None = None) -> None:
        """Show a stopped or failed answer (a finished one is the cell's value instead)."""


def live_updates_supported(shell: Any) -> bool:
    """True in a Jupyter kernel (JupyterLab, Notebook, VS Code): the frontend can update a display in place."""
    return getattr(shell, "kernel", None) is not None


def _display(bundle: Bundle, **kwargs: Any) -> None:
    from IPython.display import display

    display(bundle, raw=True, **kwargs)  # type: ignore[no-untyped-call]


Publish = Callable[[Bundle, str, bool], None]  # (bundle, display id, whether it updates that display)


def live_publisher() -> Publish:
    """How live frames are sent: in a Jupyter kernel, as the kernel's display publisher sends a display, less the
    flush of stdout and stderr it does first (a cross-thread round trip to the kernel's IO thread, twice, for every
    frame: most of what a repaint cost the kernel). A live frame comes from a cell that prints nothing while it
    streams, and is replaced anyway; the first and the final outputs go through ``display`` as ever. Elsewhere (a
    terminal, a test's publisher): ``display``."""
    from IPython import get_ipython

    pub: Any = getattr(get_ipython(), "display_pub", None)
    session, socket = getattr(pub, "session", None), getattr(pub, "pub_socket", None)
    if session is None or socket is None or not hasattr(pub, "parent_header"):
        return lambda bundle, display_id, update: _display(bundle, display_id=display_id, update=update)
    topic = getattr(pub, "topic", None)

    def publish(bundle: Bundle, display_id: str, update: bool) -> None:
        content = {"data": bundle, "metadata": {}, "transient": {"display_id": display_id}}
        # the parent header is the cell's, in the repaint thread too (it runs in a copy of the cell's context)
        msg = session.msg("update_display_data" if update else "display_data", content, parent=pub.parent_header)
        for hook in getattr(pub, "_hooks", ()):  # what captures displays (thread-local: a thread's own)
            msg = hook(msg)
            if msg is None:
                return
        session.send(socket, msg, ident=topic)

    return publish


def _clear_at_next_output() -> None:
    from IPython.display import clear_output

    clear_output(wait=True)  # type: ignore[no-untyped-call]


class NotebookStreamView:
    """Live, throttled output of one answer in a notebook cell.

    The reading loop only appends text (cheap at any token rate); a :class:`Repainter` shows the first token at once,
    then repaints at most every ``interval`` seconds and only when something changed, so a fast model costs the kernel
    almost nothing and a stall still shows the last tokens. What a repaint sends is :class:`LiveAnswer`'s: finished
    Markdown blocks once each, as their own outputs, and the unfinished tail (see
    :mod:`~lm_notebook.display.live_answer` for the column of outputs, and where a status line or tool-call blocks
    go). With ``loading`` (the model is known not to be loaded: LM Studio loads it just in time), the view says
    "Loading MODEL… N s" until the first token, repainted every second. ``fake_server`` adds "fake server" to the
    footer. ``clock`` is the throttle's and the loading seconds' (tests pass a fake one).
    """

    def __init__(
        self,
        fmt: AnswerFormat,
        model: str | None,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        loading: bool = False,
        fake_server: bool = False,
    ) -> None:
        self.fmt = fmt
        self.model = model or ""
        self.interval = interval
        self.read_interval = interval  # how often the cell's reader need read the connection after the first token
        self.loading = loading
        self.fake_server = fake_server
        self.display_id = new_display_id()  # the first output's; each later output gets its own
        self._display_ids = [self.display_id]
        self.repaints = 0
        self.messages = 0  # display messages sent (the first included)
        self.live = LiveAnswer(fmt)
        self._tokens = 0
        self._stream: ChatStream | None = None  # the stream it reads, when it counts the tokens (read_from)
        self._progress: StreamProgress | None = None  # the native route's latest load / prompt progress
        self._publish: Publish | None = None  # how live frames are sent, once the first output is shown
        self._clock = clock
        self._started = clock()
        self._repainter = Repainter(
            self._paint_live, interval=interval, clock=clock, name="lm_notebook-cell-repaint",
            heartbeat=LOADING_TICK if loading else None,
        )

    @property
    def tokens(self) -> int:
        """The text pieces received so far (about one token each): the count a stopped answer's footer shows."""
        return self._stream.deltas if self._stream is not None else self._tokens

    def read_from(self, stream: ChatStream) -> ChatStream:
        """Read ``stream`` as this view shows it: the connection at most once a repaint interval after the first
        token (:meth:`~lm_notebook.client.stream.ChatStream.coalesce_reads`), so the text of a read comes as one
        part, and the footer counts the stream's tokens, not the parts. Returns the stream."""
        self._stream = stream
        return stream.coalesce_reads(self.read_interval)

    def start(self) -> None:
        self._started = self._clock()
        # the live output is created here, on the cell's thread; the repaint thread only updates it
        self._send(self.live.first(self._footer()))
        self._publish = live_publisher()
        if self.loading:  # its heartbeat ticks the loading seconds until the first token
            self._repainter.start()
        # else the repaint thread starts with the first part: not while the server works on the first token (its
        # start takes CPU and the GIL from a server on the same cores)

    def add(self, part: StreamPart) -> None:
        if isinstance(part.detail, StreamProgress):  # the native route's load / prompt progress: the footer says it
            self._progress = part.detail
            self._painting()
            self._repainter.changed()
            return
        if not self.live.add(part.kind, part.text):
            return
        first = not self._tokens
        if first and self.loading:
            self._repainter.end_heartbeat()  # loaded: from here on only new text repaints
        self._tokens += 1
        self._repainter.changed()
        if first:
            # painted here, on the reading thread, the moment it arrives: no hand-off to the repaint thread on the
            # way to the first visible token
            self._repainter.tick()
        self._painting()

    def _painting(self) -> None:
        """The repaint thread runs from here on (once started, for the view's life)."""
        if not self._repainter.started and self._publish is not None:
            self._repainter.start()

    def changed(self) -> None:
        """Something else in :attr:`live` changed (a status, an output added): repaint (throttled)."""
        self._painting()
        self._repainter.changed()

    def stop(self) -> None:
        # no repaint after this: the next output of the cell (the answer, or the error) replaces the live view; a
        # view never started (its request was not sent) has nothing to replace, and clears nothing of the cell's
        self._repainter.stop(final=_clear_at_next_output if self._publish is not None else None)

    def show_final(self, result: ChatResult, fmt: AnswerFormat, *, parsed: Any = None, note: str | None = None) -> None:
        _display(render_answer(result, fmt, parsed=parsed, note=note, approx_tokens=self.tokens,
                               fake_server=self.fake_server))

    def _footer(self) -> str:
        loading_for = max(0.0, self._clock() - self._started) if self.loading else None
        progress_for = max(0.0, self._clock() - self._started)  # a load starts when the request leaves
        return facts_text(live_facts(self.model, self.tokens, loading_for=loading_for, fake_server=self.fake_server,
                                     progress=self._progress, progress_for=progress_for))

    def _send(self, op: Op) -> None:
        while op.slot >= len(self._display_ids):
            self._display_ids.append(new_display_id())
        if self._publish is None:  # the first output: a display like any other
            _display(op.bundle, display_id=self._display_ids[op.slot], update=not op.append)
        else:
            self._publish(op.bundle, self._display_ids[op.slot], not op.append)
        self.messages += 1

    def _paint_live(self) -> int:
        self.repaints += 1
        ops = self.live.frame(self._footer())
        for op in ops:
            self._send(op)
        return len(ops)


class TerminalStreamView:
    """Terminal IPython: write answer text to ``sys.stdout`` as it comes (thinking dimmed, apart).

    With ``loading``, a "Loading MODEL…" line comes first (erased at the first token on a terminal that can).
    """

    def __init__(
        self, fmt: AnswerFormat, model: str | None, *, loading: bool = False, fake_server: bool = False
    ) -> None:
        self.fmt = fmt
        self.model = model
        self.loading = loading
        self.fake_server = fake_server
        self.wrote_answer = False
        self._parts = 0
        self._loading_shown = False
        self._in_thinking = False
        self._tty = bool(getattr(sys.stdout, "isatty", lambda: False)())

    def _write(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def start(self) -> None:
        if self.loading:
            self._loading_shown = True
            self._write(f"Loading {self.model or 'the model'}… (LM Studio loads it before it answers)")

    def add(self, part: StreamPart) -> None:
        if part.kind not in ("content", "reasoning"):
            return
        self._parts += 1
        if self._loading_shown:
            self._loading_shown = False
            self._write("\r\x1b[2K" if self._tty else "\n")
        if part.kind == "reasoning":
            if not self._in_thinking:
                self._in_thinking = True
                self._write("\x1b[2m[thinking] " if self._tty else "[thinking] ")
            self._write(part.text)
            return
        if self._in_thinking:
            self._in_thinking = False
            self._write("\x1b[0m\n\n" if self._tty else "\n\n")
        self.wrote_answer = True
        self._write(part.text)

    def stop(self) -> None:
        if self._loading_shown:
            self._loading_shown = False
            self._write("\n")
        if self._in_thinking:
            self._in_thinking = False
            self._write("\x1b[0m\n" if self._tty else "\n")

    def show_final(self, result: ChatResult, fmt: AnswerFormat, *, parsed: Any = None, note: str | None = None) -> None:
        """Text already written stays; add what is missing and the footer."""
        if not self.wrote_answer:
            bundle = render_answer(result, fmt, parsed=parsed, note=note, approx_tokens=self._parts,
                                   fake_server=self.fake_server)
            self._write(cast(str, bundle["text/plain"]) + "\n")
            return
        footer = footer_text(result, note=note, approx_tokens=self._parts, fake_server=self.fake_server)
        self._write(f"\n\n— {footer}\n" if footer else "\n")


def make_view(
    shell: Any,
    fmt: AnswerFormat,
    model: str | None,
    *,
    interval: float = DEFAULT_INTERVAL,
    loading: bool = False,
    fake_server: bool = False,
) -> StreamView:
    """The view for ``shell``: live in a notebook, written as it comes in a terminal.

    ``loading``: the model is known not to be loaded (the wait is a just-in-time load, and the view says so);
    ``fake_server``: the answers come from the bundled fake LM Studio server (the footer says so).
    """
    if live_updates_supported(shell):
        return NotebookStreamView(fmt, model, interval=interval, loading=loading, fake_server=fake_server)
    return TerminalStreamView(fmt, model, loading=loading, fake_server=fake_server)


def stream_into(stream: ChatStream, view: StreamView) -> ChatResult:
    """Feed every part of ``stream`` to ``view``; return the result.

    The view starts (shows its first output) once the request has gone out (:meth:`ChatStream.when_sent`), while
    the server works on it: nothing but the request is on the way to the first token, and the first output still
    comes before anything the answer brings. A request that could not be sent starts no view (its error is all the
    cell shows).

    On any exception (``KeyboardInterrupt`` included) the stream is closed and live updates end before it
    propagates; ``stream.result()`` then gives what arrived, marked ``stopped``.
    """
    try:
        # in the try: a view that fails to start must not leave the stream open
        when_sent = getattr(stream, "when_sent", None)
        if when_sent is None:  # a stream that cannot say when its request went out: start at once
            view.start()
        else:
            when_sent(view.start)
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
