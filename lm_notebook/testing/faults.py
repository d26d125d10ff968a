"""Quirks (how a server version talks) and faults (what goes wrong), switchable per server or per model.

A :class:`Quirks` is a persistent trait of the wire format; a :class:`Fault` is something that happens to matching
requests (every one, or the next ``times`` ones) until cleared::

    server.set_quirks(line_ending="\\r\\n")                         # every model
    server.set_quirks("qwen2.5-7b-instruct", keep_alive_every=5)   # one model
    server.set_fault("stall", seconds=2, after_chunks=3)           # every generation request
    server.set_fault("429", model="qwen2.5-7b-instruct", times=1, retry_after=1)
    server.set_fault("500", path="/api/v1/models")                 # any route, by exact path

Fault kinds:

- ``"500"`` / ``"429"``: answer with that status (429 carries ``Retry-After: retry_after``) before any work.
- ``"load_failure"``: loading the model fails (400 ``Failed to load model ...``), JIT or ``/api/v1/models/load``.
- ``"stall"``: wait ``seconds`` after ``after_chunks`` token chunks (before the answer when not streaming).
- ``"drop"``: close the connection abruptly after ``after_chunks`` token chunks (no answer when not streaming).
- ``"malformed_chunk"``: send a broken JSON ``data:`` line after ``after_chunks`` token chunks, then carry on.
- ``"stream_error"``: after ``after_chunks`` token chunks send an in-band error (``form="event"``: ``event: error``
  as 0.4.21 does; ``form="data"``: a plain ``data: {"error": ...}`` line) and end the stream without ``[DONE]``.
- ``"empty_stream"``: a well-formed stream with no content deltas (a context-overflow case seen in the wild).
- ``"download_failure"``: a model download (LM Studio 0.4's ``/api/v1/models/download``) fails halfway.
- ``"tool_unknown_name"`` / ``"tool_bad_arguments"`` / ``"tool_bad_json"``: a request that calls tools calls one
  nobody offered, with arguments that break its schema, or with JSON cut in the middle
  (see :mod:`lm_notebook.testing.tool_calls`).
- ``"break_schema"``: a ``response_format: json_schema`` answer that breaks its schema (a required field missing).

Faults without ``path`` apply to the generation routes (chat, completions, embeddings); with ``path`` they apply to
every request for that exact path.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

ErrorStyle = Literal["0.3", "0.4"]
LineEnding = Literal["\n", "\r\n"]
FaultKind = Literal["500", "429", "load_failure", "stall", "drop", "malformed_chunk", "stream_error", "empty_stream",
                    "tool_unknown_name", "tool_bad_arguments", "tool_bad_json", "break_schema", "download_failure"]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "500", "429", "load_failure", "stall", "drop", "malformed_chunk", "stream_error", "empty_stream",
    "tool_unknown_name", "tool_bad_arguments", "tool_bad_json", "break_schema", "download_failure",
)
STREAM_FAULTS: frozenset[str] = frozenset({"stall", "drop", "malformed_chunk", "stream_error", "empty_stream",
                                           "break_schema"})


@dataclass(frozen=True)
class Quirks:
    """Wire-format traits of one LM Studio build.

    - ``error_style``: ``"0.4"`` object error bodies, ``"0.3"`` string bodies (and 404 for unknown models);
      ``None`` follows the server's ``version``.
    - ``line_ending``: ``"\\r\\n"`` ends every SSE line with CRLF.
    - ``keep_alive_every``: a ``: keep-alive`` comment before the first chunk and after every N chunks (0 = none).
    - ``split_multibyte``: the first multi-byte UTF-8 character of a stream is cut across two socket writes.
    - ``extended_fields``: newer builds' extras (``reasoning_content``/``tool_calls`` in the message,
      ``completion_tokens_details``, an empty ``stats``) in non-streamed chat answers.
    """

    error_style: ErrorStyle | None = None
    line_ending: LineEnding = "\n"
    keep_alive_every: int = 0
    split_multibyte: bool = False
    extended_fields: bool = True


@dataclass
class Fault:
    """One switched-on fault; see the module docstring for the kinds. ``hits`` counts the requests it hit."""

    kind: FaultKind
    model: str | None = None
    path: str | None = None
    times: int | None = None  # None: every matching request until cleared
    seconds: float = 0.0
    after_chunks: int = 0
    retry_after: float | None = 1.0
    form: Literal["event", "data"] = "event"
    hits: int = 0

    def matches(self, *, model: str | None, path: str, generation: bool) -> bool:
        if self.path is not None:
            return self.path == path and (self.model is None or self.model == model)
        return generation and (self.model is None or self.model == model)


@dataclass
class FaultBook:
    """The switched-on faults; thread-safe, since tests add faults while the server's loop reads them."""

    _faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, fault: Fault) -> Fault:
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r}; use one of {', '.join(FAULT_KINDS)}")
        if fault.times is not None and fault.times < 1:
            raise ValueError("times must be at least 1 (or None for every request)")
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self, model: str | None = None) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if model is not None and f.model != model]

    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, kinds: frozenset[str], *, model: str | None, path: str, generation: bool) -> list[Fault]:
        """The matching faults of these kinds, counted as used (a fault with ``times`` left 0 is removed)."""
        taken: list[Fault] = []
        with self._lock:
            for fault in list(self._faults):
                if fault.kind in kinds and fault.matches(model=model, path=path, generation=generation):
                    fault.hits += 1
                    taken.append(fault)
                    if fault.times is not None and fault.hits >= fault.times:
                        self._faults.remove(fault)
        return taken
