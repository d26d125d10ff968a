"""LM Studio 0.4's native chat over real loopback HTTP with the fake server: every event, every error, ``store``,
the server's stats, and the fallback on 0.3 and on servers without the route."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from lm_notebook import (
    AsyncLMStudioClient,
    ContextLengthExceededError,
    EndpointNotSupportedError,
    LMStudioAPIError,
    LMStudioClient,
    LMStudioStreamError,
    ModelLoadError,
    ModelNotFoundError,
)
from lm_notebook.client.native_types import ServerStats, StreamProgress, ToolEvent
from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec
from lm_notebook.testing.native_chat import LOAD_PROGRESS_STEPS

LOADED = "qwen2.5-7b-instruct"


def native_client(server: MockLMStudioServer, **options: object) -> LMStudioClient:
    return LMStudioClient(server.url, timeout=30, model=LOADED, **options)  # type: ignore[arg-type]


def paths(server: MockLMStudioServer) -> list[str]:
    return [r.path for r in server.requests if r.path != "/lmstudio-greeting"]


# --- routing over the wire ---------------------------------------------------------------------------------------

def test_auto_takes_the_native_route_from_a_fresh_clients_first_request_on_0_4(server: MockLMStudioServer) -> None:
    with native_client(server) as client:
        result = client.chat("Hi", max_tokens=5)  # the first request learns the server (greeting, model list) once
        assert result.route == "native" and result.content
        assert client.chat("Hi").route == "native"  # known now: no round trip before it
        assert client.chat("Hi", seed=3).route == "openai"  # not expressible natively: the OpenAI way
        assert client.chat("Hi", route="openai").route == "openai"
    assert [r.path for r in server.requests] == ["/lmstudio-greeting", "/api/v1/models", "/api/v1/chat",
                                                 "/api/v1/chat", "/v1/chat/completions", "/v1/chat/completions"]
    native = next(r for r in server.requests if r.path == "/api/v1/chat")
    assert native.json["store"] is False and native.json["max_output_tokens"] == 5 and native.json["input"] == "Hi"


@pytest.mark.lmstudio_mock(version="0.3")
def test_on_0_3_auto_stays_on_v1_and_native_says_it_is_not_there(lmstudio_mock: MockLMStudioServer) -> None:
    with native_client(lmstudio_mock) as client:
        assert client.chat("Hi").route == "openai"  # a fresh client's first request learns it is 0.3
        assert client.supports_native_chat() is False
        with client.stream_chat("Hi") as stream:
            assert stream.text()
        # learnt once: only the first request asked (greeting, then /api/v1/models's "Unexpected endpoint")
        assert [r.path for r in lmstudio_mock.requests] == ["/lmstudio-greeting", "/api/v1/models",
                                                            "/v1/chat/completions", "/v1/chat/completions"]
        with client.stream_chat("Hi") as stream:
            assert stream.text()
        with pytest.raises(EndpointNotSupportedError) as info:
            client.chat("Hi", route="native")
        assert "needs LM Studio 0.4 or newer" in info.value.message and "route='auto'" in info.value.message
        with pytest.raises(EndpointNotSupportedError, match=r"needs LM Studio 0\.4"):
            client.stream_chat("Hi", route="native").text()
    assert "/api/v1/chat" in paths(lmstudio_mock)


@pytest.mark.parametrize("stream", [False, True])
def test_auto_on_a_server_that_is_not_lm_studio_stays_on_v1_without_asking_for_the_native_route(stream: bool) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "m"}]})
        if request.url.path == "/v1/chat/completions":
            if stream:
                chunk = '{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}'
                return httpx.Response(200, text=f"data: {chunk}\n\ndata: [DONE]\n\n",
                                      headers={"content-type": "text/event-stream"})
            return httpx.Response(200, json={"choices": [{"index": 0, "message": {"role": "assistant",
                                                                                  "content": "ok"}}]})
        return httpx.Response(404, json={"detail": "Not Found"})

    with LMStudioClient("http://llama.local:8000", transport=httpx.MockTransport(handler), model="m") as client:
        result = client.stream_chat("Hi").result() if stream else client.chat("Hi")
    assert result.route == "openai" and result.content == "ok"
    assert "/api/v1/models" not in seen and "/api/v1/chat" not in seen


@pytest.mark.parametrize("stream", [False, True])
def test_a_server_without_the_route_says_404_and_native_fails_clearly(stream: bool) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/lmstudio-greeting":
            return httpx.Response(404, text="Not Found")
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "m"}]})
        return httpx.Response(404, json={"detail": "Not Found"})

    with LMStudioClient("http://llama.local:8000", transport=httpx.MockTransport(handler), model="m") as client:
        assert client.supports_native_chat() is False
        with pytest.raises(EndpointNotSupportedError, match=r"native chat route .* needs LM Studio 0.4"):
            if stream:
                client.stream_chat("Hi", route="native").text()
            else:
                client.chat("Hi", route="native")


# --- the events ----------------------------------------------------------------------------------------------------

@pytest.fixture
def loading() -> Iterator[tuple[MockLMStudioServer, ManualClock]]:
    clock = ManualClock()
    with MockLMStudioServer(models=[ModelSpec("cold", load_time=5.0), ModelSpec(LOADED, loaded=True)],
                            clock=clock) as s:
        yield s, clock


def advance_through_the_load(server: MockLMStudioServer, clock: ManualClock, load_time: float) -> threading.Thread:
    """From another thread: move the clock from pause to pause until the load's end (while it loads, the load and
    the next progress pause wait on the clock; after the last progress, only the load)."""
    def run() -> None:
        for _ in range(LOAD_PROGRESS_STEPS - 1):
            clock.advance_to(clock.wait_for_pending(2)[0])
        clock.wait_for_pending(1)
        clock.advance_to(load_time)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_cold_model_streams_its_load_progress_then_the_answer(loading: tuple[MockLMStudioServer,
                                                                                ManualClock]) -> None:
    server, clock = loading
    with native_client(server, route="native") as client:
        mover = advance_through_the_load(server, clock, 5.0)
        stream = client.stream_chat("Hi", model="cold")
        parts = list(stream.iter_parts())
        mover.join(10)
    progress = [p.detail for p in parts if p.kind == "progress"]
    assert all(isinstance(p, StreamProgress) and p.stage == "model_load" and p.instance == "cold" for p in progress)
    fractions = [p.fraction for p in progress if isinstance(p, StreamProgress)]
    assert fractions == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # start, paced by the load time, end
    first_text = next(i for i, p in enumerate(parts) if p.kind == "content")
    assert all(p.kind == "progress" for p in parts[:first_text])
    assert stream.progress is not None and stream.progress.done and stream.progress.load_time_seconds == 5.0
    result = stream.result()
    assert isinstance(result.server_stats, ServerStats)
    assert result.server_stats.model_load_time == 5.0 and result.server_stats.input_tokens
    assert result.server_stats.output_tokens == result.usage.completion_tokens if result.usage else False
    assert result.timings.total is not None  # the client's own measurement stays
    assert result.model == "cold" and result.finish_reason == "stop" and result.route == "native"


def test_every_load_step_comes_in_order_even_when_the_clock_jumps_past_the_load(
    loading: tuple[MockLMStudioServer, ManualClock],
) -> None:
    """A busy machine: the server's event loop wakes late, so the load's own timer fires together with (or before)
    a progress pause. Each jump here moves the clock past the whole load at once. The stream still reports every
    step, in order, and the load's end after the last one (it stopped at the first, so the lines varied)."""
    server, clock = loading
    done = threading.Event()

    def jump_whenever_something_waits() -> None:
        while not done.is_set():
            try:
                clock.wait_for_pending(1, timeout=0.2)
            except TimeoutError:
                continue
            clock.advance(60.0)

    jumper = threading.Thread(target=jump_whenever_something_waits, daemon=True)
    jumper.start()
    try:
        with native_client(server, route="native") as client, client.stream_chat("Hi", model="cold") as stream:
            parts = list(stream.iter_parts())
    finally:
        done.set()
        jumper.join(10)
    fractions = [p.detail.fraction for p in parts if isinstance(p.detail, StreamProgress)]
    assert fractions == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    load_end = next(i for i, p in enumerate(parts) if isinstance(p.detail, StreamProgress) and p.detail.done)
    assert all(p.kind == "progress" for p in parts[:load_end]) and stream.result().content


def test_a_loaded_model_sends_no_load_events_and_a_long_prompt_its_processing(server: MockLMStudioServer) -> None:
    with native_client(server, route="native") as client:
        short = list(client.stream_chat("Hi").iter_parts())
        long = list(client.stream_chat("word " * 600).iter_parts())
    assert not [p for p in short if p.kind == "progress"]
    stages = [(p.detail.stage, p.detail.fraction) for p in long if isinstance(p.detail, StreamProgress)]
    assert stages == [("prompt_processing", 0.0), ("prompt_processing", 0.25), ("prompt_processing", 0.5),
                      ("prompt_processing", 0.75), ("prompt_processing", 1.0)]


def test_reasoning_comes_as_reasoning_parts_and_the_server_counts_it(server: MockLMStudioServer) -> None:
    with native_client(server, route="native") as client:
        stream = client.stream_chat("Why is the sky blue?", model="deepseek-r1-distill-qwen-7b")
        kinds = [p.kind for p in stream.iter_parts()]
        result = stream.result()
        whole = client.chat("Why is the sky blue?", model="openai/gpt-oss-20b")
    assert kinds.index("reasoning") < kinds.index("content") and "<think>" not in result.content
    assert result.reasoning and result.server_stats and result.server_stats.reasoning_tokens
    assert whole.reasoning and whole.content and whole.usage and whole.usage.reasoning_tokens
    sent = [r.json for r in server.requests if r.path == "/api/v1/chat"]
    assert all(b["store"] is False for b in sent)


def test_reasoning_effort_none_is_sent_as_off(server: MockLMStudioServer) -> None:
    with native_client(server, route="native") as client:
        result = client.chat("Hi", model="openai/gpt-oss-20b", reasoning_effort="none")
    assert server.last_request is not None and server.last_request.json["reasoning"] == "off"
    assert not result.reasoning


def test_mcp_tool_calls_come_as_tool_parts_and_tool_events(server: MockLMStudioServer) -> None:
    with native_client(server) as client:
        stream = client.stream_chat("Find the LM Studio docs", integrations=["mcp/playwright", "mcp/failing"])
        tools = [p for p in stream.iter_parts() if p.kind == "tool"]
        result = stream.result()
        whole = client.chat("Find it", integrations=["mcp/playwright"])
    assert [type(p.detail) for p in tools] == [ToolEvent, ToolEvent]
    ok, failed = result.tool_events
    assert ok.tool == "playwright_search" and ok.ok and ok.arguments == {"query": "Find the LM Studio docs"}
    assert ok.output and "fake playwright result" in ok.output and ok.provider == "mcp/playwright"
    assert not failed.ok and failed.reason and "not reachable" in failed.reason and failed.tool == "failing_search"
    assert result.content and whole.tool_events[0].tool == "playwright_search" and whole.route == "native"


def test_store_true_returns_a_response_id_and_previous_response_id_continues_it(server: MockLMStudioServer) -> None:
    with native_client(server) as client:
        first = client.chat("My name is Ada.", store=True)
        assert first.response_id and first.response_id.startswith("resp_")
        second = client.stream_chat("What is my name?", previous_response_id=first.response_id, store=True)
        assert second.text()
        assert second.result().response_id not in (None, first.response_id)
        unstored = client.chat("Hi", route="native")
        assert unstored.response_id is None
        with pytest.raises(LMStudioAPIError) as info:
            client.chat("Go on", previous_response_id="resp_unknown")
    bodies = [r.json for r in server.requests if r.path == "/api/v1/chat"]
    assert [b["store"] for b in bodies] == [True, True, False, False]
    assert bodies[1]["previous_response_id"] == first.response_id
    assert info.value.error_param == "previous_response_id" and info.value.error_type == "invalid_request"
    assert len(server._app.native.chats) == 2


# --- errors --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_an_unknown_model_is_model_not_found_with_the_server_type_kept(server: MockLMStudioServer,
                                                                        stream: bool) -> None:
    with native_client(server, route="native") as client, pytest.raises(ModelNotFoundError) as info:
        if stream:
            client.stream_chat("Hi", model="qwen-7b").text()
        else:
            client.chat("Hi", model="qwen-7b")
    assert info.value.error_type == "model_not_found" and info.value.error_code == "model_not_found"
    assert 'Did you mean "qwen2.5-7b-instruct"?' in info.value.message


@pytest.mark.parametrize("stream", [False, True])
def test_a_load_failure_is_a_model_load_error(server: MockLMStudioServer, stream: bool) -> None:
    server.set_fault("load_failure", model="google/gemma-3-4b")
    with native_client(server, route="native") as client, pytest.raises(ModelLoadError):
        if stream:
            client.stream_chat("Hi", model="google/gemma-3-4b").text()
        else:
            client.chat("Hi", model="google/gemma-3-4b")


@pytest.mark.parametrize("stream", [False, True])
def test_a_prompt_over_the_context_is_a_context_error(server: MockLMStudioServer, stream: bool) -> None:
    server.add_model(ModelSpec("tiny", loaded=True, context_length=16))
    with native_client(server, route="native") as client, pytest.raises(ContextLengthExceededError) as info:
        if stream:
            client.stream_chat("word " * 50, model="tiny").text()
        else:
            client.chat("word " * 50, model="tiny")
    assert info.value.context_length == 16


def test_an_error_mid_answer_keeps_the_partial_answer(server: MockLMStudioServer) -> None:
    server.reply_tokens = 10
    server.set_fault("stream_error", after_chunks=4)
    with native_client(server, route="native") as client, pytest.raises(LMStudioStreamError) as info:
        client.stream_chat("Hi").text()
    assert info.value.partial is not None and info.value.partial.content
    assert "crashed" in info.value.message
    # the server's own sentence is quoted whole, its full stop not doubled ("Unknown error.. The partial")
    assert "Error: Unknown error. The partial answer is kept (.partial)." in info.value.message


def test_the_async_twin_streams_natively_too(loading: tuple[MockLMStudioServer, ManualClock]) -> None:
    server, clock = loading

    async def run() -> tuple[list[str], str]:
        async with AsyncLMStudioClient(server.url, timeout=30, route="native") as client:
            kinds = []
            async with client.stream_chat("Hi", model="cold") as stream:
                async for part in stream.iter_parts():
                    kinds.append(part.kind)
            return kinds, (await client.chat("Hi", model="cold")).route or ""

    mover = advance_through_the_load(server, clock, 5.0)
    kinds, route = asyncio.run(run())
    mover.join(10)
    assert kinds.count("progress") == 6 and kinds[-1] == "content" and route == "native"


def test_v0_stats_go_into_server_stats(server: MockLMStudioServer) -> None:
    with native_client(server) as client:
        body = client._request("POST", "/api/v0/chat/completions",
                               json_body={"model": LOADED, "messages": [{"role": "user", "content": "Hi"}]})
    from lm_notebook.client.routes import result_from_body

    stats = result_from_body(body, 0.0).server_stats
    assert stats is not None and stats.tokens_per_second is not None and stats.stop_reason == "eosFound"


# --- model list ----------------------------------------------------------------------------------------------------

def test_model_info_has_capabilities_and_parallel_slots(server: MockLMStudioServer) -> None:
    with native_client(server) as client:
        models = {m.id: m for m in client.list_models()}
    assert models["google/gemma-3-4b"].vision is True and models[LOADED].vision is False
    assert models[LOADED].trained_for_tool_use is True and models["google/gemma-3-4b"].trained_for_tool_use is False
    assert models[LOADED].parallel == 4 and models["google/gemma-3-4b"].parallel is None
    assert models["text-embedding-nomic-embed-text-v1.5"].vision is False


@pytest.mark.lmstudio_mock(version="0.3")
def test_on_0_3_vision_comes_from_the_model_type(lmstudio_mock: MockLMStudioServer) -> None:
    with native_client(lmstudio_mock) as client:
        models = {m.id: m for m in client.list_models()}
    assert models["google/gemma-3-4b"].vision is True and models[LOADED].vision is False
    assert models[LOADED].trained_for_tool_use is True and models[LOADED].source == "/api/v0/models"


# --- the server's error fields, in streams too (review) ---------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_a_bad_previous_response_id_is_refused_with_its_type_and_param_streamed_or_not(
        server: MockLMStudioServer, stream: bool) -> None:
    with native_client(server) as client, pytest.raises(LMStudioAPIError) as info:
        if stream:
            list(client.stream_chat("Hi", previous_response_id="resp_nope"))
        else:
            client.chat("Hi", previous_response_id="resp_nope")
    err = info.value
    assert err.error_type == "invalid_request" and err.error_param == "previous_response_id"
    assert "resp_nope" in err.message and "mid-answer" not in err.message  # refused before any answer


def test_an_error_event_mid_answer_keeps_its_type_code_and_param_and_the_partial() -> None:
    def event(name: str, **data: object) -> str:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

    body = (event("chat.start", model_instance_id="m") + event("message.start")
            + event("message.delta", content="Hel") + event("message.delta", content="lo")
            + event("error", error={"type": "mcp_connection_error", "message": "MCP server went away",
                                    "code": "mcp_down", "param": "integrations"})
            + event("chat.end", result={"model_instance_id": "m", "output": [{"type": "message", "content": "Hello"}],
                                        "stats": {"tokens_per_second": 10, "total_output_tokens": 2,
                                                  "input_tokens": 3}}))

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/chat":
            return httpx.Response(200, content=body.encode(), headers={"content-type": "text/event-stream"})
        return httpx.Response(404)

    with LMStudioClient("http://lm.local:1234", transport=httpx.MockTransport(handler), model="m",
                        route="native") as client, pytest.raises(LMStudioStreamError) as info:
        list(client.stream_chat("Hi", integrations=["mcp/x"]))
    err = info.value
    assert (err.error_type, err.error_code, err.error_param) == ("mcp_connection_error", "mcp_down", "integrations")
    assert "MCP server went away" in err.message and "after 5 characters" in err.message
    assert err.partial is not None and err.partial.content == "Hello"
    assert err.partial.server_stats is not None and err.partial.server_stats.tokens_per_second == 10


def test_the_fake_ends_a_stream_error_with_chat_end_carrying_the_partial_answer(server: MockLMStudioServer) -> None:
    server.reply_tokens = 10
    server.set_fault("stream_error", path="/api/v1/chat", after_chunks=3)
    with httpx.stream("POST", server.url + "/api/v1/chat",
                      json={"model": LOADED, "input": "Hi", "stream": True, "store": False}) as response:
        wire = response.read().decode()
    names = [line.removeprefix("event: ") for line in wire.splitlines() if line.startswith("event: ")]
    assert names[-2:] == ["error", "chat.end"]  # as LM Studio: the stream always ends with chat.end
    server.set_fault("stream_error", path="/api/v1/chat", after_chunks=3)
    with native_client(server, route="native") as client, pytest.raises(LMStudioStreamError) as info:
        client.stream_chat("Hi").text()
    partial = info.value.partial
    assert partial is not None and partial.content and info.value.error_type == "internal_error"
    assert partial.server_stats is not None and partial.server_stats.output_tokens == 3  # chat.end's, kept
