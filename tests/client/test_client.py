"""The client against LM Studio's documented answers (httpx.MockTransport), each case for the sync and async twin."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import subprocess
import sys
from typing import Any
from unittest.mock import AsyncMock, create_autospec

import httpx
import pytest
from client_doubles import (
    DONE,
    Harness,
    RecordingStream,
    chunk,
    completion,
    sse_response,
    sse_stream,
    usage_chunk,
)

from lm_notebook import (
    AsyncLMStudioClient,
    AuthenticationError,
    ContextLengthExceededError,
    EndpointNotSupportedError,
    InvalidRequestError,
    LMStudioClient,
    LMStudioConnectionError,
    LMStudioRequestError,
    LMStudioStreamError,
    LMStudioTimeoutError,
    ModelLoadError,
    ModelNotFoundError,
    NoCurrentModelError,
    NoModelLoadedError,
    RateLimitError,
    ServerBusyError,
    ServerError,
)
from lm_notebook.testing import ManualClock, MockLMStudioServer

TOKEN = "sk-lm-Abcd1234:SecretSecretSecret99"
MODELS_V1 = {"object": "list", "data": [{"id": "qwen2.5-7b-instruct", "object": "model", "owned_by": "x"},
                                       {"id": "google/gemma-3-4b", "object": "model", "owned_by": "x"}]}
UNEXPECTED = {"error": "Unexpected endpoint or method. (GET /api/v1/models)"}


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def routes(table: dict[str, Any]) -> Any:
    """A handler answering by path; values are responses or callables of the request."""

    def handle(request: httpx.Request) -> httpx.Response:
        answer = table.get(request.url.path)
        if answer is None:
            return httpx.Response(
                200, json={"error": f"Unexpected endpoint or method. ({request.method} {request.url.path})"}
            )
        if callable(answer):
            return answer(request)  # type: ignore[no-any-return]
        return answer  # type: ignore[no-any-return]

    return handle


def chat_error(status: int, body: Any) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    return routes({"/v1/chat/completions": answer, "/v1/models": httpx.Response(200, json=MODELS_V1)})


# --- configuration ---------------------------------------------------------------------------------------------


def test_base_url_defaults_env_and_v1_suffix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMSTUDIO_BASE_URL", raising=False)
    assert LMStudioClient().base_url == "http://127.0.0.1:1234"
    monkeypatch.setenv("LMSTUDIO_BASE_URL", "http://studio.local:4321/v1/")
    assert LMStudioClient().base_url == "http://studio.local:4321"
    assert LMStudioClient("localhost:1234/v1").base_url == "http://localhost:1234"


def test_a_base_url_with_a_path_prefix_reaches_every_route_under_it(mode: str) -> None:
    """A reverse proxy serving LM Studio under a path: the greeting, the model lists, chats and streams on both
    routes all go below it, every time (a client works its request URLs out once and keeps them)."""
    native_models = {"models": [{"type": "llm", "key": "m", "loaded_instances": [{"id": "m"}]}]}
    native_end = {"type": "chat.end", "result": {"output": [{"type": "message", "content": "Hi"}],
                                                 "stats": {"total_output_tokens": 1}}}
    table: dict[str, Any] = {
        "/lmstudio/lmstudio-greeting": httpx.Response(200, json={"lmstudio": True}),
        "/lmstudio/api/v1/models": httpx.Response(200, json=native_models),
        "/lmstudio/v1/models": httpx.Response(200, json=MODELS_V1),
        "/lmstudio/v1/chat/completions": lambda r: (
            sse_response([chunk("Hi", finish="stop"), DONE]) if json.loads(r.content).get("stream")
            else httpx.Response(200, json=completion("Hi"))
        ),
        "/lmstudio/api/v1/chat": lambda r: (
            httpx.Response(200, headers={"content-type": "text/event-stream"},
                           content=f"event: chat.end\ndata: {json.dumps(native_end)}\n\n".encode())
            if json.loads(r.content).get("stream") else httpx.Response(200, json=native_end["result"])
        ),
    }
    for route, chat_route in (("auto", "/lmstudio/api/v1/chat"), ("openai", "/lmstudio/v1/chat/completions")):
        h = Harness(mode, routes(table), base_url="https://gpu.example.org/lmstudio/v1", route=route)

        def calls(c: Any) -> list[Any]:
            return [c.list_models, lambda: c.chat("Hello", model="m"), lambda: c.stream_chat("Hello", model="m")]

        if mode == "sync":
            with h.sync_client() as c:
                for _ in range(2):
                    for call in calls(c):
                        answer = call()
                        if hasattr(answer, "text"):
                            assert answer.text() == "Hi"
        else:
            async def run(h: Harness) -> None:
                async with h.async_client() as c:
                    for _ in range(2):
                        for call in calls(c):
                            answer = call()
                            if inspect.isawaitable(answer):
                                answer = await answer
                            if hasattr(answer, "text"):
                                assert await answer.text() == "Hi"

            asyncio.run(run(h))
        paths = [r.url.path for r in h.requests]
        assert set(paths) <= set(table), sorted(set(paths) - set(table))
        assert paths.count(chat_route) == 4, (route, paths)
        assert {r.url.host for r in h.requests} == {"gpu.example.org"}


def test_token_order_and_header(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setenv("LMSTUDIO_API_TOKEN", "from-sdk-var")
    monkeypatch.setenv("LM_API_TOKEN", "from-docs-var")
    h = Harness(mode, routes({"/v1/models": httpx.Response(200, json=MODELS_V1)}))
    h.call("fetch_models")
    assert h.requests[0].headers["authorization"] == "Bearer from-docs-var"
    monkeypatch.delenv("LM_API_TOKEN")
    h.call("fetch_models")
    assert h.requests[1].headers["authorization"] == "Bearer from-sdk-var"
    h2 = Harness(mode, routes({"/v1/models": httpx.Response(200, json=MODELS_V1)}), api_key=TOKEN)
    h2.call("fetch_models")
    assert h2.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_a_stream_asks_for_a_connection_of_its_own_and_carries_the_token(mode: str) -> None:
    table = {"/v1/chat/completions": lambda r: (
        sse_response([chunk("Hi", finish="stop"), DONE]) if json.loads(r.content).get("stream")
        else httpx.Response(200, json=completion("Hi"))
    )}
    h = Harness(mode, routes(table), api_key=TOKEN, route="openai")
    assert h.call("chat", "Hello", model="m").content == "Hi"
    assert "".join(h.stream("Hello", model="m").deltas) == "Hi"
    chat, stream = [r for r in h.requests if r.url.path == "/v1/chat/completions"]
    for request in h.requests:  # the greeting and the model list too
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["user-agent"] == "lm_notebook"
    assert stream.headers["connection"] == "close"
    assert chat.headers.get("connection") != "close"


def test_token_never_in_repr() -> None:
    client = LMStudioClient(api_key=TOKEN)
    assert TOKEN not in repr(client) and "Secret" not in repr(client)
    assert "api_key=<set>" in repr(client)


def test_timeouts_default_short_connect_long_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMSTUDIO_TIMEOUT", raising=False)
    t = LMStudioClient().timeout
    assert t.connect is not None and t.connect <= 5 and t.read is not None and t.read >= 120
    assert LMStudioClient(timeout=30).timeout.read == 30
    monkeypatch.setenv("LMSTUDIO_TIMEOUT", "900")
    assert LMStudioClient().timeout.read == 900
    with pytest.raises(LMStudioRequestError):
        LMStudioClient(timeout=0)


# --- models ----------------------------------------------------------------------------------------------------

V1_MODELS = {
    "models": [
        {
            "type": "llm", "publisher": "google", "key": "google/gemma-3-4b", "display_name": "Gemma 3 4B",
            "architecture": "gemma3", "quantization": {"name": "Q4_K_M", "bits_per_weight": 4},
            "size_bytes": 3340000000, "params_string": "4B",
            "loaded_instances": [{"id": "google/gemma-3-4b", "config": {"context_length": 4096, "parallel": 4}}],
            "max_context_length": 131072, "format": "gguf",
            "capabilities": {"vision": True, "trained_for_tool_use": True},
        },
        {
            "type": "embedding", "publisher": "nomic-ai", "key": "text-embedding-nomic-embed-text-v1.5",
            "architecture": "nomic-bert", "quantization": {"name": "Q4_K_M", "bits_per_weight": 4},
            "loaded_instances": [], "max_context_length": 2048, "format": "gguf",
        },
    ]
}
V0_MODELS = {"object": "list", "data": [
    {"id": "qwen2-vl-7b-instruct", "object": "model", "type": "vlm", "publisher": "mlx-community",
     "arch": "qwen2_vl", "compatibility_type": "mlx", "quantization": "4bit", "state": "not-loaded",
     "max_context_length": 32768},
    {"id": "granite-3.0-2b-instruct", "object": "model", "type": "llm", "publisher": "lmstudio-community",
     "arch": "granite", "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": "loaded",
     "max_context_length": 4096, "loaded_context_length": 4096, "capabilities": ["tool_use"]},
]}


def test_list_models_from_api_v1(mode: str) -> None:
    h = Harness(mode, routes({"/api/v1/models": httpx.Response(200, json=V1_MODELS)}))
    gemma, nomic = h.call("list_models")
    assert (gemma.id, gemma.type, gemma.state, gemma.quantization, gemma.format) == (
        "google/gemma-3-4b", "vlm", "loaded", "Q4_K_M", "gguf")
    assert (gemma.loaded_context_length, gemma.max_context_length, gemma.parallel) == (4096, 131072, 4)
    assert gemma.capabilities == ("vision", "trained_for_tool_use")
    assert (nomic.type, nomic.state, nomic.loaded_context_length) == ("embeddings", "not-loaded", None)


def test_list_models_falls_back_to_v0_then_v1(mode: str) -> None:
    h = Harness(mode, routes({"/api/v0/models": httpx.Response(200, json=V0_MODELS)}))
    vl, granite = h.call("list_models")
    assert [r.url.path for r in h.requests] == ["/api/v1/models", "/api/v0/models"]
    assert (vl.type, vl.format, vl.state, vl.quantization) == ("vlm", "mlx", "not-loaded", "4bit")
    assert (granite.state, granite.loaded_context_length, granite.capabilities) == ("loaded", 4096, ("tool_use",))

    # a server with only /v1/models (an old LM Studio, or llama.cpp answering 404 for the others)
    h = Harness(mode, routes({
        "/api/v0/models": httpx.Response(404, text="Not Found"),
        "/v1/models": httpx.Response(200, json=MODELS_V1),
    }))
    models = h.call("list_models")
    assert [m.id for m in models] == ["qwen2.5-7b-instruct", "google/gemma-3-4b"]
    assert models[0].state is None and models[0].quantization is None and models[0].type is None


def test_list_models_remembers_the_route_that_worked() -> None:
    h = Harness("sync", routes({"/api/v0/models": httpx.Response(200, json=V0_MODELS)}))
    with h.sync_client() as client:
        client.list_models()
        client.list_models()
    assert [r.url.path for r in h.requests] == ["/api/v1/models", "/api/v0/models", "/api/v0/models"]


def test_fetch_models_is_the_v1_data_list(mode: str) -> None:
    h = Harness(mode, routes({"/v1/models": httpx.Response(200, json=MODELS_V1)}))
    assert h.call("fetch_models") == MODELS_V1["data"]


def test_is_running(mode: str) -> None:
    assert Harness(mode, routes({"/lmstudio-greeting": httpx.Response(200, json={"lmstudio": True})})).call(
        "is_running")
    # llama.cpp: no greeting, but an OpenAI-compatible /v1/models
    llama = routes({"/lmstudio-greeting": httpx.Response(404), "/v1/models": httpx.Response(200, json=MODELS_V1)})
    assert Harness(mode, llama).call("is_running")


def test_is_running_false_when_nothing_listens() -> None:
    port = free_port()
    assert LMStudioClient(f"http://127.0.0.1:{port}").is_running() is False


def test_load_and_unload(mode: str) -> None:
    loaded = {"type": "llm", "instance_id": "qwen", "load_time_seconds": 9.1, "status": "loaded"}
    h = Harness(mode, routes({
        "/api/v1/models/load": httpx.Response(200, json=loaded),
        "/api/v1/models/unload": httpx.Response(200, json={"instance_id": "qwen"}),
    }))
    result = h.call("load_model", "qwen", context_length=8192, ttl=600)
    assert (result.instance_id, result.load_time_seconds, result.status) == ("qwen", 9.1, "loaded")
    assert h.body(0) == {"model": "qwen", "context_length": 8192, "ttl": 600}
    h.call("unload_model", "qwen")
    assert h.body(1) == {"instance_id": "qwen"}


def test_load_on_an_old_server_says_it_needs_a_newer_lm_studio(mode: str) -> None:
    h = Harness(mode, routes({}))
    with pytest.raises(EndpointNotSupportedError) as info:
        h.call("load_model", "qwen")
    assert "0.4" in info.value.message and "lms load qwen" in info.value.message


# --- chat ------------------------------------------------------------------------------------------------------


def test_chat_result_and_every_parameter_passes_through(mode: str) -> None:
    h = Harness(mode, routes({"/v1/chat/completions": httpx.Response(200, json=completion("Hello!"))}))
    params = {"temperature": 0, "top_p": 0.9, "top_k": 40, "stop": ["\n\n"], "seed": 7, "repeat_penalty": 1.1,
              "presence_penalty": 0.1, "frequency_penalty": 0.2, "max_tokens": 64, "ttl": 300,
              "reasoning_effort": "none", "tools": [{"type": "function", "function": {"name": "f"}}],
              "tool_choice": "auto", "draft_model": "small",
              "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}}
    result = h.call("chat", [{"role": "user", "content": "hi"}], model="m", **params)
    assert result.content == "Hello!" and result.finish_reason == "stop" and not result.streaming
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (24, 53)
    assert result.timings.total is not None and result.timings.total >= 0
    body = h.body()
    assert body["stream"] is False and body["model"] == "m"
    for key, value in params.items():
        assert body[key] == value


def test_json_object_is_refused_before_sending(mode: str) -> None:
    h = Harness(mode, routes({}))
    with pytest.raises(LMStudioRequestError, match="json_schema"):
        h.call("chat", "hi", model="m", response_format={"type": "json_object"})
    assert h.requests == []


def test_no_current_model_is_a_clear_error(mode: str) -> None:
    h = Harness(mode, routes({}))
    with pytest.raises(NoCurrentModelError, match="set_current_model"):
        h.call("chat", "hi")
    with pytest.raises(NoCurrentModelError):
        h.call("send_message", "hi")
    assert h.requests == []


def test_reasoning_forms_in_a_whole_answer(mode: str) -> None:
    for message in ({"content": "42", "reasoning_content": "think"}, {"content": "42", "reasoning": "think"},
                    {"content": "<think>think</think>\n\n42"}):
        h = Harness(mode, routes({"/v1/chat/completions": httpx.Response(200, json=completion(**message))}))
        result = h.call("chat", "q", model="m")
        assert (result.content, result.reasoning) == ("42", "think"), message


def test_v0_stats_are_used_when_present(mode: str) -> None:
    body = completion("ok")
    body["stats"] = {"tokens_per_second": 51.4, "time_to_first_token": 0.111, "generation_time": 0.954,
                     "stop_reason": "eosFound"}
    h = Harness(mode, routes({"/v1/chat/completions": httpx.Response(200, json=body)}))
    result = h.call("chat", "q", model="m")
    assert result.timings.tokens_per_second == 51.4 and result.timings.time_to_first_token == 0.111


# --- streaming -------------------------------------------------------------------------------------------------


def stream_handler(pieces: list[Any], recorder: list[RecordingStream] | None = None) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        stream = RecordingStream(pieces)
        if recorder is not None:
            recorder.append(stream)
        return sse_response(pieces, stream)

    return routes({"/v1/chat/completions": answer, "/v1/models": httpx.Response(200, json=MODELS_V1)})


def test_stream_yields_deltas_usage_and_timings(mode: str) -> None:
    seen: list[RecordingStream] = []
    h = Harness(mode, stream_handler(sse_stream(["Hel", "lo", " 👋"]), seen))
    out = h.stream("hi")
    assert out.deltas == ["Hel", "lo", " 👋"]
    assert out.result is not None and out.result.content == "Hello 👋" and out.result.streaming
    assert out.result.finish_reason == "stop" and out.result.usage.completion_tokens == 3
    t = out.result.timings
    assert t.time_to_first_token is not None and t.total is not None and 0 <= t.time_to_first_token <= t.total
    assert t.tokens_per_second is not None and t.tokens_per_second > 0
    assert h.body()["stream"] is True and h.body()["stream_options"] == {"include_usage": True}
    assert seen[0].closed


def test_stream_without_usage_chunk_still_finishes(mode: str) -> None:
    h = Harness(mode, stream_handler(sse_stream(["a", "b"], usage=False)))
    out = h.stream()
    assert out.result is not None and out.result.content == "ab" and out.result.usage is None


def test_stream_reasoning_forms_kept_apart(mode: str) -> None:
    cases = [
        [chunk(None, role=True, reasoning_content="Let me"), chunk(None, reasoning_content=" think."),
         chunk("Answer"), chunk(finish="stop"), DONE],
        [chunk(None, role=True, reasoning="Let me"), chunk(None, reasoning=" think."),
         chunk("Answer"), chunk(finish="stop"), DONE],
        # <think> tags split at awkward places across chunks
        [chunk("<thi", role=True), chunk("nk>Let me"), chunk(" think.</th"), chunk("ink>\n\nAns"), chunk("wer"),
         chunk(finish="stop"), DONE],
    ]
    for pieces in cases:
        out = Harness(mode, stream_handler(pieces)).stream()
        assert out.result is not None
        assert (out.result.reasoning, out.result.content) == ("Let me think.", "Answer")
        assert "".join(out.deltas) == "Answer"


def test_thinking_that_eats_max_tokens(mode: str) -> None:
    pieces = [chunk(None, role=True, reasoning_content="long thought"), chunk(finish="length"), DONE]
    out = Harness(mode, stream_handler(pieces)).stream()
    assert out.result is not None and out.result.content == "" and out.result.finish_reason == "length"
    assert out.result.finish_note == "cut at max tokens"


def test_tool_calls_assembled_by_index(mode: str) -> None:
    pieces = [
        chunk(None, role=True, tool_calls=[{"index": 0, "id": "814890118", "type": "function",
                                            "function": {"name": "get_weather", "arguments": ""}}]),
        chunk(None, tool_calls=[{"index": 0, "function": {"arguments": '{"ci'}}]),
        chunk(None, tool_calls=[{"index": 1, "id": "2", "type": "function", "function": {"name": "now"}}]),
        chunk(None, tool_calls=[{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]),
        chunk(finish="tool_calls"), DONE,
    ]
    out = Harness(mode, stream_handler(pieces)).stream()
    assert out.result is not None and out.result.finish_reason == "tool_calls"
    first, second = out.result.tool_calls
    assert (first.id, first.name, json.loads(first.arguments)) == ("814890118", "get_weather", {"city": "Paris"})
    assert (second.name, second.arguments) == ("now", "")


def test_stream_stops_at_done_without_reading_further(mode: str) -> None:
    seen: list[RecordingStream] = []
    pieces = [*sse_stream(["a"]), chunk("never")]
    out = Harness(mode, stream_handler(pieces, seen)).stream()
    assert out.deltas == ["a"] and seen[0].closed


def test_leaving_early_closes_the_response_and_keeps_partial_text(mode: str) -> None:
    seen: list[RecordingStream] = []
    h = Harness(mode, stream_handler(sse_stream(["one ", "two ", "three ", "four"]), seen))
    out = h.stream(stop_after=2)
    assert seen[0].closed
    assert out.result is not None and out.result.content == "one two " and out.result.stopped
    assert out.result.finish_note == "stopped"


def test_keyboard_interrupt_closes_the_response_and_keeps_partial_text() -> None:
    seen: list[RecordingStream] = []
    pieces = [chunk("one ", role=True), chunk("two "), KeyboardInterrupt(), chunk("three")]
    h = Harness("sync", stream_handler(pieces, seen))
    with h.sync_client() as client:
        stream = client.stream_chat("hi", model="m")
        got = []
        with pytest.raises(KeyboardInterrupt):
            for d in stream:
                got.append(d)
        assert seen[0].closed
        assert got == ["one ", "two "]
        result = stream.result()
        assert result.content == "one two " and result.stopped


def test_replay_after_the_end(mode: str) -> None:
    h = Harness("sync", stream_handler(sse_stream(["a", "b"])))
    with h.sync_client() as client:
        stream = client.stream_chat("hi", model="m")
        assert "".join(stream) == "ab"
        assert "".join(stream) == "ab"
        assert stream.text() == "ab"


def test_send_message_as_the_integration_guide_has_it(mode: str) -> None:
    h = Harness(mode, stream_handler(sse_stream(["Hi", " there"])))
    calls: list[tuple[str, str]] = []
    history = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a"},
               {"role": "assistant", "content": "b"}]
    if mode == "sync":
        with h.sync_client() as client:
            client.set_current_model("m")
            assert client.current_model == "m"
            result = client.send_message("hello", conversation_history=history,
                                         on_token=lambda t, full: calls.append((t, full)), temperature=0.2)
    else:
        import asyncio

        async def run() -> Any:
            async with h.async_client() as client:
                client.set_current_model("m")
                return await client.send_message("hello", conversation_history=history,
                                                  on_token=lambda t, full: calls.append((t, full)), temperature=0.2)

        result = asyncio.run(run())
    assert result.content == "Hi there" and result.streaming
    assert calls == [("Hi", "Hi"), (" there", "Hi there")]
    body = h.body()
    assert body["messages"] == [*history, {"role": "user", "content": "hello"}]
    assert (body["temperature"], body["max_tokens"], body["stream"]) == (0.2, 2048, True)


def test_send_message_without_callback_does_not_stream(mode: str) -> None:
    h = Harness(mode, routes({"/v1/chat/completions": httpx.Response(200, json=completion("Hello!"))}),
                model="m")
    result = h.call("send_message", "hi")
    assert result.content == "Hello!" and not result.streaming and h.body()["stream"] is False


# --- errors: every row of the API reference ----------------------------------------------------------------

NO_MODEL_04 = {"error": {"message": "No models loaded. Please load a model in the developer page or use the "
                                    "'lms load' command.", "type": "invalid_request_error", "param": "model",
                         "code": None}}
UNKNOWN_MODEL_04 = {"error": {"message": 'Invalid model identifier "qwen-7b". Please specify a valid downloaded '
                                         "model (e.g., qwen2.5-7b-instruct, google/gemma-3-4b).",
                              "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}
CONTEXT_400 = {"error": "Trying to keep the first 15857 tokens when context the overflows. However, the model is "
                        "loaded with context length of only 4096 tokens, which is not enough."}
AUTH_401 = {"error": {"type": "invalid_request", "code": "invalid_api_key",
                      "message": "An LM Studio API token is required to make requests to this server."}}


@pytest.mark.parametrize(
    ("status", "body", "error_type", "says"),
    [
        (400, NO_MODEL_04, NoModelLoadedError, "lms load"),
        (400, {"error": "No models loaded. Please load a model."}, NoModelLoadedError, "lms load"),
        (404, "No models loaded", NoModelLoadedError, "Developer tab"),
        (400, UNKNOWN_MODEL_04, ModelNotFoundError, "Available: qwen2.5-7b-instruct, google/gemma-3-4b"),
        (404, 'Model "qwen-7b" not found', ModelNotFoundError, "Did you mean"),
        (400, {"error": 'Failed to load model "x". Error: Error loading model.'}, ModelLoadError, "smaller"),
        (400, CONTEXT_400, ContextLengthExceededError, "--context-length"),
        (400, {"error": "'response_format.type' must be 'json_schema' or 'text'"}, InvalidRequestError,
         "json_schema"),
        (401, AUTH_401, AuthenticationError, "LM_API_TOKEN"),
        (200, {"error": "Unexpected endpoint or method. (POST /v1/chat/completions)"}, EndpointNotSupportedError,
         "newer LM Studio"),
        (500, "<html>Internal Server Error</html>", ServerError, "server log"),
        (503, {"error": "busy"}, ServerBusyError, "Retry"),
    ],
)
def test_error_rows(mode: str, status: int, body: Any, error_type: type, says: str) -> None:
    for streaming in (False, True):
        h = Harness(mode, chat_error(status, body), api_key=TOKEN)
        if streaming:
            out = h.stream("hi", model="qwen-7b")
            err = out.error
        else:
            with pytest.raises(error_type) as info:
                h.call("chat", "hi", model="qwen-7b")
            err = info.value
        assert isinstance(err, error_type), (streaming, err)
        assert says in err.message, err.message
        assert TOKEN not in err.message and TOKEN not in repr(err.__dict__)
        assert getattr(err, "status_code", None) == status


def test_unknown_model_lists_ids_and_suggests_the_closest(mode: str) -> None:
    h = Harness(mode, chat_error(400, UNKNOWN_MODEL_04))
    with pytest.raises(ModelNotFoundError) as info:
        h.call("chat", "hi", model="qwen2.5-7b")
    err = info.value
    assert err.available == ["qwen2.5-7b-instruct", "google/gemma-3-4b"]
    assert 'Did you mean "qwen2.5-7b-instruct"?' in err.message


def test_rate_limit_carries_retry_after(mode: str) -> None:
    h = Harness(mode, routes({"/v1/chat/completions": httpx.Response(
        429, headers={"Retry-After": "3"}, json={"error": "Too many requests"})}))
    with pytest.raises(RateLimitError) as info:
        h.call("chat", "hi", model="m")
    assert info.value.retry_after == 3.0


def test_context_exceeded_while_streaming_keeps_partial(mode: str) -> None:
    err_event = (b"event: error\ndata: " + json.dumps({"error": {"message": "Input does not fit in context length."},
                                                        "message": "Input does not fit"}).encode() + b"\n\n")
    out = Harness(mode, stream_handler([chunk("partial ", role=True), err_event])).stream()
    assert isinstance(out.error, ContextLengthExceededError)
    assert out.error.partial_content == "partial " and out.deltas == ["partial "]


def test_plain_error_data_line_in_stream(mode: str) -> None:
    line = b'data: {"error": {"message": "model crashed"}}\n\n'
    out = Harness(mode, stream_handler([chunk("so far", role=True), line])).stream()
    assert isinstance(out.error, LMStudioStreamError)
    assert "model crashed" in out.error.message and out.error.partial_content == "so far"


def test_malformed_chunk(mode: str) -> None:
    out = Harness(mode, stream_handler([chunk("ok", role=True), b"data: {not json\n\n"])).stream()
    assert isinstance(out.error, LMStudioStreamError) and "malformed" in out.error.message
    assert out.error.partial_content == "ok"


def test_connection_dropped_mid_stream(mode: str) -> None:
    seen: list[RecordingStream] = []
    pieces = [chunk("half an ", role=True), chunk("answer"), httpx.RemoteProtocolError("peer closed")]
    out = Harness(mode, stream_handler(pieces, seen)).stream()
    assert isinstance(out.error, LMStudioStreamError) and "broke mid-answer" in out.error.message
    assert out.error.partial_content == "half an answer" and seen[0].closed


def test_stream_ending_without_finish_is_an_error(mode: str) -> None:
    out = Harness(mode, stream_handler([chunk("cut", role=True)])).stream()
    assert isinstance(out.error, LMStudioStreamError) and out.error.partial_content == "cut"


def test_stalled_stream_times_out_with_partial(mode: str) -> None:
    pieces = [chunk("slow", role=True), httpx.ReadTimeout("timed out")]
    out = Harness(mode, stream_handler(pieces), timeout=7).stream()
    assert isinstance(out.error, LMStudioTimeoutError) and "7 s" in out.error.message
    assert out.error.partial_content == "slow"


def test_server_answers_json_where_a_stream_was_asked(mode: str) -> None:
    h = Harness(mode, routes({"/v1/chat/completions": httpx.Response(200, json=completion("whole"))}))
    out = h.stream()
    assert out.deltas == ["whole"] and out.result is not None and out.result.content == "whole"


def test_usage_chunk_with_empty_choices_only(mode: str) -> None:
    pieces = [chunk("x", role=True), chunk(finish="stop"), usage_chunk(9, 1), DONE]
    out = Harness(mode, stream_handler(pieces)).stream()
    assert out.result is not None and out.result.usage.prompt_tokens == 9


# --- real sockets: connection refused --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_says_how_to_start_the_server() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = LMStudioClient(url, api_key=TOKEN, model="m")
    for call in (client.fetch_models, client.list_models, lambda: client.chat("hi"),
                 lambda: list(client.stream_chat("hi"))):
        with pytest.raises(LMStudioConnectionError) as info:
            call()
        msg = info.value.message
        assert url in msg and "lms server start" in msg and TOKEN not in msg
        assert isinstance(info.value.__cause__, httpx.ConnectError)  # translated where it happened, chained


def test_importing_the_client_loads_no_notebook_libraries() -> None:
    code = (
        "import sys, lm_notebook.client.clients, lm_notebook\n"
        "bad = [m for m in ('IPython', 'ipywidgets', 'pandas', 'ipykernel') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_async_twin_from_a_sync_client_keeps_server_token_and_model() -> None:
    import asyncio

    from lm_notebook import AsyncLMStudioClient

    sync = LMStudioClient("http://studio.local:1234/v1", api_key=TOKEN, timeout=42, model="m")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=completion("ok"))

    async def run() -> str:
        async with AsyncLMStudioClient.from_client(sync, transport=httpx.MockTransport(handler)) as twin:
            assert twin.current_model == "m" and twin.timeout.read == 42 and TOKEN not in repr(twin)
            return (await twin.chat("hi")).content

    assert asyncio.run(run()) == "ok"
    assert str(seen[-1].url) == "http://studio.local:1234/v1/chat/completions"
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in seen)


def test_a_dropped_stream_says_so_and_a_server_error_does_not(mode: str) -> None:
    dropped = Harness(mode, stream_handler([chunk("a", role=True), httpx.ReadError("reset")])).stream()
    assert isinstance(dropped.error, LMStudioStreamError) and dropped.error.dropped
    line = b'data: {"error": {"message": "model crashed"}}\n\n'
    sent = Harness(mode, stream_handler([chunk("a", role=True), line])).stream()
    assert isinstance(sent.error, LMStudioStreamError) and not sent.error.dropped


def test_hang_up_before_answering_is_not_called_unreachable(mode: str) -> None:
    def hang_up(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    with pytest.raises(LMStudioConnectionError) as info:
        Harness(mode, hang_up).call("chat", "hi", model="m")
    assert "closed the connection without answering" in info.value.message


def llama_like(chat: Any) -> Any:
    """A server that is not LM Studio: no greeting route (404), ids only from /v1/models, anything on chat."""
    table = {"/v1/chat/completions": chat, "/v1/models": httpx.Response(200, json=MODELS_V1)}

    def handle(request: httpx.Request) -> httpx.Response:
        answer = table.get(request.url.path, httpx.Response(404, text="File Not Found"))
        return answer(request) if callable(answer) else answer  # type: ignore[no-any-return]

    return handle


def test_unknown_model_is_refused_on_a_server_that_would_not_check(mode: str) -> None:
    h = Harness(mode, llama_like(httpx.Response(200, json=completion("served by another model"))))
    with pytest.raises(ModelNotFoundError) as info:
        h.call("chat", "hi", model="qwen-7b")
    assert "Available: qwen2.5-7b-instruct" in info.value.message and "does not check model ids" in info.value.message
    assert [r.url.path for r in h.requests] == ["/lmstudio-greeting", "/v1/models"]
    out = h.stream("hi", model="qwen-7b")
    assert isinstance(out.error, ModelNotFoundError)
    assert not any(r.url.path == "/v1/chat/completions" for r in h.requests)


def test_known_ids_are_checked_once_per_client() -> None:
    h = Harness("sync", llama_like(httpx.Response(200, json=completion("ok"))))
    with h.sync_client() as client:
        for _ in range(3):
            assert client.chat("hi", model="google/gemma-3-4b").content == "ok"
    assert [r.url.path for r in h.requests] == ["/lmstudio-greeting", "/v1/models", *["/v1/chat/completions"] * 3]


def test_lm_studio_is_trusted_to_check_ids_itself(mode: str) -> None:
    h = Harness(mode, routes({"/lmstudio-greeting": httpx.Response(200, json={"lmstudio": True}),
                              "/v1/chat/completions": httpx.Response(200, json=completion("ok"))}))
    assert h.call("chat", "hi", model="anything").content == "ok"
    assert "/v1/models" not in [r.url.path for r in h.requests]


def test_an_empty_stream_is_explained_by_a_one_token_probe(mode: str) -> None:
    def chat(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["stream"]:
            return sse_response([DONE])  # what LM Studio and llama.cpp send for some context overflows
        return httpx.Response(400, json=CONTEXT_400)

    h = Harness(mode, routes({"/v1/chat/completions": chat}))
    out = h.stream("a very long prompt", model="m", max_tokens=500)
    assert isinstance(out.error, ContextLengthExceededError)
    chats = [i for i, r in enumerate(h.requests) if r.url.path == "/v1/chat/completions"]
    probe = h.body(chats[-1])
    assert probe["stream"] is False and probe["max_tokens"] == 1 and "stream_options" not in probe
    assert probe["messages"] == [{"role": "user", "content": "a very long prompt"}]


def test_an_empty_answer_the_probe_cannot_explain_is_just_empty(mode: str) -> None:
    def chat(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["stream"]:
            return sse_response([chunk(finish="stop"), DONE])
        return httpx.Response(200, json=completion(""))

    out = Harness(mode, routes({"/v1/chat/completions": chat})).stream()
    assert out.error is None and out.result is not None and out.result.content == ""


def test_done_without_a_finish_reason_is_a_cut_answer(mode: str) -> None:
    out = Harness(mode, stream_handler([chunk("half", role=True), DONE])).stream()
    assert isinstance(out.error, LMStudioStreamError) and "cut short" in out.error.message
    assert out.error.partial_content == "half"


def test_token_whitespace_is_trimmed_and_a_broken_token_is_refused_without_echo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness("sync", routes({"/v1/models": httpx.Response(200, json=MODELS_V1)}), api_key=TOKEN + "\n")
    h.call("fetch_models")
    assert h.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    with pytest.raises(LMStudioRequestError) as info:
        LMStudioClient(api_key="sk-lm-Abcd:Sec ret")
    assert "Sec" not in info.value.message
    monkeypatch.setenv("LM_API_TOKEN", "sk-lm-A:B\x07")
    with pytest.raises(LMStudioRequestError):
        LMStudioClient()


def test_a_200_page_that_is_not_an_answer_is_one_clear_error(mode: str) -> None:
    page = httpx.Response(200, headers={"content-type": "text/html"}, text="<html>proxy login</html>")
    out = Harness(mode, routes({"/v1/chat/completions": page})).stream()
    assert isinstance(out.error, LMStudioStreamError) and "neither a stream nor a chat answer" in out.error.message


def twin(mode: str, *args: Any, **kw: Any) -> LMStudioClient | AsyncLMStudioClient:
    return (LMStudioClient if mode == "sync" else AsyncLMStudioClient)(*args, **kw)


def test_with_options_keeps_token_and_model(mode: str) -> None:
    client = twin(mode, "http://a:1", api_key=TOKEN, model="m")
    other = client.with_options(base_url="http://b:2/v1", timeout=600)
    assert type(other) is type(client)
    assert (other.base_url, other.current_model, other.timeout.read) == ("http://b:2", "m", 600)
    assert other.has_api_key and TOKEN not in repr(other)
    assert client.with_options().base_url == "http://a:1"


def test_with_options_takes_a_transport(mode: str) -> None:
    h = Harness(mode, routes({"/v1/chat/completions": httpx.Response(200, json=completion("ok"))}))
    client = twin(mode, "http://a:1", api_key=TOKEN, model="m").with_options(
        base_url="http://b:2", transport=httpx.MockTransport(h._record))
    if isinstance(client, LMStudioClient):
        with client:
            assert client.chat("hi").content == "ok"
    else:
        async def run() -> str:
            async with client:
                return (await client.chat("hi")).content

        assert asyncio.run(run()) == "ok"
    assert str(h.requests[-1].url) == "http://b:2/v1/chat/completions"
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in h.requests)


def test_from_client_goes_both_ways_and_keeps_what_was_learnt(mode: str) -> None:
    """A twin of the other kind for the same server, token and model, knowing the server's models route."""
    # a fresh response each time: one httpx.Response cannot be sent by a sync and then an async client
    h = Harness(mode, routes({"/api/v0/models": lambda _: httpx.Response(200, json=V0_MODELS)}), api_key=TOKEN,
                model="m")
    if mode == "sync":
        with h.sync_client() as first:
            first.list_models()

        async def run() -> list[str]:
            async with AsyncLMStudioClient.from_client(first, transport=httpx.MockTransport(h._record)) as other:
                assert (other.base_url, other.current_model, other.has_api_key) == (first.base_url, "m", True)
                return [m.id for m in await other.list_models()]

        ids = asyncio.run(run())
    else:
        async def learn() -> AsyncLMStudioClient:
            async with h.async_client() as first:
                await first.list_models()
                return first

        first_async = asyncio.run(learn())
        with LMStudioClient.from_client(first_async, transport=httpx.MockTransport(h._record), timeout=42) as other:
            assert (other.current_model, other.timeout.read, other.has_api_key) == ("m", 42, True)
            ids = [m.id for m in other.list_models()]
    assert ids == ["qwen2-vl-7b-instruct", "granite-3.0-2b-instruct"]
    # the twin asked the route that worked straight away
    assert [r.url.path for r in h.requests] == ["/api/v1/models", "/api/v0/models", "/api/v0/models"]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in h.requests)


def test_get_model_of_an_unknown_id_names_it_and_lists_the_ids(mode: str) -> None:
    h = Harness(mode, routes({"/api/v1/models": httpx.Response(200, json=V1_MODELS)}))
    with pytest.raises(ModelNotFoundError) as info:
        h.call("get_model", "gemma-3")
    err = info.value
    assert err.model == "gemma-3" and err.available == ["google/gemma-3-4b", "text-embedding-nomic-embed-text-v1.5"]
    assert str(err) == err.message and 'Did you mean "google/gemma-3-4b"?' in err.message
    assert h.call("get_model", "google/gemma-3-4b").loaded_context_length == 4096


def test_both_twins_show_the_same_methods_with_their_parameters() -> None:
    sync, aio = LMStudioClient(), AsyncLMStudioClient()
    for name in ("fetch_models", "list_models", "get_model", "is_running", "load_model", "unload_model", "chat",
                 "send_message", "stream_chat", "with_options", "set_current_model"):
        method, twin_method = getattr(sync, name), getattr(aio, name)
        assert inspect.signature(method) == inspect.signature(twin_method), name
        assert method.__name__ == name and method.__doc__, name
    assert "conversation_history" in inspect.signature(sync.send_message).parameters
    pending = aio.is_running()  # the async twin's methods give coroutines to await
    assert inspect.iscoroutine(pending)
    pending.close()


def test_the_async_twins_operations_are_coroutine_functions_and_the_sync_ones_are_not() -> None:
    sync, aio = LMStudioClient(), AsyncLMStudioClient()
    names = ("fetch_models", "list_models", "get_model", "is_running", "load_model", "unload_model", "chat",
             "send_message")
    for name in names:
        assert inspect.iscoroutinefunction(getattr(aio, name)), name  # tenacity and create_autospec look at this
        assert inspect.iscoroutinefunction(getattr(AsyncLMStudioClient, name)), name
        assert not inspect.iscoroutinefunction(getattr(sync, name)), name
        assert getattr(aio, name).__func__ is getattr(AsyncLMStudioClient(), name).__func__, name  # built once
    spec = create_autospec(AsyncLMStudioClient, instance=True)
    assert isinstance(spec.chat, AsyncMock) and not isinstance(create_autospec(LMStudioClient).chat, AsyncMock)


def test_an_async_operation_awaited_over_http_answers() -> None:
    async def run(url: str, model: str) -> tuple[bool, str]:
        async with AsyncLMStudioClient(url) as client:
            return await client.is_running(), (await client.chat("hi", model=model)).content

    with MockLMStudioServer() as server:
        running, content = asyncio.run(run(server.url, server.loaded_models()[0]))
    assert running and content


def test_a_stalled_probe_reports_the_probes_own_timeout_not_the_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import lm_notebook.client.client_requests as client_requests

    monkeypatch.setattr(client_requests, "_PROBE_TIMEOUT", httpx.Timeout(0.25))  # the test waits for this, not 5 s
    with MockLMStudioServer(clock=ManualClock()) as server, LMStudioClient(server.url, timeout=600) as client:
        server.set_fault("stall", path="/lmstudio-greeting", seconds=3600)
        with pytest.raises(LMStudioTimeoutError) as info:
            client.chat("hi", model=server.loaded_models()[0])
    text = info.value.message
    assert "/lmstudio-greeting" in text and "0.25 s" in text and "600" not in text
    assert "raise the timeout" not in text and "\n" not in text


def test_a_stalled_answer_reports_the_requests_read_timeout() -> None:
    with MockLMStudioServer(clock=ManualClock()) as server, LMStudioClient(server.url, timeout=0.25) as client:
        model = server.loaded_models()[0]
        server.set_fault("stall", model=model, seconds=3600)
        with pytest.raises(LMStudioTimeoutError) as info:
            client.chat("hi", model=model)
    assert "sent nothing for 0.25 s" in info.value.message and "raise the timeout" in info.value.message
