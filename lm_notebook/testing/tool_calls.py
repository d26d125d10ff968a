"""The fake model's tool calls: which tools it calls, with what arguments, how it answers their results, and the
faults that make its calls wrong.

Given ``tools`` (and ``tool_choice`` not ``"none"``), a request gets tool calls instead of text when:

- a scripted round is queued for the model (``server.script_tool_calls(model, [("lookup", {"city": "Paris"})])``):
  exactly those calls (arguments as a dict, or raw text sent as it is), whatever the conversation;
- else, the last message is not a tool result: a forced ``tool_choice`` names the tool; else every offered tool whose
  name the last user message mentions, in the order mentioned (several: parallel calls, indexes 0, 1, …); else the
  first tool. Arguments are generated from each tool's schema (its required properties, hinted by the prompt).

After tool results (the last message is a ``tool`` one) it answers in text that repeats each result, so a test can
see the results reached the model. Faults (``server.set_fault(kind)``, used by a request that calls tools):
``"tool_unknown_name"`` renames the first call to a tool nobody offered, ``"tool_bad_arguments"`` gives it
arguments of the wrong types (and an unexpected one), ``"tool_bad_json"`` cuts its arguments' JSON in the middle.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from lm_notebook.testing import replies
from lm_notebook.testing.generation import ToolCallPlan

TOOL_FAULTS: frozenset[str] = frozenset({"tool_unknown_name", "tool_bad_arguments", "tool_bad_json"})
INVENTED_TOOL = "search_the_web"  # what a confused model asks for
ScriptedCall = tuple[str, Mapping[str, Any] | str]
_WRONG_TYPES = {"string": 12345, "integer": "many", "number": "lots", "boolean": "perhaps", "array": "one, two",
                "object": "none"}


class ToolScriptBook:
    """Scripted rounds of tool calls per model id; each round is used once, in order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[list[ScriptedCall]]] = {}

    def add(self, model: str, rounds: Sequence[Sequence[ScriptedCall]]) -> None:
        checked = []
        for calls in rounds:
            round_calls = [(str(name), args) for name, args in calls]
            if not round_calls:
                raise ValueError("a scripted round needs at least one (name, arguments) call")
            checked.append(round_calls)
        with self._lock:
            self._queues.setdefault(model, deque()).extend(checked)

    def pop(self, model: str) -> list[ScriptedCall] | None:
        with self._lock:
            queue = self._queues.get(model)
            return queue.popleft() if queue else None

    def pending(self, model: str) -> int:
        with self._lock:
            return len(self._queues.get(model, ()))


def offered_tools(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The ``function`` objects of the request's tools (those well formed)."""
    return [t["function"] for t in body.get("tools") or []
            if isinstance(t, Mapping) and isinstance(t.get("function"), Mapping)]


def _plan(index: int, messages: Sequence[Mapping[str, Any]], name: str, arguments: str) -> ToolCallPlan:
    return ToolCallPlan(index, replies.tool_call_id(messages, index), name, arguments,
                        replies.split_pieces(arguments, arguments) or [arguments])


def _mentioned(tools: Sequence[Mapping[str, Any]], text: str) -> list[Mapping[str, Any]]:
    lowered = text.lower()
    found = []
    for tool in tools:
        name = str(tool.get("name", ""))
        match = re.search(rf"(?<![\w]){re.escape(name.lower())}(?![\w])", lowered) if name else None
        if match:
            found.append((match.start(), tool))
    return [tool for _, tool in sorted(found, key=lambda pair: pair[0])]


def plan_tool_calls(body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]],
                    scripted: list[ScriptedCall] | None) -> list[ToolCallPlan]:
    """The calls this request answers with (empty: it answers in text)."""
    tools = offered_tools(body)
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return []
    if scripted is not None:
        return [_plan(i, messages, name, args if isinstance(args, str) else json.dumps(dict(args), ensure_ascii=False))
                for i, (name, args) in enumerate(scripted)]
    if messages and messages[-1].get("role") == "tool":
        return []
    chosen: list[Mapping[str, Any]] = []
    if isinstance(choice, Mapping):
        wanted = (choice.get("function") or {}).get("name")
        chosen = [t for t in tools if t.get("name") == wanted][:1]
    if not chosen:
        chosen = _mentioned(tools, replies.last_user_text(messages)) or tools[:1]
    return [_plan(i, messages, str(tool.get("name", "tool")), _arguments(tool.get("parameters") or {}, messages))
            for i, tool in enumerate(chosen)]


def _arguments(parameters: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> str:
    """Arguments from the schema; a choice (``enum``) the prompt names is the one taken ("lookup Rome")."""
    arguments = json.loads(replies.tool_arguments(parameters, messages))
    said = replies.last_user_text(messages).lower()
    for name, sub in (parameters.get("properties") or {}).items():
        choices = sub.get("enum") if isinstance(sub, Mapping) else None
        if name in arguments and isinstance(choices, list):
            named = [c for c in choices if isinstance(c, str) and re.search(rf"\b{re.escape(c.lower())}\b", said)]
            if named:
                arguments[name] = named[0]
    return json.dumps(arguments, ensure_ascii=False)


def faulted(plans: list[ToolCallPlan], kinds: Sequence[str], body: Mapping[str, Any]) -> list[ToolCallPlan]:
    """The calls with the faults applied to the first one."""
    if not plans:
        return plans
    first = plans[0]
    for kind in kinds:
        if kind == "tool_unknown_name":
            names = {str(t.get("name")) for t in offered_tools(body)}
            first = replace(first, name=INVENTED_TOOL if INVENTED_TOOL not in names else INVENTED_TOOL + "_2")
        elif kind == "tool_bad_arguments":
            schema = next((t.get("parameters") or {} for t in offered_tools(body) if t.get("name") == first.name), {})
            props = schema.get("properties") or {}
            wrong: dict[str, Any] = {key: _WRONG_TYPES.get(str((sub or {}).get("type", "string")))
                                     for key, sub in props.items()}
            wrong["unexpected_argument"] = True
            first = replace(first, arguments=json.dumps(wrong))
        elif kind == "tool_bad_json":
            cut = first.arguments[: max(1, len(first.arguments) // 2)]
            first = replace(first, arguments=cut if cut != first.arguments else '{"')
    pieces = replies.split_pieces(first.arguments, first.arguments) or [first.arguments]
    return [replace(first, pieces=pieces), *plans[1:]]


def tool_answer(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """The text answer after tool results: each result repeated, by tool name; None when the last message is not a
    tool result."""
    results: list[Mapping[str, Any]] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.append(message)
    if not results:
        return None
    names = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            if isinstance(call, Mapping):
                names[call.get("id")] = (call.get("function") or {}).get("name")
    lines = []
    for message in reversed(results):
        name = message.get("name") or names.get(message.get("tool_call_id")) or "the tool"
        text = " ".join(replies.message_text(message.get("content")).split())
        shown = text if len(text) <= 300 else text[:300] + "…"
        if text.startswith("Error:"):
            lines.append(f"{name} failed ({shown[len('Error:'):].strip()}).")
        else:
            lines.append(f"{name} returned: {shown}.")
    return "From the tools: " + " ".join(lines) + " That is the answer."
