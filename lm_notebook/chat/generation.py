"""One answer of the chat panel being streamed: a reader thread, the throttled repaint, and a stop that is always heard.

The reader pulls the answer's parts off the connection, away from the widget message handler, so Stop is heard while
an answer streams. It only adds them to a :class:`~lm_notebook.chat.conversation.Draft` and tells the
:class:`~lm_notebook.display.repaint.Repainter` (the one ``%%lm`` uses too), which calls ``on_update`` with the text so
far: the first part at once, then at most every ``interval``. Whichever comes first — the reader's end, an error, or
:meth:`AnswerGeneration.stop` giving up on a stuck reader — settles the answer, once: ``on_settled`` gets its
:class:`~lm_notebook.chat.conversation.AnswerOutcome` as the final paint, and no ``on_update`` comes after it.

Until the first part arrives, ``on_waiting`` (when given) hears every ``wait_interval`` how long the answer has
waited: a model loading just in time can take a while, and the panel says so.

The generation knows no widgets and no panel: whoever starts it passes the callbacks.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from lm_notebook.chat.conversation import AnswerOutcome, Draft, DraftText, answer_outcome, as_stopped
from lm_notebook.chat.tool_answers import ToolAnswerStream
from lm_notebook.client.clients import LMStudioClient
from lm_notebook.client.errors import LMStudioError
from lm_notebook.client.native_types import StreamProgress, ToolEvent
from lm_notebook.client.stream import ChatStream
from lm_notebook.client.tools import Tool
from lm_notebook.client.types import ChatResult
from lm_notebook.display.repaint import Repainter
from lm_notebook.display.tool_blocks import ToolBlock, event_block, tool_blocks_html

REPAINT_INTERVAL = 0.2  # seconds between repaints of a streaming answer (≤ 5 per second)
STOP_GRACE = 0.5  # how long stop() waits for the reader before it settles the answer itself
SETTLE_WAIT = 2.0  # how long stop() waits for a settlement another thread has begun (it only paints)
WAIT_INTERVAL = 1.0  # seconds between "still waiting for the first part" reports


class WaitReport:
    """Calls ``report(seconds waited)`` at once, then every ``interval``, until :meth:`stop` (no call after it).

    ``clock`` says the time; ``interval`` is real time between reports (a test with a clock it moves passes a short
    one, and waits for the report it expects).
    """

    def __init__(
        self, report: Callable[[float], None], *, interval: float = WAIT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self._report = report
        self._clock = clock
        self._started = 0.0
        self._stopped = threading.Event()
        self._reporting = threading.Lock()  # held while reporting: stop() returns only once no report runs
        self._thread = threading.Thread(target=self._run, name="lm_notebook-chat-waiting", daemon=True)

    def start(self) -> None:
        self._started = self._clock()
        self._thread.start()

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        with self._reporting:
            self._stopped.set()

    def _run(self) -> None:
        while True:
            with self._reporting:
                if self._stopped.is_set():
                    return
                self._report(max(0.0, self._clock() - self._started))
            if self._stopped.wait(self.interval):
                return


class AnswerGeneration:
    """One answer being streamed from ``client``: call :meth:`start`, then :meth:`stop` or let it end.

    ``on_update(text)`` is called on the repaint thread with the :class:`DraftText` so far; ``on_settled(outcome)``
    once, on the thread that settles the answer; ``on_waiting(seconds)`` until the first part arrives (see
    :class:`WaitReport`, whose ``wait_interval`` and ``wait_clock`` these are). ``draft`` is where the text goes (pass
    the one a :class:`~lm_notebook.chat.conversation.ChatReply` reads); ``interval`` and ``clock`` are the repaint
    throttle's.
    """

    def __init__(
        self,
        client: LMStudioClient,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        *,
        model: str | None,
        on_update: Callable[[DraftText], None],
        on_settled: Callable[[AnswerOutcome], None],
        draft: Draft | None = None,
        interval: float = REPAINT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        on_waiting: Callable[[float], None] | None = None,
        wait_interval: float = WAIT_INTERVAL,
        wait_clock: Callable[[], float] = time.monotonic,
        tools: Sequence[Tool] = (),
        on_progress: Callable[[StreamProgress], None] | None = None,
    ) -> None:
        self.client = client
        self.tools = tuple(tools)  # with tools the answer is an act: the model may call them (see tool_answers)
        self._on_progress = on_progress  # the native route's load / prompt progress, as it comes (reader thread)
        self.messages = messages
        self.params = params
        self.model = model
        self.draft = draft if draft is not None else Draft()
        self.stop_requested = threading.Event()
        self.finished = threading.Event()  # set once on_settled has returned
        self._on_update = on_update
        self._on_settled = on_settled
        self._lock = threading.Lock()  # the stream handle and the settled flag
        self._stream: ChatStream | ToolAnswerStream | None = None
        self._server_tools: list[ToolBlock] = []  # the MCP tool calls LM Studio ran (integrations, native route)
        self._settled = False
        self._repainter = Repainter(self._paint, interval=interval, clock=clock, name="lm_notebook-chat-repaint")
        self.reader = threading.Thread(target=self._read, name="lm_notebook-chat-reader", daemon=True)
        self._waiting = (
            WaitReport(on_waiting, interval=wait_interval, clock=wait_clock) if on_waiting is not None else None
        )

    @property
    def repaints(self) -> int:
        """Live repaints so far (the final one not included)."""
        return self._repainter.paints

    def start(self) -> None:
        self._repainter.start()
        if self._waiting is not None:
            self._waiting.start()
        self.reader.start()

    @property
    def tool_stream(self) -> ToolAnswerStream | None:
        """The act being read, when the answer may call tools (its blocks are what the view shows)."""
        stream = self._stream
        return stream if isinstance(stream, ToolAnswerStream) else None

    def tool_blocks_html(self) -> str:
        """The answer's tool calls as collapsible blocks (empty when none): the act's (``tools=``), or those LM
        Studio ran itself (``integrations=``)."""
        acting = self.tool_stream
        if acting is not None:
            return acting.blocks_html()
        with self._lock:
            return tool_blocks_html(list(self._server_tools))

    def _open(self) -> ChatStream | ToolAnswerStream:
        if self.tools:
            return ToolAnswerStream(self.client.stream_act(self.messages, self.tools, model=self.model, **self.params))
        return self.client.stream_chat(self.messages, model=self.model, **self.params)

    def _end_wait(self) -> None:
        if self._waiting is not None:
            self._waiting.stop()

    # --- reading (reader thread) ------------------------------------------------------------------------------
    def _read(self) -> None:
        result: ChatResult | None = None
        error: Exception | None = None
        stream: ChatStream | ToolAnswerStream | None = None
        try:
            stream = self._open()
            with self._lock:
                self._stream = stream
            if not self.stop_requested.is_set():
                for part in stream.iter_parts():
                    if isinstance(part.detail, StreamProgress):
                        if self._on_progress is not None:
                            self._on_progress(part.detail)
                    elif isinstance(part.detail, ToolEvent):
                        with self._lock:
                            self._server_tools.append(event_block(part.detail))
                        self._end_wait()
                        self._repainter.changed()
                    elif self.draft.add(part.kind, part.text) or part.kind == "tool_call":
                        self._end_wait()  # before the first paint: no "waiting" report may come after it
                        self._repainter.changed()
                    if self.stop_requested.is_set():
                        break
            stream.close()
            result = stream.result()
        except LMStudioError as err:
            error = err
            result = None
        except Exception as err:  # a bug or an unexpected failure: show it, keep the panel alive
            if self.stop_requested.is_set() and stream is not None:
                result = stream.partial()
            else:
                error = err
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()
        if result is not None and self.stop_requested.is_set() and not result.stopped and not _stream_done(stream):
            result = as_stopped(result)
        self._settle(result, error)

    def _paint(self) -> None:
        self._on_update(self.draft.text())

    # --- ending (any thread) ----------------------------------------------------------------------------------
    def stop(self, grace: float = STOP_GRACE) -> None:
        """Ask the reader to stop, close the connection, and settle the answer within ``grace`` seconds.

        When it returns, the answer is settled (``on_settled`` has run), whichever thread settled it.
        """
        self.stop_requested.set()
        self._end_wait()  # "Stopping…" is not overwritten by a "still waiting" report
        with self._lock:
            stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        if threading.current_thread() is not self.reader:
            self.reader.join(grace)
        if not self.finished.is_set():
            # the reader is stuck (e.g. waiting for a model to load): settle with what arrived; it exits later
            snapshot = stream.partial() if stream is not None else None
            self._settle(as_stopped(snapshot) if snapshot is not None else None, None)
            self.finished.wait(SETTLE_WAIT)  # the reader may have begun settling first

    def _settle(self, result: ChatResult | None, error: Exception | None) -> None:
        with self._lock:
            if self._settled:
                return
            self._settled = True
        self._end_wait()
        outcome = answer_outcome(result, error, self.draft.text(), model=self.model)
        try:
            self._repainter.stop(final=lambda: self._on_settled(outcome))
        finally:
            self.finished.set()


def _stream_done(stream: ChatStream | ToolAnswerStream | None) -> bool:
    return stream is not None and stream.done
