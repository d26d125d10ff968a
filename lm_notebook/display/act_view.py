"""``%%lm --tools`` in a cell: the tool calls as collapsible blocks above the streamed answer.

:class:`ToolCallsView` wraps the answer's view (:mod:`~lm_notebook.display.answer`): text and thinking go to it as
before; each tool call is a block (:mod:`~lm_notebook.display.tool_blocks`). In a notebook a call still running is
the live column's status line ("🔧 lookup(…) → running…"), and each finished call becomes an output of its own in
the column (:meth:`~lm_notebook.display.live_answer.LiveAnswer.add_output`), above the text still to come. When the
answer is complete the live outputs go (as for any answer) and :meth:`ToolCallsView.show_blocks` shows the finished
blocks once, above the answer. In a terminal each finished call is one line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from lm_notebook.client.act_stream import ActStream
from lm_notebook.client.act_types import ActPart, ActResult, ToolCallRecord
from lm_notebook.client.stream import StreamPart
from lm_notebook.display.answer import NotebookStreamView, StreamView, show_bundle
from lm_notebook.display.tool_blocks import ToolBlock, tool_block_text, tool_blocks_bundle


def block_of(call: ToolCallRecord, *, running: bool = False) -> ToolBlock:
    """The block that shows one call record."""
    return ToolBlock(call.name, call.arguments, output=call.output, error=call.error,
                     duration=None if running else call.duration, running=running)


class CallBlocks:
    """The blocks of an act's calls, in the order they started: a finished call replaces its started call's block.
    Matched in order on (round, name, id) — servers that send no call ids give two calls to one tool in a round the
    same key, and the first to start is the first to finish (calls run in order, or their results come in order)."""

    def __init__(self) -> None:
        self.blocks: list[ToolBlock] = []
        self._pending: list[tuple[int, ToolCallRecord]] = []  # (block index, the started call)

    def started(self, call: ToolCallRecord) -> None:
        self._pending.append((len(self.blocks), call))
        self.blocks.append(block_of(call, running=True))

    def finished(self, call: ToolCallRecord) -> ToolBlock:
        """Show ``call``'s result in its started block (a new block when none started); that block."""
        block = block_of(call)
        for position, (index, started) in enumerate(self._pending):
            if started.round == call.round and started.name == call.name and started.id == call.id:
                del self._pending[position]
                self.blocks[index] = block
                return block
        self.blocks.append(block)
        return block


class ToolCallsView:
    """Feeds an act's parts to an answer ``view`` and keeps the tool-call blocks. ``write``: where a terminal's lines
    go (default ``sys.stdout``)."""

    def __init__(self, view: StreamView, *, write: Callable[[str], object] | None = None) -> None:
        self.view = view
        self._calls = CallBlocks()
        self._live = isinstance(view, NotebookStreamView)
        self._write = write

    @property
    def blocks(self) -> list[ToolBlock]:
        return self._calls.blocks

    def start(self) -> None:
        self.view.start()

    def add(self, part: ActPart) -> None:
        if part.kind in ("content", "reasoning"):
            self.view.add(StreamPart(part.kind, part.text))
            return
        call = part.call
        if call is None:
            return
        if part.kind == "tool_call":
            self._calls.started(call)
        else:
            finished = self._calls.finished(call)
            if isinstance(self.view, NotebookStreamView):
                # a finished call is an output of its own in the live column, above the text still to come
                self.view.live.add_output(tool_blocks_bundle([finished]))
            else:
                self._line(tool_block_text(call.name, call.arguments, output=call.output, error=call.error,
                                           duration=call.duration))
        if isinstance(self.view, NotebookStreamView):
            # the calls still running, as the live column's status line
            running = [b for b in self.blocks if b.running]
            self.view.live.set_status("  ".join(tool_block_text(b.name, b.arguments, running=True) for b in running))
            self.view.changed()

    def _line(self, text: str) -> None:
        write = self._write or sys.stdout.write
        write(text + "\n")

    def stop(self) -> None:
        self.view.stop()

    def show_blocks(self) -> None:
        """After :meth:`stop`, in a notebook: the finished blocks, once, as the output above the answer."""
        if self._live and self.blocks:
            show_bundle(tool_blocks_bundle(self.blocks))


def act_into(stream: ActStream, view: ToolCallsView) -> ActResult:
    """Feed every part of an act ``stream`` to ``view``; return the result. On any exception (``KeyboardInterrupt``
    too) the act is stopped and live updates end before it propagates; ``stream.result()`` then gives what there was."""
    view.start()
    try:
        for part in stream:
            view.add(part)
    except BaseException:
        stream.close()
        view.stop()
        raise
    view.stop()
    return stream.result()
