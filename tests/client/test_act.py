"""act() / stream_act() over real loopback HTTP with the fake server: rounds, records, the model's bad calls sent
back as errors, on_call, max_rounds, Stop, and how parallel calls run on each client."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import signal
import threading
from typing import Any

import pytest

from lm_notebook.client import AsyncLMStudioClient, LMStudioClient
from lm_notebook.client.act_types import ToolCallRecord, ToolRoundsExceededError
from lm_notebook.client.errors import LMStudioRequestError
from lm_notebook.client.tools import Tool, tool_from_function
from lm_notebook.testing import MockLMStudioServer

QWEN = "qwen2.5-7b-instruct"
CHAT = "/v1/chat/completions"


def lookup(city: str) -> dict[str, Any]:
    """Facts about a city.

    Args:
        city: the city's name.
    """
    return {"city": city, "population": 2_100_000}


def plot_it(title: str) -> str:
    """Draw a plot."""
    return f"plotted {title}"


@pytest.fixture
def client(server: MockLMStudioServer) -> Any:
    with LMStudioClient(server.url, model=QWEN) as c:
        yield c


def chat_bodies(server: MockLMStudioServer) -> list[dict[str, Any]]:
    return [r.json for r in server.requests if r.path == CHAT and isinstance(r.json, dict)]


def test_act_runs_every_call_and_answers(server: MockLMStudioServer, client: LMStudioClient) -> None:
    result = client.act("Please lookup the city, then plot_it.", [lookup, plot_it])
    assert result.rounds == 2 and len(result.round_results) == 2
    assert [c.name for c in result.calls] == ["lookup", "plot_it"]  # the order the model asked in
    first, second = result.calls
    assert first.round == second.round == 1 and first.ok and first.error is None and first.duration >= 0
    assert json.loads(first.output or "") == {"city": first.arguments["city"], "population": 2_100_000}  # type: ignore[index]
    assert result.content.startswith("From the tools: lookup returned:") and "plotted" in result.content
    assert result.round_results[0].finish_reason == "tool_calls" and result.result.finish_reason == "stop"
    sent = chat_bodies(server)
    assert [t["function"]["name"] for t in sent[0]["tools"]] == ["lookup", "plot_it"]
    assert sent[0]["tools"][0]["function"]["parameters"]["properties"]["city"]["description"] == "the city's name."
    tool_messages = [m for m in sent[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == [first.id, second.id]
    assert tool_messages[1]["content"] == second.output
    assert sent[1]["messages"][1]["role"] == "assistant" and len(sent[1]["messages"][1]["tool_calls"]) == 2
    assert [m["role"] for m in result.messages] == ["user", "assistant", "tool", "tool", "assistant"]


@pytest.mark.parametrize(("fault", "failure", "words"), [
    ("tool_unknown_name", "unknown_tool", "There is no tool named 'search_the_web'. The tools are: lookup"),
    ("tool_bad_arguments", "invalid_arguments", "do not fit lookup's schema: city: Input should be a valid string"),
    ("tool_bad_json", "invalid_arguments", "must be a JSON object; they are not valid JSON"),
])
def test_the_models_bad_calls_go_back_as_errors(server: MockLMStudioServer, client: LMStudioClient, fault: Any,
                                                failure: str, words: str) -> None:
    ran: list[str] = []

    def tracked(city: str) -> str:
        ran.append(city)
        return city

    server.set_fault(fault, times=1)
    result = client.act("lookup Paris", [named_tool("lookup", tracked)])
    (call,) = result.calls
    assert call.failure == failure and call.invalid and words in (call.error or "") and call.output is None
    assert ran == [] and result.tool_errors == 1 and result.rounds == 2
    told = [m for m in chat_bodies(server)[1]["messages"] if m["role"] == "tool"]
    assert told[0]["content"] == f"Error: {call.error}"
    assert "failed" in result.content  # the fake answers with what it was told


def named_tool(name: str, fn: Any, *, run_in_thread: bool = False) -> Any:
    return tool_from_function(fn, name=name, run_in_thread=run_in_thread)


def test_an_exception_inside_a_function_goes_back_as_its_error(client: LMStudioClient) -> None:
    def lookup(city: str) -> str:
        raise KeyError(city)

    result = client.act("lookup it", [lookup])
    (call,) = result.calls
    assert call.failure == "exception" and not call.invalid and call.error.startswith("lookup raised KeyError")  # type: ignore[union-attr]
    assert result.tool_errors == 0 and result.rounds == 2


def test_on_call_can_refuse(server: MockLMStudioServer, client: LMStudioClient) -> None:
    asked: list[ToolCallRecord] = []

    def on_call(call: ToolCallRecord) -> bool:
        asked.append(call)
        return call.name != "plot_it"

    result = client.act("lookup then plot_it", [lookup, plot_it], on_call=on_call)
    assert [c.name for c in asked] == ["lookup", "plot_it"] and asked[0].output is None
    assert result.calls[0].ok and result.calls[1].refused and "refused" in (result.calls[1].error or "")


def test_max_rounds_stops_with_every_round_kept(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.script_tool_calls(QWEN, *([("lookup", {"city": f"c{i}"})] for i in range(5)))
    with pytest.raises(ToolRoundsExceededError) as caught:
        client.act("lookup", [lookup], max_rounds=3)
    err = caught.value
    assert err.max_rounds == 3 and err.act_result.rounds == 3 and len(chat_bodies(server)) == 3
    assert [c.arguments for c in err.act_result.calls] == [{"city": "c0"}, {"city": "c1"}, {"city": "c2"}]
    assert str(err) == err.message and "max_rounds=3" in err.message and "lookup ×3" in err.message
    assert err.partial is err.act_result.result


def test_scripted_raw_arguments_and_output_cap(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.script_tool_calls(QWEN, [("lookup", "[1, 2]")], [("lookup", {"city": "x" * 50})])
    result = client.act("hi", [lookup], max_output_chars=20)
    assert result.calls[0].arguments == "[1, 2]" and "JSON but not an object" in (result.calls[0].error or "")
    assert (result.calls[1].output or "").startswith('{"city": "xxxxxxxxxx\n… [cut: the output has')
    assert result.rounds == 3


def test_bad_arguments_to_act_are_refused_before_sending(server: MockLMStudioServer, client: LMStudioClient) -> None:
    with pytest.raises(LMStudioRequestError, match="max_rounds"):
        client.act("hi", [lookup], max_rounds=0)
    with pytest.raises(LMStudioRequestError, match="sets stream"):
        client.stream_act("hi", [lookup], stream=True)
    with pytest.raises(LMStudioRequestError, match="on_call"):
        client.act("hi", [lookup], on_call="yes")  # type: ignore[arg-type]
    assert chat_bodies(server) == []


def test_stream_act_parts_in_order(client: LMStudioClient) -> None:
    with client.stream_act("lookup and plot_it", [lookup, plot_it]) as stream:
        parts = list(stream)
    kinds = [p.kind for p in parts if p.kind != "content"]
    assert kinds == ["tool_call", "tool_call", "tool_result", "tool_result"]
    started = parts[0]
    assert started.call is not None and started.call.output is None and started.text == "lookup"
    results = [p for p in parts if p.kind == "tool_result"]
    assert results[1].text == results[1].call.output  # type: ignore[union-attr]
    text = "".join(p.text for p in parts if p.kind == "content")
    result = stream.result()
    assert text == result.content and result.calls == tuple(p.call for p in results) and not result.stopped


def test_stop_from_a_tool_ends_the_loop(server: MockLMStudioServer, client: LMStudioClient) -> None:
    """A Stop while a call runs: it finishes, the round's other calls do not run, no round follows."""
    holder: dict[str, Any] = {}

    def lookup(city: str) -> str:
        holder["stream"].close()  # as the panel's Stop does, from another thread or this one
        return "done"

    stream = client.stream_act("lookup then plot_it", [lookup, plot_it])
    holder["stream"] = stream
    parts = list(stream)
    result = stream.result()
    assert result.stopped and stream.stopped and result.rounds == 1 and len(chat_bodies(server)) == 1
    assert [(c.name, c.failure) for c in result.calls] == [("lookup", None), ("plot_it", "stopped")]
    assert [p.kind for p in parts if p.kind.startswith("tool")][-1] == "tool_result"


def test_stop_during_a_round_keeps_the_partial_answer(server: MockLMStudioServer) -> None:
    server.update_model(QWEN, tokens_per_second=50.0)
    with LMStudioClient(server.url, model=QWEN) as client:
        stream = client.stream_act("lookup", [lookup])
        seen = []
        for part in stream:
            seen.append(part)
            if part.kind == "content":
                threading.Thread(target=stream.close).start()  # the Stop button's thread
        result = stream.result()
    assert result.stopped and result.result.stopped and result.rounds == 2 and len(result.calls) == 1
    assert result.content and len(chat_bodies(server)) == 2


def test_break_stops_the_act(server: MockLMStudioServer, client: LMStudioClient) -> None:
    stream = client.stream_act("lookup", [lookup])
    for part in stream:
        if part.kind == "tool_call":
            break
    result = stream.result()
    assert result.stopped and result.calls == () and len(chat_bodies(server)) == 1


def test_async_act_and_concurrent_async_tools(server: MockLMStudioServer) -> None:
    both_started = {"lookup": asyncio.Event(), "plot_it": asyncio.Event()}

    async def alookup(city: str) -> str:
        both_started["lookup"].set()
        await asyncio.wait_for(both_started["plot_it"].wait(), 10)  # only returns if plot_it runs meanwhile
        return "ok"

    async def aplot(title: str) -> str:
        both_started["plot_it"].set()
        await asyncio.wait_for(both_started["lookup"].wait(), 10)
        return "drawn"

    async def main() -> tuple[Any, list[str]]:
        async with AsyncLMStudioClient(server.url, model=QWEN) as aclient:
            result = await aclient.act("lookup then plot_it", [named_tool("lookup", alookup),
                                                               named_tool("plot_it", aplot)])
            kinds = []
            async with aclient.stream_act("lookup", [lookup]) as stream:
                async for part in stream:
                    kinds.append(part.kind)
            return result, kinds

    result, kinds = asyncio.run(main())
    assert [c.output for c in result.calls] == ["ok", "drawn"] and result.rounds == 2
    assert kinds.count("tool_call") == kinds.count("tool_result") == 1


def test_sync_client_runs_calls_in_order_and_awaits_async_tools(client: LMStudioClient) -> None:
    order: list[str] = []

    async def alookup(city: str) -> str:
        order.append("lookup")
        await asyncio.sleep(0)
        return "ok"

    def plot(title: str) -> str:
        order.append("plot_it")
        return "drawn"

    result = client.act("plot_it after lookup", [named_tool("lookup", alookup), named_tool("plot_it", plot)])
    assert order == ["plot_it", "lookup"]  # the order the prompt mentions them, which is the model's order
    assert [c.output for c in result.calls] == ["drawn", "ok"]


def test_a_forced_tool_choice_holds_for_the_first_round_only(server: MockLMStudioServer,
                                                            client: LMStudioClient) -> None:
    forced = {"type": "function", "function": {"name": "plot_it"}}
    result = client.act("lookup", [lookup, plot_it], tool_choice=forced)
    assert [c.name for c in result.calls] == ["plot_it"] and result.rounds == 2
    assert [b["tool_choice"] for b in chat_bodies(server)] == [forced, "auto"]


def test_a_name_repeated_in_every_delta_is_one_name() -> None:
    """llama-cpp-python streams each tool-call delta with the whole function name again."""
    from lm_notebook.client.accumulator import ChatAccumulator

    acc = ChatAccumulator(streaming=True)
    for piece in ('{"a": ', "4}", ""):
        acc.add_chunk({"choices": [{"delta": {"tool_calls": [
            {"index": 0, "id": "call_0", "function": {"name": "add", "arguments": piece}}]}}]})
    for piece in ("get_", "weather"):
        acc.add_chunk({"choices": [{"delta": {"tool_calls": [{"index": 1, "function": {"name": piece}}]}}]})
    first, second = acc.tool_calls()
    assert (first.name, first.arguments) == ("add", '{"a": 4}') and second.name == "get_weather"


def test_a_schema_applies_to_the_final_answer_only(server: MockLMStudioServer, client: LMStudioClient) -> None:
    from pydantic import BaseModel

    class City(BaseModel):
        city: str
        population: int

    result = client.act("Please lookup Paris.", [lookup], schema=City)
    assert isinstance(result.result.parsed, City) and result.calls[0].ok
    sent = chat_bodies(server)
    assert [("response_format" in b, b.get("tool_choice")) for b in sent] == [
        (False, None), (False, None), (True, "none")]  # tool rounds free, the final answer constrained
    assert [m["role"] for m in sent[-1]["messages"]] == ["user", "assistant", "tool"]
    with client.stream_act("Please lookup Paris.", [lookup], schema=City) as stream:
        parts = list(stream)
        streamed = stream.result()
    assert isinstance(streamed.result.parsed, City)
    assert streamed.content == streamed.result.content and streamed.content.startswith("{")
    assert [p.kind for p in parts].count("tool_call") == 1


DEEP = "[" * 100_000 + "]" * 100_000


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Unsayable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_arguments_too_deep_to_parse_are_an_invalid_call(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.script_tool_calls(QWEN, [("lookup", DEEP), ("lookup", '{"city": ' + DEEP + "}")])
    result = client.act("hi", [lookup])
    deep_list, deep_value = result.calls
    assert deep_list.failure == deep_value.failure == "invalid_arguments"
    assert "not valid JSON (nested too deeply" in (deep_list.error or "")
    assert deep_list.arguments == DEEP and len(deep_list.error or "") < 400  # the raw text is kept, not echoed
    assert result.rounds == 2 and result.content


def test_arguments_too_deep_to_check_are_an_invalid_call(server: MockLMStudioServer, client: LMStudioClient) -> None:
    nest = {"$ref": "#/$defs/nest"}
    tool = Tool("nest", "Nested lists.", {"type": "object", "properties": {"a": nest},
                                          "$defs": {"nest": {"type": "array", "items": nest}}}, lambda a: "ran")
    server.script_tool_calls(QWEN, [("nest", '{"a": ' + "[" * 600 + "]" * 600 + "}")])
    (call,) = client.act("hi", [tool]).calls
    assert call.failure == "invalid_arguments" and "could not be checked against nest's schema" in (call.error or "")
    assert "RecursionError" in (call.error or "")


def test_outputs_and_exceptions_that_cannot_become_text_are_the_calls_error(server: MockLMStudioServer,
                                                                            client: LMStudioClient) -> None:
    def lookup(city: str) -> object:
        return Unprintable()

    def plot_it(title: str) -> str:
        raise Unsayable()

    result = client.act("lookup then plot_it", [lookup, plot_it])
    first, second = result.calls
    assert first.failure == "exception" and first.output is None
    assert "lookup returned a Unprintable that cannot be made text" in (first.error or "")
    assert second.failure == "exception" and (second.error or "").startswith("plot_it raised Unsayable")
    assert "its message cannot be shown" in (second.error or "")
    assert result.rounds == 2 and "failed" in result.content
    with client.stream_act("lookup then plot_it", [lookup, plot_it]) as stream:
        parts = list(stream)  # the streamed loop too: every part, no exception
    assert [p.call.failure for p in parts if p.kind == "tool_result"] == ["exception", "exception"]  # type: ignore[union-attr]


def test_async_stop_before_concurrent_calls_runs_none_of_them(server: MockLMStudioServer) -> None:
    """A Stop that lands as the round's calls are about to start (here: scheduled on seeing the first call):
    none of the concurrent async calls runs, and no round follows."""
    ran: list[str] = []

    async def alookup(city: str) -> str:
        ran.append("lookup")
        return "ok"

    async def aplot(title: str) -> str:
        ran.append("plot_it")
        return "drawn"

    async def main() -> Any:
        async with AsyncLMStudioClient(server.url, model=QWEN) as aclient:
            stream = aclient.stream_act("lookup then plot_it", [named_tool("lookup", alookup),
                                                                 named_tool("plot_it", aplot)])
            stopping = None
            async for part in stream:
                if part.kind == "tool_call" and stopping is None:
                    stopping = asyncio.ensure_future(stream.aclose())  # the Stop button's task
            assert stopping is not None
            await stopping
            return await stream.result()

    result = asyncio.run(main())
    assert ran == [] and result.stopped and result.rounds == 1 and len(chat_bodies(server)) == 1
    assert [(c.name, c.failure) for c in result.calls] == [("lookup", "stopped"), ("plot_it", "stopped")]


def test_async_stop_during_concurrent_calls_ends_the_loop(server: MockLMStudioServer) -> None:
    """A Stop while the concurrent calls run: each running call is cancelled at its next await (its record says
    so), and no round follows."""
    started = asyncio.Event
    events: dict[str, Any] = {}
    finished: list[str] = []

    async def alookup(city: str) -> str:
        events["lookup"].set()
        await events["never"].wait()  # a slow call: only a Stop ends it
        finished.append("lookup")
        return "ok"

    async def aplot(title: str) -> str:
        events["plot_it"].set()
        await events["never"].wait()
        finished.append("plot_it")
        return "drawn"

    async def main() -> Any:
        events.update(lookup=started(), plot_it=started(), never=started())
        async with AsyncLMStudioClient(server.url, model=QWEN) as aclient:
            stream = aclient.stream_act("lookup then plot_it", [named_tool("lookup", alookup),
                                                                 named_tool("plot_it", aplot)])

            async def stop_once_both_run() -> None:
                await events["lookup"].wait()
                await events["plot_it"].wait()
                await stream.aclose()

            stopper = asyncio.ensure_future(stop_once_both_run())
            kinds = [part.kind async for part in stream]
            await stopper
            return kinds, await stream.result()

    kinds, result = asyncio.run(main())
    assert finished == [] and result.stopped and result.rounds == 1 and len(chat_bodies(server)) == 1
    assert [(c.name, c.failure) for c in result.calls] == [("lookup", "stopped"), ("plot_it", "stopped")]
    assert "stopped while it ran" in (result.calls[0].error or "")
    assert kinds.count("tool_result") == 2


def assert_a_valid_conversation(messages: Any) -> None:
    """Each assistant message asking for tools is followed by exactly its tool results; no message repeats."""
    roles = [m["role"] for m in messages]
    for i, m in enumerate(messages):
        if m["role"] == "assistant" and m.get("tool_calls"):
            ids = [c["id"] for c in m["tool_calls"]]
            told = messages[i + 1:i + 1 + len(ids)]
            assert [t["role"] for t in told] == ["tool"] * len(ids), roles
            assert [t["tool_call_id"] for t in told] == ids, roles


def test_messages_after_max_rounds_are_a_valid_conversation(server: MockLMStudioServer,
                                                             client: LMStudioClient) -> None:
    server.script_tool_calls(QWEN, *([("lookup", {"city": f"c{i}"})] for i in range(3)))
    with pytest.raises(ToolRoundsExceededError) as caught:
        client.act("lookup", [lookup], max_rounds=2)
    messages = caught.value.act_result.messages
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "tool"]
    assert_a_valid_conversation(messages)


def test_messages_after_a_stop_are_a_valid_conversation(server: MockLMStudioServer, client: LMStudioClient) -> None:
    holder: dict[str, Any] = {}

    def lookup(city: str) -> str:
        holder["stream"].close()
        return "done"

    stream = client.stream_act("lookup then plot_it", [lookup, plot_it])
    holder["stream"] = stream
    list(stream)
    messages = stream.result().messages
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert_a_valid_conversation(messages)


def test_error_texts_and_invented_names_are_capped(server: MockLMStudioServer, client: LMStudioClient) -> None:
    def lookup(city: str) -> str:
        raise ValueError("x" * 5000)

    server.script_tool_calls(QWEN, [("lookup", {"city": "Paris"}), ("n" * 5000, {})])
    result = client.act("hi", [lookup], max_output_chars=100)
    raised, invented = result.calls
    assert raised.failure == "exception" and invented.failure == "unknown_tool"
    for call in (raised, invented):
        assert len(call.error or "") < 400 and "[cut:" in (call.error or "")
    assert invented.error.startswith("There is no tool named 'nnnn")  # type: ignore[union-attr]
    assert "The tools are: lookup" in (invented.error or "")
    told = [m["content"] for m in chat_bodies(server)[1]["messages"] if m["role"] == "tool"]
    assert told == [f"Error: {raised.error}", f"Error: {invented.error}"]


ADD_SCHEMA = {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
              "required": ["a", "b"]}


def test_undeclared_arguments_are_the_models_mistake(server: MockLMStudioServer, client: LMStudioClient) -> None:
    """A Tool's schema that does not forbid other properties: the ones it does not declare are not passed to a
    function that cannot take them (a TypeError inside would blame the function); they go back as invalid."""
    ran: list[tuple[float, float]] = []

    def add(a: float, b: float) -> float:
        ran.append((a, b))
        return a + b

    server.script_tool_calls(QWEN, [("add", {"a": 1, "b": 2, "c": 3, "d": 4})])
    result = client.act("add them", [Tool("add", "Add two numbers.", ADD_SCHEMA, add)])
    (call,) = result.calls
    assert call.failure == "invalid_arguments" and call.invalid and ran == [] and result.tool_errors == 1
    assert "unexpected properties 'c', 'd'" in (call.error or "") and "add takes: a, b" in (call.error or "")
    told = [m["content"] for m in chat_bodies(server)[1]["messages"] if m["role"] == "tool"]
    assert told == [f"Error: {call.error}"]


def test_undeclared_arguments_reach_a_function_that_takes_them(server: MockLMStudioServer,
                                                               client: LMStudioClient) -> None:
    """Passed on only when the schema allows other properties and the function takes ``**kwargs``."""

    def add(a: float, b: float, **more: float) -> float:
        return a + b + sum(more.values())

    server.script_tool_calls(QWEN, [("add", {"a": 1, "b": 2, "c": 3})])
    (call,) = client.act("add them", [Tool("add", "Add.", ADD_SCHEMA, add)]).calls
    assert call.ok and call.output == "6"
    closed = {**ADD_SCHEMA, "additionalProperties": False}
    server.script_tool_calls(QWEN, [("add", {"a": 1, "b": 2, "c": 3})])
    (call,) = client.act("add them", [Tool("add", "Add.", closed, add)]).calls
    assert call.failure == "invalid_arguments" and "unexpected property 'c'" in (call.error or "")
    # a named parameter the schema hides is never set by the model, even when the schema allows other properties
    def query(sql: str, db: str = "analytics.sqlite", **more: Any) -> str:
        return f"ran {sql} on {db} {sorted(more)}"

    sql_only = {"type": "object", "properties": {"sql": {"type": "string"}}, "required": ["sql"]}
    server.script_tool_calls(QWEN, [("query", {"sql": "select 1", "db": "/etc/prod.sqlite"})])
    (call,) = client.act("query it", [Tool("query", "Run SQL.", sql_only, query)]).calls
    assert call.failure == "invalid_arguments" and "unexpected property 'db'" in (call.error or "")
    server.script_tool_calls(QWEN, [("query", {"sql": "select 1", "limit": 5})])  # **more takes the undeclared
    (call,) = client.act("query it", [Tool("query", "Run SQL.", sql_only, query)]).calls
    assert call.ok and call.output == "ran select 1 on analytics.sqlite ['limit']"
    server.script_tool_calls(QWEN, [("add", {"a": 1, "b": 2})])  # a schema that declares nothing hides a and b
    (call,) = client.act("add them", [Tool("add", "Add.", {"type": "object"}, lambda a, b: a + b)]).calls
    assert call.failure == "invalid_arguments" and "unexpected properties 'a', 'b'" in (call.error or "")


def test_sync_stop_cancels_a_running_async_tool(server: MockLMStudioServer, client: LMStudioClient) -> None:
    """``close()`` from another thread (the panel's Stop) while an ``async def`` tool runs on the sync client: the
    coroutine is cancelled at its ``await`` and the loop ends at once; the finished call and a valid conversation
    are kept."""
    started, cancelled = threading.Event(), threading.Event()
    release: concurrent.futures.Future[None] = concurrent.futures.Future()  # set at the end, should a Stop be missed

    async def alookup(city: str) -> str:
        started.set()
        try:
            await asyncio.wrap_future(release)  # only a Stop ends it before the test does
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "finished"

    def stop() -> None:
        if started.wait(30):
            stream.close()
        cancelled.wait(30)  # then (a Stop missed) the tool finishes, and the test fails on its record
        released(release)

    stream = client.stream_act("plot_it then lookup", [named_tool("lookup", alookup), plot_it])
    stopper = threading.Thread(target=stop)
    stopper.start()
    try:
        kinds = [p.kind for p in stream]
    finally:
        released(release)
        stopper.join(30)
    result = stream.result()
    assert cancelled.is_set(), "the coroutine was not cancelled"
    assert [(c.name, c.failure) for c in result.calls] == [("plot_it", None), ("lookup", "stopped")]
    assert "stopped while it ran" in (result.calls[1].error or "") and kinds.count("tool_result") == 2
    assert result.stopped and stream.stopped and result.rounds == 1 and len(chat_bodies(server)) == 1
    assert [m["role"] for m in result.messages] == ["user", "assistant", "tool", "tool"]
    assert_a_valid_conversation(result.messages)


def released(release: concurrent.futures.Future[None]) -> None:
    """Let a test's waiting tool finish (it waits on ``release``, which its cancellation also cancels)."""
    if not release.done():
        release.set_result(None)


def test_ctrl_c_cancels_a_running_async_tool_and_keeps_the_act(server: MockLMStudioServer,
                                                               client: LMStudioClient) -> None:
    """Ctrl-C while an ``async def`` tool runs, in a thread whose event loop runs (as in a Jupyter kernel): the
    coroutine is cancelled, and act() ends at once with ActInterrupted (a KeyboardInterrupt) whose act_result keeps
    the finished call and a valid conversation."""
    main = threading.main_thread().ident
    assert main == threading.get_ident() and main is not None  # pytest runs the test in the main thread
    cancelled = threading.Event()
    release: concurrent.futures.Future[None] = concurrent.futures.Future()  # set at the end, should Ctrl-C be missed
    watchdog = threading.Thread(target=lambda: cancelled.wait(30) or released(release), daemon=True)
    watchdog.start()

    async def alookup(city: str) -> str:
        signal.pthread_kill(main, signal.SIGINT)  # the user's Ctrl-C, while this call runs
        try:
            await asyncio.wrap_future(release)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "finished"

    async def in_a_running_loop() -> Any:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a cell's: Ctrl-C raises KeyboardInterrupt
        return client.act("plot_it then lookup", [named_tool("lookup", alookup), plot_it])

    previous = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt) as caught:
            asyncio.run(in_a_running_loop())
    finally:
        signal.signal(signal.SIGINT, previous)
        watchdog.join(30)  # ends once the coroutine is cancelled (or, that missed, released)
        released(release)
    from lm_notebook.client.act_types import ActInterrupted

    assert isinstance(caught.value, ActInterrupted), repr(caught.value)
    assert cancelled.is_set(), "the coroutine was not cancelled"
    result = caught.value.act_result
    assert [(c.name, c.failure) for c in result.calls] == [("plot_it", None), ("lookup", "stopped")]
    assert result.stopped and result.rounds == 1 and len(chat_bodies(server)) == 1
    assert_a_valid_conversation(result.messages)
    assert str(caught.value).startswith("act() stopped by Ctrl-C while lookup ran: 1 round and 1 finished call are "
                                        "kept in err.act_result")
