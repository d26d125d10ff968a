"""What a model "generates" for one request: thinking, answer tokens, tool calls, and why it stopped.

One delta = one token = one streamed chunk, so ``completion_tokens`` always equals the number of token chunks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lm_notebook.testing import replies, schema_answers
from lm_notebook.testing.catalogue import ModelSpec

# v0 stats' stop_reason for each finish_reason
STOP_REASONS = {"stop": "eosFound", "length": "maxPredictedTokensReached", "tool_calls": "toolCalls"}


@dataclass(frozen=True)
class ToolCallPlan:
    index: int
    id: str
    name: str
    arguments: str
    pieces: list[str]


@dataclass
class Generation:
    deltas: list[tuple[str, str]]  # (field, token): field is "content", "reasoning_content" or "reasoning"
    finish_reason: str = "stop"
    stop_reason: str = "eosFound"
    tool_calls: list[ToolCallPlan] = field(default_factory=list)
    reasoning_count: int = 0

    @property
    def completion_tokens(self) -> int:
        return len(self.deltas) + sum(1 + len(t.pieces) for t in self.tool_calls)

    def text(self, field_name: str) -> str:
        return "".join(token for name, token in self.deltas if name == field_name)


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    value = body.get("max_tokens", body.get("max_completion_tokens"))
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None  # -1, null or absent: no limit


def _wants_tool_call(body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The tool to call: whenever tools are offered, not refused, and the last message is not a tool result."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, Mapping) and isinstance(t.get("function"), Mapping)]
    choice = body.get("tool_choice")
    if not tools or choice == "none" or (messages and messages[-1].get("role") == "tool"):
        return None
    if isinstance(choice, Mapping):
        wanted = (choice.get("function") or {}).get("name")
        for tool in tools:
            if tool["function"].get("name") == wanted:
                return tool["function"]  # type: ignore[no-any-return]
    return tools[0]["function"]  # type: ignore[no-any-return]


def plan_chat(
    spec: ModelSpec,
    body: Mapping[str, Any],
    messages: Sequence[Mapping[str, Any]],
    *,
    scripted: str | None,
    reply_tokens: int | None,
    tool_plans: Sequence[ToolCallPlan] | None = None,
    tool_text: str | None = None,
    seen: str = "",
    break_schema: bool = False,
) -> Generation:
    """``tool_plans``: the tool calls to answer with (see :mod:`~lm_notebook.testing.tool_calls`; None: the first
    offered tool, unless the last message is a tool result); ``tool_text``: the text answer to tool results.
    ``seen``: what a vision model says first about the images it got; ``break_schema``: a JSON-schema answer that
    breaks its schema (the ``break_schema`` fault)."""
    seed, temperature = body.get("seed"), body.get("temperature")
    deltas: list[tuple[str, str]] = []
    reasoning_count = 0
    effort = body.get("reasoning_effort")
    if spec.reasoning is not None and effort != "none" and spec.reasoning_tokens > 0:
        thinking = replies.reasoning_text(spec.id, messages, spec.reasoning_tokens)
        if spec.reasoning == "think_tags":
            # the tags are single special tokens, as in real tokenizers
            deltas.extend(("content", t) for t in ["<think>", "\n", *thinking, "\n", "</think>", "\n\n"])
            reasoning_count = len(thinking) + 4
        else:
            deltas.extend((spec.reasoning, t) for t in thinking)
            reasoning_count = len(thinking)
    plans: list[ToolCallPlan] = []
    if scripted is None and tool_plans is not None:
        plans = list(tool_plans)
    elif scripted is None and (tool := _wants_tool_call(body, messages)) is not None:
        arguments = replies.tool_arguments(tool.get("parameters") or {}, messages)
        plans.append(ToolCallPlan(0, replies.tool_call_id(messages, 0), str(tool.get("name", "tool")), arguments,
                                  replies.split_pieces(arguments, arguments)))
    finish, stop_reason = "stop", "eosFound"
    answer: list[str] = []
    if not plans:
        response_format = body.get("response_format")
        schema = None
        if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema")
        count = spec.reply_tokens if spec.reply_tokens is not None else reply_tokens
        if scripted is not None:
            text = scripted
        elif isinstance(schema, Mapping):  # a constrained answer follows its schema, tools' results or not
            text = schema_answers.json_answer(schema, spec.id, messages, seed,
                                              broken=break_schema or not spec.constrained)
            if not spec.constrained:
                text = f"Here is the JSON you asked for:\n\n```json\n{text}\n```"
        elif tool_text is not None:
            text = tool_text
        elif count is not None:
            text = ""
            said = replies.tokenize(seen)  # what a vision model saw comes first, within the exact count
            answer = [*said, *replies.reply_tokens_exact(max(count - len(said), 0), spec.id, messages, seed,
                                                         temperature)][:max(count, 0)]
        else:
            text = seen + replies.reply_text(spec.id, messages, seed, temperature)
        if text:
            text, stopped = replies.cut_at_stop(text, body.get("stop"))
            if stopped:
                stop_reason = "stopStringFound"
            answer = replies.tokenize(text)
    deltas.extend(("content", t) for t in answer)
    if plans:
        finish, stop_reason = "tool_calls", "toolCalls"
    generation = Generation(deltas, finish, stop_reason, plans, reasoning_count)
    limit = _max_tokens(body)
    if limit is not None and generation.completion_tokens > limit:
        del generation.deltas[limit:]
        generation.tool_calls = []
        generation.finish_reason, generation.stop_reason = "length", "maxPredictedTokensReached"
        generation.reasoning_count = min(generation.reasoning_count, limit)
    return generation


def plan_completion(spec: ModelSpec, body: Mapping[str, Any], *, scripted: str | None,
                    reply_tokens: int | None) -> Generation:
    """``/v1/completions``: plain text continuing the prompt (no thinking, no tools)."""
    prompt = body.get("prompt", "")
    prompt_text = prompt if isinstance(prompt, str) else " ".join(str(p) for p in prompt or [])
    messages = [{"role": "user", "content": prompt_text}]
    plain = ModelSpec(spec.id, reply_tokens=spec.reply_tokens)
    return plan_chat(plain, {k: v for k, v in body.items() if k not in ("tools", "response_format")}, messages,
                     scripted=scripted, reply_tokens=reply_tokens)
