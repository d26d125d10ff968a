"""The fake model's tool calls over raw HTTP: chosen by the prompt or a script, streamed as index-keyed pieces, the
faults that make them wrong, and the answer that repeats the tool results."""

from __future__ import annotations

import json
from typing import Any

import httpx

from lm_notebook.testing import MockLMStudioServer

QWEN = "qwen2.5-7b-instruct"


def tool(name: str, **props: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": {k: {"type": t} for k, t in props.items()}, "required": list(props)}}}


TOOLS = [tool("lookup", city="string"), tool("plot_it", title="string", size="integer")]


def streamed_calls(http: httpx.Client, body: dict[str, Any]) -> tuple[dict[int, dict[str, str]], str | None]:
    calls: dict[int, dict[str, str]] = {}
    finish = None
    with http.stream("POST", "/v1/chat/completions", json={"model": QWEN, "stream": True, **body}) as response:
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            choice = (json.loads(line[6:])["choices"] or [{}])[0]
            finish = choice.get("finish_reason") or finish
            for piece in (choice.get("delta") or {}).get("tool_calls") or []:
                slot = calls.setdefault(piece["index"], {"name": "", "arguments": ""})
                slot["name"] += piece.get("function", {}).get("name") or ""
                slot["arguments"] += piece.get("function", {}).get("arguments") or ""
    return calls, finish


def test_the_prompt_picks_the_tools_in_the_order_mentioned(http: httpx.Client) -> None:
    messages = [{"role": "user", "content": "First plot_it, then lookup the city."}]
    calls, finish = streamed_calls(http, {"messages": messages, "tools": TOOLS})
    assert finish == "tool_calls" and [calls[i]["name"] for i in sorted(calls)] == ["plot_it", "lookup"]
    assert set(json.loads(calls[0]["arguments"])) == {"title", "size"}
    only_first, _ = streamed_calls(http, {"messages": [{"role": "user", "content": "Hi"}], "tools": TOOLS})
    assert [c["name"] for c in only_first.values()] == ["lookup"]  # nothing mentioned: the first tool
    forced, _ = streamed_calls(http, {"messages": messages, "tools": TOOLS,
                                      "tool_choice": {"type": "function", "function": {"name": "lookup"}}})
    assert [c["name"] for c in forced.values()] == ["lookup"]
    none, finish = streamed_calls(http, {"messages": messages, "tools": TOOLS, "tool_choice": "none"})
    assert none == {} and finish == "stop"


def test_a_choice_the_prompt_names_is_taken(http: httpx.Client) -> None:
    cities = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "enum": ["Paris", "Rome"]}}, "required": ["city"]}}}
    named, _ = streamed_calls(http, {"messages": [{"role": "user", "content": "lookup rome"}], "tools": [cities]})
    unnamed, _ = streamed_calls(http, {"messages": [{"role": "user", "content": "lookup"}], "tools": [cities]})
    assert json.loads(named[0]["arguments"]) == {"city": "Rome"} and json.loads(unnamed[0]["arguments"]) == {
        "city": "Paris"}


def test_scripted_rounds_come_first_and_in_order(server: MockLMStudioServer, http: httpx.Client) -> None:
    server.script_tool_calls(QWEN, [("lookup", {"city": "Paris"}), ("plot_it", "{broken")], [("nope", {})])
    server.script(QWEN, "Scripted text.")
    messages = [{"role": "user", "content": "anything"}]
    first, _ = streamed_calls(http, {"messages": messages, "tools": TOOLS})
    assert first == {0: {"name": "lookup", "arguments": '{"city": "Paris"}'},
                     1: {"name": "plot_it", "arguments": "{broken"}}
    second, _ = streamed_calls(http, {"messages": messages, "tools": TOOLS})
    assert second == {0: {"name": "nope", "arguments": "{}"}}
    answer = http.post("/v1/chat/completions", json={"model": QWEN, "messages": messages, "tools": TOOLS}).json()
    assert answer["choices"][0]["message"]["content"] == "Scripted text."


def test_faults_break_the_first_call(server: MockLMStudioServer, http: httpx.Client) -> None:
    messages = [{"role": "user", "content": "lookup"}]
    body = {"messages": messages, "tools": TOOLS}
    server.set_fault("tool_unknown_name", times=1)
    calls, _ = streamed_calls(http, body)
    assert calls[0]["name"] == "search_the_web"
    server.set_fault("tool_bad_arguments", times=1)
    calls, _ = streamed_calls(http, body)
    assert json.loads(calls[0]["arguments"]) == {"city": 12345, "unexpected_argument": True}
    server.set_fault("tool_bad_json", times=1)
    calls, _ = streamed_calls(http, body)
    broken = calls[0]["arguments"]
    assert broken and not _parses(broken)
    calls, _ = streamed_calls(http, body)  # each fault was used once
    assert calls[0]["name"] == "lookup" and _parses(calls[0]["arguments"])


def test_a_plain_request_does_not_use_a_tool_fault(server: MockLMStudioServer, http: httpx.Client) -> None:
    fault = server.set_fault("tool_bad_json", times=1)
    http.post("/v1/chat/completions", json={"model": QWEN, "messages": [{"role": "user", "content": "hi"}]})
    assert fault.hits == 0 and server.faults == [fault]


def test_the_answer_repeats_the_tool_results(http: httpx.Client) -> None:
    messages = [
        {"role": "user", "content": "lookup and plot_it"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
            {"id": "2", "type": "function", "function": {"name": "plot_it", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "2.1 million"},
        {"role": "tool", "tool_call_id": "2", "content": "Error: no display"},
    ]
    answer = http.post("/v1/chat/completions", json={"model": QWEN, "messages": messages, "tools": TOOLS}).json()
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == ("From the tools: lookup returned: 2.1 million. plot_it failed "
                                            "(no display). That is the answer.")


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
