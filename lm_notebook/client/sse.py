"""Bytes → server-sent events: a pure, incremental decoder (stdlib only).

Follows the WHATWG rules for parsing an event stream
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
lines end with ``\\n``, ``\\r`` or ``\\r\\n``; ``field: value`` lines (one leading space of the value dropped);
``data`` lines accumulate, joined with ``\\n``; ``event``, ``id`` and ``retry`` fields; lines starting with ``:``
are comments (keep-alives); a blank line dispatches the event. A leading UTF-8 BOM is dropped.

Input may be cut anywhere, even inside a multi-byte character or between ``\\r`` and ``\\n``: the decoder splits on
bytes (no UTF-8 sequence contains CR or LF) and decodes whole lines only.

>>> dec = SSEDecoder()
>>> dec.feed(b'data: {"a": 1}\\n') + dec.feed(b'\\n')
[ServerSentEvent(event='message', data='{"a": 1}', id=None, retry=None)]
"""

from __future__ import annotations

from dataclasses import dataclass

_LF = b"\n"
_CR = b"\r"
_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed it bytes as they arrive; it returns the events completed so far."""

    __slots__ = ("_buffer", "_data", "_event", "_last_id", "_pending_cr", "_retry", "_started", "comments")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._pending_cr = False  # the last chunk ended in CR: a LF starting the next one belongs to it
        self._started = False
        self.comments = 0  # comment (keep-alive) lines seen

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if not chunk:
            return []
        if self._pending_cr:
            self._pending_cr = False
            if chunk[:1] == _LF:
                chunk = chunk[1:]
        data = self._buffer + chunk if self._buffer else chunk
        if not self._started:
            if len(data) < 3 and _BOM.startswith(data):
                self._buffer = data
                return []
            self._started = True
            if data.startswith(_BOM):
                data = data[3:]
        if _CR in data:
            self._pending_cr = data.endswith(_CR)
            data = data.replace(b"\r\n", _LF).replace(_CR, _LF)
        lines = data.split(_LF)
        self._buffer = lines.pop()
        return self._lines(lines) if lines else []

    def rest_of_event(self, data: bytes) -> int:
        """How many bytes at the start of ``data`` (the next input, with LF line ends only) finish the event under
        way: 0 when the decoder stands between events, -1 when ``data`` does not finish it (or the input so far
        left the decoder unsure, as after a CR)."""
        if not self._started or self._pending_cr:
            return -1
        if not self._buffer:
            if not self._data and not self._event:
                return 0
            if data[:1] == _LF:  # the blank line that ends it
                return 1
        end = data.find(b"\n\n")
        return -1 if end < 0 else end + 2

    def flush(self) -> list[ServerSentEvent]:
        """End of input: an unterminated last line counts as a line; an undispatched event is dropped (per spec)."""
        rest, self._buffer = self._buffer, b""
        self._pending_cr = False
        if rest:
            self._lines([rest])
        self._data = []
        self._event = ""
        return []

    def _lines(self, lines: list[bytes]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        data = self._data
        for raw in lines:
            if not raw:
                if data:
                    events.append(
                        ServerSentEvent(self._event or "message", "\n".join(data), self._last_id, self._retry)
                    )
                    data = self._data = []
                self._event = ""
                continue
            if raw[:5] == b"data:":
                # the hot path: one data line per chunk
                value = raw[6:] if raw[5:6] == b" " else raw[5:]
                data.append(value.decode("utf-8", "replace"))
                continue
            if raw[:6] == b"event:":  # the native route names every event
                self._event = (raw[7:] if raw[6:7] == b" " else raw[6:]).decode("utf-8", "replace")
                continue
            if raw[:1] == b":":
                self.comments += 1
                continue
            line = raw.decode("utf-8", "replace")
            name, sep, value_s = line.partition(":")
            if sep and value_s[:1] == " ":
                value_s = value_s[1:]
            if name == "data":
                data.append(value_s)
            elif name == "event":
                self._event = value_s
            elif name == "id":
                if "\0" not in value_s:
                    self._last_id = value_s
            elif name == "retry" and value_s.isascii() and value_s.isdigit():
                self._retry = int(value_s)
        return events
