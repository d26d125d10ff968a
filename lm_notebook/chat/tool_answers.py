"""An answer of ``ChatPanel(tools=[...])``: the act loop read like a chat stream, its calls kept as blocks.

:class:`ToolAnswerStream` gives the panel's reader (:mod:`~lm_notebook.chat.generation`) what it reads from a chat
stream — text and thinking parts, ``close()`` from any thread, ``result()`` / ``partial()`` as a ``ChatResult`` — while
each tool call becomes a :class:`~lm_notebook.display.tool_blocks.ToolBlock` ("running…", then its result or error
and time) that the answer's view shows above its text. Stop closes the act: the round being streamed ends at once,
the calls not yet run never run, and no round follows; a function already running finishes on the reader thread
while the panel settles at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from lm_notebook.client.act_stream import ActStream
from lm_notebook.client.act_types import ActResult
from lm_notebook.client.stream import StreamPart
from lm_notebook.client.types import ChatResult
from lm_notebook.display.act_view import CallBlocks
from lm_notebook.display.tool_blocks import ToolBlock, tool_blocks_html

# the part that tells the reader a block changed (no text: the draft ignores it, the repaint shows the blocks)
BLOCKS_CHANGED = StreamPart("tool_call", "")


class ToolAnswerStream:
    """An :class:`ActStream` as the panel's reader reads a chat stream."""

    def __init__(self, stream: ActStream) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._calls = CallBlocks()  # matched in order, as %%lm --tools does

    @property
    def act(self) -> ActStream:
        return self._stream

    @property
    def blocks(self) -> list[ToolBlock]:
        with self._lock:
            return list(self._calls.blocks)

    def blocks_html(self) -> str:
        return tool_blocks_html(self.blocks)

    @property
    def done(self) -> bool:
        """The act answered (it was not stopped)."""
        result = self._stream._result
        return result is not None and not result.stopped

    def iter_parts(self) -> Iterator[StreamPart]:
        for part in self._stream:
            if part.kind in ("content", "reasoning"):
                yield StreamPart(part.kind, part.text)
                continue
            call = part.call
            if call is None:
                continue
            with self._lock:
                if part.kind == "tool_call":
                    self._calls.started(call)
                else:
                    self._calls.finished(call)
            yield BLOCKS_CHANGED

    def close(self) -> None:
        self._stream.close()

    def act_result(self) -> ActResult:
        return self._stream.result()

    def result(self) -> ChatResult:
        return self._stream.result().result

    def partial(self) -> ChatResult:
        return self._stream.partial().result
