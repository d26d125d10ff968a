"""A streaming answer as a column of outputs: finished blocks sent once, only the unfinished tail repainted (pure).

A long answer must not cost what it weighs on every repaint. So the live view of ``%%lm`` is not one display
re-sent whole ten times a second, but a column of outputs, each a display the frontend can update by its id::

    head      the first output: before the first token, the status (waiting / "Loading MODEL… N s") and the footer;
              once the answer starts, the thinking summary ("Thinking… (N words)") when the model thinks, else it
              simply becomes the first tail
    block     finished Markdown blocks: the tail they were part of, updated once to exactly those blocks, then never
              touched again
    …
    tail      the unfinished end: the text since the last finished block, the cursor and the live footer

Each repaint (:meth:`LiveAnswer.frame`) re-renders only the tail, from the parts that arrived since the last
finished block, so its cost is flat along the answer. When the tail holds finished blocks (a cut that
:func:`~lm_notebook.display.markdown.stable_prefix_length` finds: the blocks before it render the same alone), the
tail's output is updated to them and a new tail output is appended below: two messages, which the repaint throttle
counts as two repaints (a paint returns how many messages it sent). The frontend thus shows every character once,
and the cell's iopub traffic is about the answer's size, not its square.

Where later features go (the native API's progress line and server stats, tool-call blocks):

- a status line above the answer (model load / prompt processing progress): before the first token it is the
  head's footer facts (:func:`~lm_notebook.display.footer.live_facts`, passed to :meth:`LiveAnswer.frame` as
  ``footer``); a status that must stay once the answer streams goes in :meth:`LiveAnswer.set_status`, shown in the
  head (above everything else) and updated in place only when it changes;
- finished outputs above the answer's text (tool-call blocks): :meth:`LiveAnswer.add_output` — at the next frame the
  tail is sealed as it is, the given bundle is appended as its own output, and a new tail opens below it.

The final answer is not made here: the cell clears its live outputs at its next output (``clear_output(wait=True)``)
and shows the exact final render once (see :mod:`lm_notebook.display.answer`).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field

from lm_notebook.display.markdown import stable_prefix_length
from lm_notebook.display.render import AnswerFormat, Bundle, close_open_fence, fenced, render_bundle

CURSOR = "▌"


@dataclass(frozen=True)
class Op:
    """One output message of a frame: show ``bundle`` in output ``slot``, either as a new output appended below the
    others (``append``) or as an update of that output in place."""

    slot: int
    bundle: Bundle
    append: bool = False


class WordCount:
    """Words of a growing text, counted as it grows (``str.split`` words): each piece is looked at once."""

    __slots__ = ("_done", "_open")

    def __init__(self) -> None:
        self._done = 0  # words already ended by whitespace
        self._open = ""  # the word still growing at the end ("" after whitespace)

    def add(self, text: str) -> None:
        text = self._open + text
        words = text.split()
        if text and not text[-1].isspace():
            self._open = words.pop() if words else ""
        else:
            self._open = ""
        self._done += len(words)

    @property
    def words(self) -> int:
        return self._done + (1 if self._open else 0)


def _text_cut(text: str) -> int:
    """For plain text: everything up to the last line break is finished."""
    return text.rfind("\n") + 1


def _pre(text: str) -> str:
    return f'<pre style="white-space: pre-wrap; margin: 0">{html.escape(text)}</pre>'


@dataclass
class _Slot:
    shown: object = None  # what the output shows now (to skip repaints that change nothing); None: not yet shown


@dataclass
class LiveAnswer:
    """The live column of one answer. The reader adds parts (:meth:`add`, cheap); the repaint thread asks for the
    messages that bring the screen up to date (:meth:`frame`).

    ``fmt`` is the answer's format: Markdown and ``code`` freeze whole Markdown blocks, ``text`` whole lines;
    ``json`` (shown in one fenced block while it streams) is repainted whole.
    """

    fmt: AnswerFormat
    _content: list[str] = field(default_factory=list)
    _reasoning: list[str] = field(default_factory=list)
    _slots: list[_Slot] = field(default_factory=list)
    _head: int | None = None  # the slot of the head once it is no longer the tail
    _head_decided: bool = False
    _tail: int = 0
    _frozen_part: int = 0  # the tail starts in this content part…
    _frozen_offset: int = 0  # …at this character
    _frozen_chars: int = 0
    _reasoning_seen: int = 0
    _thinking_words: WordCount = field(default_factory=WordCount)
    _status: str = ""
    _extra: list[tuple[Bundle, int]] = field(default_factory=list)  # (an output, the content parts before it)

    def add(self, kind: str, text: str) -> bool:
        """Add a streamed part (any thread); True when it was text (``content`` or ``reasoning``)."""
        if kind == "content":
            self._content.append(text)
        elif kind == "reasoning":
            self._reasoning.append(text)
        else:
            return False
        return True

    @property
    def started(self) -> bool:
        """The answer's text has begun (the first content part arrived)."""
        return bool(self._content)

    @property
    def outputs(self) -> int:
        """How many outputs the column has."""
        return len(self._slots)

    def set_status(self, text: str) -> None:
        """A status line shown at the top of the column while the answer streams ("" for none)."""
        self._status = text

    def add_output(self, bundle: Bundle) -> None:
        """A finished output to place below the answer's text so far and above the text still to come (shown at
        the next frame)."""
        self._extra.append((bundle, len(self._content)))

    def first(self, footer: str) -> Op:
        """The first output, shown before anything arrived (on the cell's thread)."""
        self._slots = [_Slot()]
        return self._show(0, self._placeholder(footer), append=True)

    def frame(self, footer: str) -> list[Op]:
        """The messages that bring the screen up to date; ``footer`` is the live footer line (its facts as text)."""
        if not self._slots:
            return [self.first(footer)]
        ops: list[Op] = []
        self._count_thinking()
        if not self.started and not self._extra:
            self._update(ops, self._tail, self._placeholder(footer))
            return ops
        if not self._head_decided:
            # decided once, as the answer starts: the first output keeps the status and the thinking summary, and
            # the answer's text goes below it; without either, the first output simply becomes the first tail
            self._head_decided = True
            if self._reasoning or self._status:
                self._head = self._tail
                self._open_tail()
        if self._head is not None:
            self._update(ops, self._head, self._head_bundle())
        while self._extra:
            bundle, before = self._extra.pop(0)
            if self._tail_text(before):  # the text that came before the new output ends above it
                self._seal(ops, before)
            self._update(ops, self._tail, bundle)
            self._open_tail()
        tail = self._tail_text()
        cut = self._cut(tail)
        if cut:
            self._update(ops, self._tail, self._block(tail[:cut]))
            self._advance(cut)
            tail = tail[cut:]
            self._open_tail()
        self._update(ops, self._tail, self._tail_bundle(tail, footer))
        return ops

    # --- what each output shows -------------------------------------------------------------------------------
    def _placeholder(self, footer: str) -> Bundle:
        bundle = render_bundle("", "".join(self._reasoning), self.fmt, footer, live=True)
        if self._status:
            key = "text/markdown" if "text/markdown" in bundle else "text/html"
            bundle[key] = f"{html.escape(self._status)}\n\n{bundle[key]}"
        return bundle

    def _head_bundle(self) -> Bundle:
        pieces = []
        if self._status:
            pieces.append(html.escape(self._status))
        if self._reasoning:
            pieces.append(f"<details><summary>Thinking… ({self._thinking_words.words} words)</summary></details>")
        return {"text/markdown": "\n\n".join(pieces)}

    def _block(self, text: str) -> Bundle:
        if self.fmt == "text":
            return {"text/html": _pre(text)}
        return {"text/markdown": text}

    def _tail_bundle(self, tail: str, footer: str) -> Bundle:
        sub = f"<sub>{html.escape(footer)}</sub>" if footer else ""
        if self.fmt == "text":
            return {"text/html": "\n".join(p for p in (_pre(tail + CURSOR), sub) if p)}
        shown = fenced(tail + CURSOR, "json") if self.fmt == "json" else close_open_fence(tail + CURSOR)
        return {"text/markdown": "\n\n".join(p for p in (shown, sub) if p)}

    # --- bookkeeping -------------------------------------------------------------------------------------------
    def _cut(self, tail: str) -> int:
        if self.fmt == "json":
            return 0
        cutter: Callable[[str], int] = _text_cut if self.fmt == "text" else stable_prefix_length
        return cutter(tail)

    def _tail_text(self, end: int | None = None) -> str:
        """The text after the last finished block, up to content part ``end`` (default: all that arrived)."""
        parts = self._content
        end = len(parts) if end is None else end  # parts added from here on wait for the next frame
        i = self._frozen_part
        if i >= end:
            return ""
        return parts[i][self._frozen_offset :] + "".join(parts[i + 1 : end])

    def _advance(self, chars: int) -> None:
        """Move the start of the tail ``chars`` characters on."""
        self._frozen_chars += chars
        parts = self._content
        i, offset = self._frozen_part, self._frozen_offset
        while chars:
            left = len(parts[i]) - offset
            if chars < left:
                offset += chars
                break
            chars -= left
            i, offset = i + 1, 0
        self._frozen_part, self._frozen_offset = i, offset

    def _count_thinking(self) -> None:
        end = len(self._reasoning)
        if end > self._reasoning_seen:
            self._thinking_words.add("".join(self._reasoning[self._reasoning_seen : end]))
            self._reasoning_seen = end

    def _seal(self, ops: list[Op], end: int) -> None:
        """End the tail with the text up to content part ``end`` (no cursor, no footer); open a new one below."""
        tail = self._tail_text(end)
        self._update(ops, self._tail, self._block(tail))
        self._advance(len(tail))
        self._open_tail()

    def _open_tail(self) -> None:
        """A new tail below the others; it is appended when it is first shown (in the same frame)."""
        self._slots.append(_Slot())
        self._tail = len(self._slots) - 1

    def _update(self, ops: list[Op], slot: int, bundle: Bundle) -> None:
        state = self._slots[slot]
        if state.shown == bundle:
            return
        ops.append(self._show(slot, bundle, append=state.shown is None))

    def _show(self, slot: int, bundle: Bundle, *, append: bool) -> Op:
        self._slots[slot].shown = bundle
        return Op(slot, bundle, append=append)
