"""Runs of plain answer text in a block of an event stream, read in one go (pure; no I/O).

A streaming server sends one event a token, and every event of an answer's text is the same bytes but for the text::

    data: {"id":"chatcmpl-1","object":"chat.completion.chunk",…,"choices":[{"index":0,"delta":{"content":"TEXT"},…}]}

Taken one by one (the SSE lines, the JSON, the checks that the chunk carries nothing but text) they are most of what
reading a fast stream costs: ~10 µs a token, 2% of a core at 2,000 tokens/s. So once a chunk has proved plain (the
accumulator took its text and nothing else), its event is learned as a :class:`DeltaTemplate`: the bytes before the
text's JSON string and after it. The events at the start of a block that are that template with another JSON string
in its place then read as one run: ``bytes.split`` on the template's end finds them, a regex checks that what each
holds in the text's place is one JSON string, one ``json.loads`` decodes them all. Anything else (the first and last
chunks, a keep-alive, an event cut by the end of a read, a chunk whose fixed fields changed) is left to the general
path, which reads it as ever.

Why that is the same answer: a template is only learned when the JSON with a probe string in the text's place parses
to the learned chunk with the probe as its text, so the place is the value of the text's field (not some other
string, not a key repeated later in the object). JSON's grammar does not depend on what a string holds, so any other
string there parses to the same chunk with that text. What stands in that place in a run's events is checked to be
exactly one JSON string each (no event's end can hide in one: a JSON string holds no line break), and decoded by
``json.loads`` itself; a run that fails either check is left to the general path whole.

>>> data = '{"choices":[{"delta":{"content":"Hi"}}]}'
>>> template = DeltaTemplate.learn(b"data: ", data, "Hi", lambda text: {"choices": [{"delta": {"content": text}}]})
>>> event = b'data: {"choices":[{"delta":{"content":%b}}]}\\n\\n'
>>> template.run(event % b'" there"' + event % b'"!"' + b"data: [DONE]\\n\\n", 0)
([' there', '!'], 99)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any

from lm_notebook.client.accumulator import CONTENT, ChatAccumulator, StreamPart
from lm_notebook.client.sse import SSEDecoder

_STRING = rb'"(?:[^"\\\x00-\x1f]|\\.)*"'  # a JSON string: no bare quote, backslash or control character
_STRINGS = re.compile(_STRING + b"(?:\n" + _STRING + b")*")  # one JSON string a line (none holds a line break)
_END = b"\n\n"  # the blank line that ends an event (streams with CR line ends take the general path)
_CR = b"\r"
_PROBE = "\x00\ufffe"  # what no answer holds: stands in for the text when a template is checked
_FIELD_SEP = re.compile(r"\s*:\s*")

LEARN_PAUSE = 100  # plain chunks read the general way after one that could not be learned

Outputs = Callable[[bytes], Iterator[Any]]  # a block of the event stream read the general way: what it gives
WithText = Callable[[Any, str], Any]  # (a plain chunk, a text) → the chunk as it would be with that text


class DeltaTemplate:
    """The bytes of one plain text event before and after its text's JSON string (see the module's text)."""

    __slots__ = ("_after", "_before", "prefix", "suffix")

    def __init__(self, head: bytes, before: str, after: str) -> None:
        self._before, self._after = before, after
        self.prefix = head + before.encode()  # the event's field name(s), and its JSON up to the text's string
        self.suffix = after.encode() + _END  # the rest of its JSON, and the event's end

    @classmethod
    def learn(
        cls, head: bytes, data: str, text: str, with_text: Callable[[str], Any], field: str = "content"
    ) -> DeltaTemplate | None:
        """The template of an event that is ``head`` (its lines before the data's value, e.g. ``b"data: "``) then
        the JSON ``data`` whose ``field`` holds ``text``; ``with_text(t)`` is that JSON's value with ``t`` as the
        text. None when ``data`` holds no such string, or the probe does not parse to ``with_text(probe)``."""
        key = json.dumps(field)
        place = len(data)
        while (place := data.rfind(key, 0, place)) >= 0:
            sep = _FIELD_SEP.match(data, place + len(key))
            start = sep.end() if sep is not None else -1
            if start < 0 or not data.startswith('"', start):
                continue
            try:
                found, end = scanstring(data, start + 1)
            except ValueError:
                continue
            if found != text:
                continue
            before, after = data[:start], data[end:]
            try:
                probed = json.loads(before + json.dumps(_PROBE) + after)
            except ValueError:
                return None
            if probed == with_text(_PROBE):
                return cls(head, before, after)
        return None

    def describes(self, data: str) -> bool:
        """``data`` (an event's JSON) is this template's, with some text in its place."""
        before, after = self._before, self._after
        return len(data) > len(before) + len(after) and data.startswith(before) and data.endswith(after)

    def run(self, block: bytes, pos: int) -> tuple[list[str], int]:
        """The texts of the events of ``block`` from ``pos`` on that are this template with a string in its place,
        up to the first that is not (or the block's end), and where that run ends; ``([], pos)`` for none.

        The fixed bytes are found by ``bytes.split`` (a fast search: most of each event), and only the strings are
        checked by a regex: the cost is the text's, not the events'."""
        last = block.rfind(_END) + len(_END)  # the end of the block's last whole event
        if last <= pos:
            return [], pos
        prefix = self.prefix
        size = len(prefix)
        pieces = block[pos:last].split(self.suffix)
        pieces.pop()  # after the last of the template's ends: other events (or nothing)
        strings = []
        for piece in pieces:
            if not piece.startswith(prefix):  # not the template's event (nor are those after it: they wait)
                break
            strings.append(piece[size:])
        lines = b"\n".join(strings)
        if not strings or lines.count(b"\n") != len(strings) - 1 or _STRINGS.fullmatch(lines) is None:
            return [], pos  # none, or what stands in the text's place is not one JSON string in each
        try:
            texts: list[str] = json.loads(b"[" + lines.replace(b"\n", b",") + b"]")
        except ValueError:  # not UTF-8, or an escape JSON refuses
            return [], pos
        return texts, pos + len(strings) * (size + len(self.suffix)) + len(lines) - len(strings) + 1


class RunReader:
    """How a stream reads each block of its body: the runs of its learned template at once, the rest the general
    way (``outputs``, which calls :meth:`learn` for each plain chunk it meets); with ``merge``, the answer text of
    one block (between other parts) comes as one piece."""

    __slots__ = ("_acc", "_done", "_head", "_pause", "_with_text", "template")

    def __init__(self, acc: ChatAccumulator, done: Callable[[], bool], head: bytes, with_text: WithText) -> None:
        self._acc = acc
        self._done = done  # the stream ended ([DONE], chat.end): read nothing after it
        self._head = head
        self._with_text = with_text
        self._pause = 0  # plain chunks to let pass before trying to learn again, after one taught nothing
        self.template: DeltaTemplate | None = None

    @classmethod
    def of_route(cls, acc: ChatAccumulator, done: Callable[[], bool], *, native: bool) -> RunReader:
        """The reader of an OpenAI-style stream (``data:`` chunks), or of a native one (``message.delta`` events)."""
        if native:
            return cls(acc, done, b"event: message.delta\ndata: ", _delta_with_text)
        return cls(acc, done, b"data: ", _chunk_with_text)

    def learn(self, data: str, text: str, chunk: Any) -> None:
        """A plain chunk (its event's JSON ``data``, its ``text``) came the general way: learn its template, unless
        it is the one known."""
        template = self.template
        if template is not None and template.describes(data):
            return
        if self._pause:  # a server whose chunks teach nothing does not pay for trying at every one
            self._pause -= 1
            return
        with_text = self._with_text
        self.template = DeltaTemplate.learn(self._head, data, text, lambda other: with_text(chunk, other))
        if self.template is None:
            self._pause = LEARN_PAUSE

    def read(
        self, raw: bytes, decoder: SSEDecoder, outputs: Outputs, *, content_only: bool, merge: bool
    ) -> Iterator[Any]:
        """What block ``raw`` gives: ``outputs`` feeds ``decoder`` what is not read as a run."""
        items = self._items(raw, decoder, outputs, content_only, merge)
        return _merged(items, content_only) if merge else items

    def _items(
        self, raw: bytes, decoder: SSEDecoder, outputs: Outputs, content_only: bool, merge: bool
    ) -> Iterator[Any]:
        pos = -1 if self.template is None or _CR in raw else decoder.rest_of_event(raw)
        if pos < 0:
            yield from outputs(raw)
            return
        if pos:  # the end of an event the last block cut
            yield from outputs(raw[:pos])
            if self._done():
                return
        size = len(raw)
        while pos < size:
            template = self.template
            if template is None:  # learning paused (what the stream sends cannot be learned): the rest as ever
                yield from outputs(raw[pos:])
                return
            texts, end = template.run(raw, pos)
            if texts:
                text = self._acc.take_plain_run(texts)
                if text is None:  # the answer is not at its plain stage (cannot be, once a template is learned)
                    yield from outputs(raw[pos:])
                    return
                for piece in (text,) if merge else texts:
                    if piece:
                        yield piece if content_only else StreamPart(CONTENT, piece)
                pos = end
            # an event that is not the template's (or the block's last, cut short): the general way, then a run
            # again (a changed fixed field is learned there)
            stop = raw.find(_END, pos)
            if stop < 0:
                if pos < size:
                    yield from outputs(raw[pos:])
                return
            yield from outputs(raw[pos : stop + len(_END)])
            if self._done():
                return
            pos = stop + len(_END)


def _chunk_with_text(chunk: dict[str, Any], text: str) -> dict[str, Any]:
    """A plain chat-completion chunk as it would be with ``text``."""
    first, *rest = chunk["choices"]
    return {**chunk, "choices": [{**first, "delta": {"content": text}}, *rest]}


def _delta_with_text(_: object, text: str) -> dict[str, Any]:
    """A plain native ``message.delta`` as it would be with ``text``."""
    return {"type": "message.delta", "content": text}


def _merged(items: Iterator[Any], content_only: bool) -> Iterator[Any]:
    """``items`` with each stretch of answer text (text, or ``CONTENT`` parts) joined into one."""
    pending: list[str] = []
    try:
        for item in items:
            if type(item) is str:
                pending.append(item)
            elif item.kind is CONTENT:
                pending.append(item.text)
            else:
                if pending:
                    yield _joined(pending, content_only)
                    pending = []
                yield item
    except Exception:
        if pending:  # what arrived before a fault in the block is given first, as it would have been
            yield _joined(pending, content_only)
        raise
    if pending:
        yield _joined(pending, content_only)


def _joined(pending: list[str], content_only: bool) -> Any:
    text = "".join(pending)
    return text if content_only else StreamPart(CONTENT, text)
