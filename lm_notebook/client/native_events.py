"""LM Studio 0.4's native chat answers (``POST /api/v1/chat``) into the usual parts and result (pure; no I/O).

A native stream is named events (``chat.start``, ``model_load.*``, ``prompt_processing.*``, ``reasoning.*``,
``tool_call.*``, ``message.*``, ``error``, ``chat.end``); :class:`NativeEvents` turns each into
:class:`~lm_notebook.client.accumulator.StreamPart` items on a
:class:`~lm_notebook.client.accumulator.ChatAccumulator`: thinking and answer text as usual, ``"progress"`` for a
model load or the prompt's reading, ``"tool"`` for an MCP tool call the server ran. Unknown events are ignored (later
versions may add some). :func:`add_native_body` takes a whole answer (not streamed, or ``chat.end``'s ``result``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lm_notebook.client.accumulator import CONTENT, PROGRESS, REASONING, TOOL, ChatAccumulator, StreamPart
from lm_notebook.client.native_types import ServerStats, StreamProgress, ToolEvent, provider_label
from lm_notebook.client.types import ChatResult, Usage


def _usage(stats: ServerStats | None) -> Usage | None:
    if stats is None or (stats.input_tokens is None and stats.output_tokens is None):
        return None
    total = (stats.input_tokens or 0) + (stats.output_tokens or 0)
    return Usage(prompt_tokens=stats.input_tokens, completion_tokens=stats.output_tokens, total_tokens=total,
                 reasoning_tokens=stats.reasoning_tokens)


def _arguments(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def tool_event(item: Mapping[str, Any]) -> ToolEvent:
    """A ``tool_call`` / ``invalid_tool_call`` output item, or a ``tool_call.success`` / ``.failure`` event."""
    kind = item.get("type")
    raw_metadata = item.get("metadata")
    metadata: Mapping[str, Any] = raw_metadata if isinstance(raw_metadata, Mapping) else {}
    tool = item.get("tool") or metadata.get("tool_name") or "tool"
    failed = kind in ("invalid_tool_call", "tool_call.failure")
    output = item.get("output")
    return ToolEvent(
        tool=str(tool),
        arguments=_arguments(item.get("arguments")),
        output=output if isinstance(output, str) or output is None else str(output),
        ok=not failed,
        reason=str(item["reason"]) if failed and item.get("reason") is not None else None,
        provider=provider_label(item.get("provider_info")),
    )


def add_native_body(acc: ChatAccumulator, body: Mapping[str, Any], *, texts: bool = True,
                    max_output_tokens: int | None = None) -> None:
    """Take a whole native answer (``model_instance_id``, ``output``, ``stats``, ``response_id``). ``texts``: take
    its reasoning and message items too (False after a stream, whose deltas already gave them).

    The native route says no finish reason: an answer whose output tokens reached the request's
    ``max_output_tokens`` was cut there (``"length"``), any other ended on its own (``"stop"``)."""
    acc.route = "native"
    if isinstance(body.get("model_instance_id"), str):
        acc.model = body["model_instance_id"]
    if isinstance(body.get("response_id"), str):
        acc.response_id = acc.id = body["response_id"]
    stats = ServerStats.from_native(body.get("stats"))
    if stats is not None:
        acc.server_stats = stats
        acc.usage = _usage(stats)
    output = body.get("output")
    had_tools = bool(acc.tool_events)  # a stream's tool_call events gave them already
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        if kind in ("tool_call", "invalid_tool_call"):
            if not had_tools:
                acc.tool_events.append(tool_event(item))
        elif texts and kind in ("reasoning", "message") and isinstance(item.get("content"), str):
            acc.add_text(REASONING if kind == "reasoning" else CONTENT, item["content"])
    if acc.finish_reason is None:
        cut = (max_output_tokens is not None and stats is not None and stats.output_tokens is not None
               and stats.output_tokens >= max_output_tokens)
        acc.finish_reason = "length" if cut else "stop"


def result_from_native_body(
    body: Mapping[str, Any], started: float, max_output_tokens: int | None = None
) -> ChatResult:
    """A whole (not streamed) native answer; ``started`` is when the request was sent (``time.perf_counter()``)."""
    acc = ChatAccumulator(streaming=False, started=started)
    add_native_body(acc, body, max_output_tokens=max_output_tokens)
    acc.finish()
    return acc.result()


class NativeEvents:
    """One native stream's events into parts. ``ended``: ``chat.end`` arrived; ``error``: the ``error`` event's data
    (the stream goes on to ``chat.end``, which carries the partial answer)."""

    __slots__ = ("_acc", "_max_output_tokens", "_tool_args", "ended", "error")

    def __init__(self, acc: ChatAccumulator, max_output_tokens: int | None = None) -> None:
        self._acc = acc
        self._max_output_tokens = max_output_tokens
        self._acc.route = "native"
        self.ended = False
        self.error: Mapping[str, Any] | None = None
        self._tool_args: Mapping[str, Any] | None = None

    def _progress(self, stage: Any, data: Mapping[str, Any], fraction: float, *, done: bool = False) -> StreamPart:
        instance = data.get("model_instance_id")
        load_time = data.get("load_time_seconds")
        progress = StreamProgress(
            stage=stage, fraction=max(0.0, min(1.0, fraction)),
            instance=instance if isinstance(instance, str) else self._acc.model, done=done,
            load_time_seconds=float(load_time) if isinstance(load_time, (int, float)) else None,
        )
        self._acc.progress = progress
        return StreamPart(PROGRESS, "", progress)

    def add(self, name: str, data: Mapping[str, Any]) -> list[StreamPart]:
        """The parts one event gives."""
        acc = self._acc
        if name in ("reasoning.delta", "message.delta"):
            content = data.get("content")
            return acc.add_text(REASONING if name == "reasoning.delta" else CONTENT, content) \
                if isinstance(content, str) else []
        stage, _, step = name.partition(".")
        if stage in ("model_load", "prompt_processing"):
            if step == "start":
                return [self._progress(stage, data, 0.0)]
            if step == "progress":
                value = data.get("progress")
                return [self._progress(stage, data, float(value))] if isinstance(value, (int, float)) else []
            if step == "end":
                return [self._progress(stage, data, 1.0, done=True)]
            return []
        if name == "chat.start":
            if isinstance(data.get("model_instance_id"), str):
                acc.model = data["model_instance_id"]
            return []
        if name == "tool_call.arguments":
            self._tool_args = _arguments(data.get("arguments"))
            return []
        if name in ("tool_call.success", "tool_call.failure"):
            event = tool_event({**data, "type": name})
            if event.arguments is None and self._tool_args is not None:
                event = ToolEvent(event.tool, self._tool_args, event.output, event.ok, event.reason, event.provider)
            self._tool_args = None
            acc.tool_events.append(event)
            return [StreamPart(TOOL, event.output or event.reason or "", event)]
        if name == "error":
            self.error = data
            return []
        if name == "chat.end":
            self.ended = True
            result = data.get("result")
            if isinstance(result, Mapping):
                # the deltas gave the text already; a stream that sent none (an error first) takes the result's
                add_native_body(acc, result, texts=acc.deltas == 0, max_output_tokens=self._max_output_tokens)
            elif acc.finish_reason is None:
                acc.finish_reason = "stop"
            return []
        return []  # reasoning.start/end, message.start/end, tool_call.start, and events of later versions
