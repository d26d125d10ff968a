"""One answer of the chat panel being streamed: a reader thread, a repaint thread, and a stop that is always heard.

The reader pulls the answer's parts off the connection, away from the widget message handler, so Stop is heard while
an answer streams; the painter repaints a few times a second (never once per token). Whichever comes first — the
reader's end, an error, or :meth:`AnswerGeneration.stop` giving up on a stuck reader — settles the answer, once.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lm_notebook.chat.conversation import ChatReply, ConversationEntry
from lm_notebook.chat.widgets import footer_html
from lm_notebook.client.errors import LMStudioError
from lm_notebook.client.stream import ChatStream, StreamPart
from lm_notebook.client.types import ChatResult

if TYPE_CHECKING:
    from lm_notebook.chat.panel import ChatPanel

REPAINT_INTERVAL = 0.2  # seconds between repaints of a streaming answer (≤ 5 per second)
STOP_GRACE = 0.5  # how long stop() waits for the reader before it settles the answer itself


class AnswerGeneration:
    """One answer being streamed: a reader thread, a repaint thread, and a stop that is always heard."""

    def __init__(
        self,
        panel: ChatPanel,
        entry: ConversationEntry,
        reply: ChatReply,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
    ) -> None:
        self.panel = panel
        self.entry = entry
        self.reply = reply
        self.messages = messages
        self.params = params
        self.model = entry.model
        self.stream: ChatStream | None = None
        self.stop_requested = threading.Event()
        self.finished = threading.Event()
        self._data_lock = threading.Lock()
        self._paint_lock = threading.Lock()
        self._dirty = False
        self._settled = False
        self._parts = 0
        self.reader = threading.Thread(target=self._read, name="lm_notebook-chat-reader", daemon=True)
        self.painter = threading.Thread(target=self._paint_loop, name="lm_notebook-chat-painter", daemon=True)

    def start(self) -> None:
        self.reader.start()
        self.painter.start()

    # --- reading (reader thread) ------------------------------------------------------------------------------
    def _read(self) -> None:
        result: ChatResult | None = None
        error: Exception | None = None
        stream: ChatStream | None = None
        try:
            stream = self.panel.client.stream_chat(self.messages, model=self.model, **self.params)
            with self._data_lock:
                self.stream = stream
            if not self.stop_requested.is_set():
                for part in stream.iter_parts():
                    self._take(part)
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
            result = _as_stopped(result)
        self.settle(result, error)

    def _take(self, part: StreamPart) -> None:
        with self._data_lock:
            if part.kind == "content":
                self.reply._content.append(part.text)
            elif part.kind == "reasoning":
                self.reply._reasoning.append(part.text)
            self._parts += 1
            self._dirty = True

    # --- painting (painter thread) ----------------------------------------------------------------------------
    def _paint_loop(self) -> None:
        while not self.finished.wait(REPAINT_INTERVAL):
            with self._data_lock:
                if not self._dirty:
                    continue
                self._dirty = False
                content, reasoning, parts = self.reply.content, self.reply.reasoning, self._parts
            with self._paint_lock:
                if self._settled:
                    return
                status = f"streaming… ≈{parts} tokens"
                self.entry.view.show(content, reasoning, status)
                self.panel._set_status(f"Answering with {self.model}… ≈{parts} tokens")

    # --- ending (any thread) ----------------------------------------------------------------------------------
    def stop(self, grace: float = STOP_GRACE) -> None:
        """Ask the reader to stop, close the connection, and settle the answer within ``grace`` seconds."""
        self.stop_requested.set()
        with self._data_lock:
            stream = self.stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        if threading.current_thread() is not self.reader:
            self.reader.join(grace)
        if not self.finished.is_set():
            # the reader is stuck (e.g. waiting for a model to load): settle with what arrived; it exits later
            snapshot = stream.partial() if stream is not None else None
            self.settle(_as_stopped(snapshot) if snapshot is not None else None, None, stopped_early=True)

    def settle(self, result: ChatResult | None, error: Exception | None, *, stopped_early: bool = False) -> None:
        with self._data_lock:
            if self._settled:
                return
            self._settled = True
            approx = self._parts
        with self._paint_lock:
            entry = self.entry
            if error is not None and isinstance(error, LMStudioError) and error.partial is not None:
                content, reasoning = error.partial.content, error.partial.reasoning
            elif result is not None:
                content, reasoning = result.content, result.reasoning
            else:
                content, reasoning = self.reply.content, self.reply.reasoning
            entry.content, entry.reasoning, entry.result, entry.error = content, reasoning, result, error
            if result is None and error is None and stopped_early:
                footer = '<span class="lmnb-footer"><span class="lmnb-stopped">■ stopped</span></span>'
            else:
                footer = footer_html(result, approx_tokens=approx, error=error)
            entry.view.finish(content, reasoning, footer)
        if result is None and error is None:
            result = ChatResult(content=content, reasoning=reasoning, model=self.model, stopped=True, streaming=True)
            entry.result = result
        self.panel._generation_ended(self, result, error)
        self.reply._settle(result, error)
        self.finished.set()


def _stream_done(stream: ChatStream | None) -> bool:
    return stream is not None and stream.done


def _as_stopped(result: ChatResult) -> ChatResult:
    return result if result.stopped else replace(result, stopped=True)
