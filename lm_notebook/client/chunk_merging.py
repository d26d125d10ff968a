"""An HTTP/1.1 response as read from its socket, its chunked body re-framed so that each read is one chunk (pure).

A streaming server writes every event as a chunk of its own (LM Studio, llama.cpp's server: one per token). httpx
hands its reader each chunk separately, through h11's parser and five generator layers, even when one network read
brought hundreds of them: at 2,000 tokens a second that is most of what reading a stream costs the client. No
library merges chunks (h11 yields one event per chunk by design), so this does, below h11, on the bytes of each read:
the head passes as it came; the data of every chunk that a read brought (whole or in part) leaves as ONE chunk; the
last chunk (``0``), its trailers and the end pass as they came. h11 then parses the same body in one event a read.

Anything it does not recognise (a head without ``Transfer-Encoding: chunked``, a malformed chunk line) passes
through untouched from there on, so h11 still reads what the server sent, and reports the fault.

>>> merger = ChunkMerger()
>>> merger.feed(b"HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n3\\r\\nabc\\r\\n2\\r\\nde\\r\\n")
b'HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n5\\r\\nabcde\\r\\n'
"""

from __future__ import annotations

import re

_CRLF = b"\r\n"
_HEAD_END = b"\r\n\r\n"
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,20})[ \t]*(?:;[^\r\n]*)?")
_MAX_HEAD = 256 * 1024  # a head longer than this is not one we re-frame (h11 refuses such heads anyway)

_HEAD, _SIZE, _DATA, _DATA_END, _PASS = range(5)


class ChunkMerger:
    """Feed it each read's bytes (:meth:`feed`); it returns the bytes to parse instead, b"" when it needs more (only
    ever the start of a chunk line is held back). :meth:`end` at the end of input returns what it held, as it came."""

    __slots__ = ("_held", "_left", "_state")

    def __init__(self) -> None:
        self._state = _HEAD
        self._held = b""  # the head so far (_HEAD), a chunk line's start (_SIZE), or a chunk's CRLF so far
        self._left = 0  # data bytes still to come in the current chunk (_DATA)

    @property
    def merging(self) -> bool:
        """False once it passes everything through (no chunked body, or something it does not recognise)."""
        return self._state != _PASS

    def feed(self, data: bytes) -> bytes:
        if self._state == _PASS or not data:
            return data
        if self._state == _HEAD:
            return self._head(data)
        return self._body(data)

    def take(self, data: bytes) -> bytes | None:
        """What to hand h11 for a read that brought ``data`` (b"": the input ended), or None when only the start of
        a chunk line came: then read again and take that (a network stream's read wrapped this way gives h11 a
        chunk a read, and b"" only at the end)."""
        if not data:
            return self.end()
        return self.feed(data) or None

    def end(self) -> bytes:
        """The input ended: what was held back, unchanged (h11 then sees the body cut where the server cut it)."""
        held, self._held = self._held, b""
        self._state = _PASS
        return held

    def _head(self, data: bytes) -> bytes:
        """Pass the head through; once it is complete, decide from it whether the body is re-framed."""
        seen = self._held + data
        end = seen.find(_HEAD_END)
        if end < 0:
            if len(seen) > _MAX_HEAD:
                self._state = _PASS
                self._held = b""
            else:
                self._held = seen
            return data
        head, rest = seen[: end + 4], seen[end + 4 :]
        self._held = b""
        passed = data[: len(data) - len(rest)]  # what of this read belongs to the head
        status = head[9:12]
        if status[:1] == b"1" and status != b"101":  # an informational head (100 Continue): the real one follows
            return passed + self._head(rest) if rest else passed
        if not _is_chunked(head):
            self._state = _PASS
            return data
        self._state = _SIZE
        return passed + self._body(rest)

    def _body(self, data: bytes) -> bytes:
        pieces: list[bytes] = []  # the data of the chunks this read brought
        tail = b""  # what passes unchanged after them (the last chunk and trailers, or what was not recognised)
        pos, size = 0, len(data)
        while pos < size:
            state = self._state
            if state == _DATA:
                take = min(self._left, size - pos)
                pieces.append(data[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _DATA_END
            elif state == _DATA_END:
                need = 2 - len(self._held)
                got = self._held + data[pos : pos + need]
                pos += min(need, size - pos)
                if got != _CRLF[: len(got)]:  # not the CRLF that ends a chunk: h11 reports it as it came
                    tail = got + data[pos:]
                    self._pass()
                    break
                self._held = got if len(got) < 2 else b""
                if not self._held:
                    self._state = _SIZE
            else:  # _SIZE: a chunk line
                if self._held:  # its start came in the last read (perhaps up to its CR): look at it whole
                    data, pos, self._held = self._held + data[pos:], 0, b""
                    size = len(data)
                end = data.find(_CRLF, pos)
                if end < 0:
                    self._held = data[pos:]
                    if len(self._held) > 1024:  # no chunk line is that long
                        tail = self._held
                        self._pass()
                    break
                match = _CHUNK_LINE.fullmatch(data, pos, end)
                chunk = int(match.group(1), 16) if match is not None else -1
                if chunk <= 0:  # the last chunk (its trailers follow), or not a chunk line at all
                    tail = data[pos:]
                    self._pass()
                    break
                start = end + 2
                stop = start + chunk
                if data[stop : stop + 2] == _CRLF:  # the whole chunk is here (the usual case): take it at once
                    pieces.append(data[start:stop])
                    pos = stop + 2
                else:
                    pos = start
                    self._state, self._left = _DATA, chunk
        if not pieces:
            return tail
        body = b"".join(pieces)
        return b"%x\r\n%b\r\n%b" % (len(body), body, tail) if body else tail

    def _pass(self) -> None:
        self._state = _PASS
        self._held = b""


def _is_chunked(head: bytes) -> bool:
    """The head says the body is chunked, and nothing else about its length (h11 rejects the other mixes)."""
    chunked = False
    for line in head.split(_CRLF)[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == b"content-length":
            return False
        if name == b"transfer-encoding":
            if chunked or value.strip().lower() != b"chunked":
                return False
            chunked = True
    return chunked
