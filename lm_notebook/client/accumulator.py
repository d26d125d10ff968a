"""Chat-completion chunks (or a whole answer) → a :class:`ChatResult`: pure, stdlib only, no I/O.

Keeps the thinking of reasoning models apart from the answer whichever form the server used, assembles tool calls
from streamed pieces by index, and measures time to first token and tokens/s.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Literal, NamedTuple

from lm_notebook.client.native_types import ServerStats, StreamProgress, ToolEvent
from lm_notebook.client.types import ChatResult, Timings, ToolCall, Usage

PartKind = Literal["content", "reasoning", "tool_call", "progress", "tool"]
CONTENT: PartKind = "content"
REASONING: PartKind = "reasoning"
TOOL_CALL: PartKind = "tool_call"
PROGRESS: PartKind = "progress"  # a model load's or the prompt's progress (native route): ``detail`` says how far
TOOL: PartKind = "tool"  # a tool call the server ran (native route, MCP integrations): ``detail`` is the ToolEvent

_OPEN, _CLOSE = "<think>", "</think>"


class StreamPart(NamedTuple):
    kind: PartKind
    text: str
    detail: StreamProgress | ToolEvent | None = None


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``tag``."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


class TextBuffer:
    """Appends many small strings; memory stays proportional to the text, not to the number of pieces.

    (``io.StringIO`` keeps every written piece alive until it is read, which costs ~60 bytes a chunk.)
    One thread writes; any thread may read: a reader gets a consistent prefix of what was written. The per-write
    path takes no lock (a list append is atomic); compaction and reads share one.
    """

    __slots__ = ("_blocks", "_lock", "_pieces", "chars")
    _COMPACT_EVERY = 512

    def __init__(self) -> None:
        self._blocks: list[str] = []
        self._pieces: list[str] = []
        self._lock = threading.Lock()
        self.chars = 0

    def write(self, text: str) -> None:
        pieces = self._pieces
        pieces.append(text)
        self.chars += len(text)
        if len(pieces) >= self._COMPACT_EVERY:
            block = "".join(pieces)
            with self._lock:
                self._blocks.append(block)
                self._pieces = []  # a new list: a reader holding the old one still sees a consistent prefix

    def getvalue(self) -> str:
        with self._lock:
            blocks, pieces = self._blocks, list(self._pieces)
            if len(blocks) > 1:
                blocks[:] = ["".join(blocks)]
            head = blocks[0] if blocks else ""
        return head + "".join(pieces) if pieces else head


class ChatAccumulator:
    """Builds a :class:`ChatResult` from chat-completion chunks or a whole answer (pure; no I/O).

    Thinking is kept apart from the answer whichever form the server used: ``reasoning_content`` or ``reasoning``
    fields, or ``<think>…</think>`` at the start of ``content``.
    """

    def __init__(self, *, streaming: bool, started: float | None = None) -> None:
        self.streaming = streaming
        self.started = time.perf_counter() if started is None else started
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self._content = TextBuffer()
        self._reasoning = TextBuffer()
        self._tools: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.stats: dict[str, Any] | None = None
        self.server_stats: ServerStats | None = None
        self.response_id: str | None = None
        self.tool_events: list[ToolEvent] = []
        self.progress: StreamProgress | None = None
        self.route: str | None = None
        self.deltas = 0
        # <think> tag state: "start" (only whitespace seen), "think" (inside), "answer" (after / no tags)
        self._tag_state = "start"
        self._tag_tail = ""
        self._lstrip = True

    # --- feeding -------------------------------------------------------------------------------------------------
    def add_chunk(self, chunk: dict[str, Any]) -> list[StreamPart]:
        """Take one parsed ``chat.completion.chunk``; return the parts it adds."""
        if self.id is None:
            self.id = chunk.get("id")
            self.model = chunk.get("model")
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_json(usage)
        choices = chunk.get("choices")
        if not choices:  # the trailing usage chunk has "choices": []
            return []
        choice = choices[0]
        finish = choice.get("finish_reason")
        if finish:
            self.finish_reason = finish
        delta = choice.get("delta")
        if not delta:
            return []
        parts: list[StreamPart] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            self._add_reasoning(reasoning, parts)
        content = delta.get("content")
        if content:
            self._add_content(content, parts)
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            self._add_tool_pieces(tool_calls, parts)
        return parts

    def add_message(self, body: dict[str, Any]) -> None:
        """Take a whole non-streamed ``chat.completion`` answer."""
        self.id = body.get("id")
        self.model = body.get("model")
        self.usage = Usage.from_json(body.get("usage"))
        stats = body.get("stats")
        self.stats = stats if isinstance(stats, dict) and stats else None
        self.server_stats = ServerStats.from_v0(self.stats)
        self.route = "openai"
        choices = body.get("choices") or [{}]
        choice = choices[0]
        self.finish_reason = choice.get("finish_reason")
        message = choice.get("message") or {}
        parts: list[StreamPart] = []
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if reasoning:
            self._add_reasoning(reasoning, parts)
        if message.get("content"):
            self._add_content(message["content"], parts)
        if message.get("tool_calls"):
            for i, call in enumerate(message["tool_calls"]):
                self._add_tool_pieces([{**call, "index": call.get("index", i)}], parts)
        self.finished_at = time.perf_counter()

    def add_text(self, kind: PartKind, text: str) -> list[StreamPart]:
        """Take one piece of thinking (``REASONING``) or answer (``CONTENT``) that came on its own (the native
        route's ``reasoning.delta`` / ``message.delta``); return the parts it adds."""
        parts: list[StreamPart] = []
        if text:
            (self._add_reasoning if kind == REASONING else self._add_content)(text, parts)
        return parts

    def _mark_first(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def _add_reasoning(self, text: str, parts: list[StreamPart]) -> None:
        self._mark_first()
        self.deltas += 1
        self._reasoning.write(text)
        parts.append(StreamPart(REASONING, text))

    def _add_content(self, text: str, parts: list[StreamPart]) -> None:
        self._mark_first()
        self.deltas += 1
        if self._tag_state == "answer" and not self._lstrip:
            self._content.write(text)
            parts.append(StreamPart(CONTENT, text))
            return
        self._split_think(text, parts)

    def _emit_content(self, text: str, parts: list[StreamPart]) -> None:
        if self._lstrip:
            text = text.lstrip()
            if not text:
                return
            self._lstrip = False
        self._content.write(text)
        parts.append(StreamPart(CONTENT, text))

    def _split_think(self, text: str, parts: list[StreamPart]) -> None:
        text = self._tag_tail + text
        self._tag_tail = ""
        while text:
            if self._tag_state == "start":
                stripped = text.lstrip()
                if not stripped:
                    return
                if stripped.startswith(_OPEN):
                    self._tag_state = "think"
                    text = stripped[len(_OPEN) :]
                    continue
                if _OPEN.startswith(stripped):  # "<thi" so far: wait for more
                    self._tag_tail = stripped
                    return
                self._tag_state = "answer"
                continue
            if self._tag_state == "think":
                end = text.find(_CLOSE)
                if end < 0:
                    keep = _partial_tag_suffix(text, _CLOSE)
                    body, self._tag_tail = (text[:-keep], text[-keep:]) if keep else (text, "")
                    if body:
                        self._reasoning.write(body)
                        parts.append(StreamPart(REASONING, body))
                    return
                if end:
                    self._reasoning.write(text[:end])
                    parts.append(StreamPart(REASONING, text[:end]))
                text = text[end + len(_CLOSE) :]
                self._tag_state = "answer"
                self._lstrip = True
                continue
            self._emit_content(text, parts)
            return

    def _add_tool_pieces(self, pieces: list[dict[str, Any]], parts: list[StreamPart]) -> None:
        for piece in pieces:
            index = piece.get("index", 0)
            slot = self._tools.setdefault(index, {"id": None, "type": "function", "name": "", "arguments": []})
            if piece.get("id"):
                slot["id"] = piece["id"]
            if piece.get("type"):
                slot["type"] = piece["type"]
            fn = piece.get("function") or {}
            name = fn.get("name")
            # llama-cpp-python repeats the whole name in every delta of a streamed call; OpenAI and LM Studio send it
            # once (a name sent in pieces still joins: only a repeat of the name so far is dropped)
            if name and name != slot["name"]:
                slot["name"] += name
            self.deltas += 1
            args = fn.get("arguments")
            if args:
                slot["arguments"].append(args if isinstance(args, str) else json.dumps(args))
                parts.append(StreamPart(TOOL_CALL, args if isinstance(args, str) else json.dumps(args)))

    def finish(self) -> None:
        if self._tag_tail:
            tail, self._tag_tail = self._tag_tail, ""
            (self._reasoning if self._tag_state == "think" else self._content).write(tail)
        if self.finished_at is None:
            self.finished_at = time.perf_counter()

    def take_plain_content(self, chunk: dict[str, Any]) -> str | None:
        """The hot path: the answer text of a chunk that carries nothing else, or None (use ``add_chunk``)."""
        if self._lstrip or self._tag_state != "answer":
            return None
        choices = chunk.get("choices")
        if not choices:
            return None
        choice = choices[0]
        delta = choice.get("delta")
        if delta is None or len(delta) != 1 or choice.get("finish_reason") is not None or "usage" in chunk:
            return None
        text = delta.get("content")
        if text is None:
            return None
        self.deltas += 1
        self._content.write(text)
        return text  # type: ignore[no-any-return]

    def take_plain_text(self, text: str) -> bool:
        """The hot path of the native route: a ``message.delta``'s text taken as it is, once the answer has begun
        (no ``<think>`` tag or leading space left to handle); False when it must go through :meth:`add_text`."""
        if self._lstrip or self._tag_state != "answer":
            return False
        if text:
            self.deltas += 1
            self._content.write(text)
        return True

    def take_plain_run(self, texts: list[str]) -> str | None:
        """The hot path for a run of plain chunks' texts (:mod:`~lm_notebook.client.delta_runs`), taken as one:
        their text, or None when the answer has not begun (no ``<think>`` tag or leading space left to handle)."""
        if self._lstrip or self._tag_state != "answer":
            return None
        text = "".join(texts)
        self.deltas += len(texts)
        self._content.write(text)
        return text

    @property
    def content_chars(self) -> int:
        return self._content.chars

    # --- reading -------------------------------------------------------------------------------------------------
    @property
    def content(self) -> str:
        return self._content.getvalue()

    @property
    def reasoning(self) -> str:
        return self._reasoning.getvalue()

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=s["id"], name=s["name"], arguments="".join(s["arguments"]), type=s["type"], index=i)
            for i, s in sorted(self._tools.items())
        )

    def timings(self) -> Timings:
        end = self.finished_at if self.finished_at is not None else time.perf_counter()
        total = end - self.started
        ttft = (self.first_token_at - self.started) if (self.first_token_at is not None and self.streaming) else None
        tokens = self.usage.completion_tokens if self.usage and self.usage.completion_tokens else None
        if tokens is None and self.streaming:
            tokens = self.deltas
        if self.first_token_at is not None and self.streaming:
            # the first token arrives at TTFT; the rate is of the ones after it (one token has no rate)
            gen = end - self.first_token_at
            tokens = tokens - 1 if tokens else tokens
        else:
            gen = total
        tps = (tokens / gen) if tokens and gen > 0 else None
        if self.stats and not self.streaming:
            ttft = self.stats.get("time_to_first_token", ttft)
            tps = self.stats.get("tokens_per_second", tps)
        return Timings(time_to_first_token=ttft, total=total, tokens_per_second=tps)

    def result(self, *, stopped: bool = False) -> ChatResult:
        return ChatResult(
            content=self.content,
            reasoning=self.reasoning.strip(),  # <think>\n…\n</think> keeps newlines that are not thinking
            finish_reason=self.finish_reason,
            usage=self.usage,
            model=self.model,
            tool_calls=self.tool_calls(),
            timings=self.timings(),
            streaming=self.streaming,
            id=self.id,
            stopped=stopped,
            stats=self.stats,
            server_stats=self.server_stats,
            response_id=self.response_id,
            tool_events=tuple(self.tool_events),
            route=self.route,
        )
