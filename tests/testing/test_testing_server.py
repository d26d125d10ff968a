"""The fake LM Studio server over real loopback HTTP: lifecycle, routes, bodies, streams, replies, request log."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import httpx
import pytest

from lm_notebook import LMStudioClient
from lm_notebook.testing import MockLMStudioServer, ModelSpec, count_tokens, tokenize

QWEN = "qwen2.5-7b-instruct"
HI = [{"role": "user", "content": "Explain quantized models briefly"}]


def sse_events(raw: str) -> list[tuple[str, str]]:
    """(event, data) pairs of a whole SSE body, for exact order checks."""
    events = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            events.append((name, "\n".join(data)))
    return events


def stream_chunks(http: httpx.Client, body: dict[str, Any], path: str = "/v1/chat/completions") -> list[Any]:
    with http.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        raw = response.read().decode()
    events = sse_events(raw)
    assert events[-1] == ("message", "[DONE]")
    return [json.loads(data) for _, data in events[:-1]]


# --- lifecycle -----------------------------------------------------------------------------------------------------

def test_start_stop_frees_port_and_thread() -> None:
    # servers other tests keep for their module or session are not this test's business
    before = {t for t in threading.enumerate() if t.name == "MockLMStudioServer"}
    server = MockLMStudioServer()
    server.start()
    port = server.port
    assert server.url == f"http://127.0.0.1:{port}"
    assert httpx.get(server.url + "/lmstudio-greeting").json()["lmstudio"] is True
    # a client with an open keep-alive connection must not keep the server alive
    client = httpx.Client()
    client.get(server.url + "/v1/models")
    server.stop()
    assert not server.running
    assert not any(t.name == "MockLMStudioServer" and t.is_alive() and t not in before for t in threading.enumerate())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # the port is free again
    with pytest.raises(httpx.TransportError):
        client.get(server.url + "/v1/models")
    client.close()
    server.stop()  # stopping twice is harmless


def test_fixed_port_and_busy_port() -> None:
    with MockLMStudioServer() as first:
        with pytest.raises(OSError):
            MockLMStudioServer(port=first.port).start()
        assert first.running
    with MockLMStudioServer(port=first.port) as again:  # reusable right after stop
        assert again.port == first.port


def test_port_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        MockLMStudioServer().url  # noqa: B018


# --- routes --------------------------------------------------------------------------------------------------------

def test_unknown_route_and_method_answer_200_error(http: httpx.Client) -> None:
    r = http.get("/v1/nothing")
    assert r.status_code == 200
    assert r.json() == {"error": "Unexpected endpoint or method. (GET /v1/nothing)"}
    r = http.get("/v1/chat/completions")
    assert r.json() == {"error": "Unexpected endpoint or method. (GET /v1/chat/completions)"}
    assert http.delete("/v1/models").json()["error"].endswith("(DELETE /v1/models)")


def test_openai_models_listing(http: httpx.Client, server: MockLMStudioServer) -> None:
    body = http.get("/v1/models").json()
    assert body["object"] == "list"
    assert body["data"][0] == {"id": QWEN, "object": "model", "owned_by": "organization_owner"}
    assert {m["id"] for m in body["data"]} == set(server.models)  # JIT on: every downloaded model
    assert http.get("/v1/models/").status_code == 200  # Express ignores a trailing slash


def test_v0_models(http: httpx.Client) -> None:
    data = {m["id"]: m for m in http.get("/api/v0/models").json()["data"]}
    qwen = data[QWEN]
    assert qwen["state"] == "loaded" and qwen["loaded_context_length"] == 4096
    assert qwen["type"] == "llm" and qwen["compatibility_type"] == "gguf" and qwen["capabilities"] == ["tool_use"]
    assert data["google/gemma-3-4b"]["state"] == "not-loaded" and "loaded_context_length" not in data[
        "google/gemma-3-4b"]
    assert data["google/gemma-3-4b"]["type"] == "vlm"
    assert data["deepseek-r1-distill-qwen-7b"]["compatibility_type"] == "mlx"
    assert data["text-embedding-nomic-embed-text-v1.5"]["type"] == "embeddings"
    one = http.get("/api/v0/models/google/gemma-3-4b").json()  # ids with a slash work in the path
    assert one["id"] == "google/gemma-3-4b" and one["max_context_length"] == 131072
    missing = http.get("/api/v0/models/nope")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "model_not_found"


def test_v1_models_report_loaded_instances(http: httpx.Client) -> None:
    models = {m["key"]: m for m in http.get("/api/v1/models").json()["models"]}
    assert models[QWEN]["loaded_instances"] == [{"id": QWEN, "config": {"context_length": 4096, "parallel": 4}}]
    assert models[QWEN]["quantization"] == {"name": "Q4_K_M", "bits_per_weight": 4}
    assert models["google/gemma-3-4b"]["loaded_instances"] == []
    assert models["google/gemma-3-4b"]["capabilities"] == {"vision": True, "trained_for_tool_use": False}
    assert models["text-embedding-nomic-embed-text-v1.5"]["type"] == "embedding"


def test_keep_alive_reuses_one_connection(server: MockLMStudioServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        request = f"GET /lmstudio-greeting HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
        sock.sendall(request + request)  # pipelined: both answered, in order, on one connection
        data = b""
        while data.count(b'{"lmstudio":true,"lm_notebook_fake":true}') < 2:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Length: 41\r\n" in data and b"Connection: keep-alive" in data


def test_malformed_request_gets_400_and_close(server: MockLMStudioServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        data = sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 400 ")
        assert sock.recv(65536) == b""  # closed


def test_chunked_request_body_and_expect_continue(server: MockLMStudioServer) -> None:
    body = json.dumps({"model": QWEN, "messages": HI, "max_tokens": 3}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["usage"]["completion_tokens"] == 3


# --- chat ----------------------------------------------------------------------------------------------------------

def test_chat_answer_shape(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json={"model": QWEN, "messages": HI})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json; charset=utf-8"
    body = r.json()
    assert list(body) == ["id", "object", "created", "model", "choices", "usage", "stats", "system_fingerprint"]
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["system_fingerprint"] == QWEN
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["logprobs"] is None and choice["finish_reason"] == "stop"
    message = choice["message"]
    assert message["role"] == "assistant" and message["tool_calls"] == [] and message["reasoning_content"] == ""
    text = message["content"]
    assert "\n\n- **" in text and "```" in text and len(text.split("\n\n")) >= 4  # paragraphs, list, code
    assert 100 <= count_tokens(text) <= 400
    usage = body["usage"]
    assert usage["completion_tokens"] == count_tokens(text)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_replies_are_deterministic(http: httpx.Client) -> None:
    def ask(**extra: Any) -> str:
        body = {"model": QWEN, "messages": HI, **extra}
        return str(http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"])

    assert ask() == ask()
    assert ask(seed=1) == ask(seed=1) != ask(seed=2)
    assert ask(temperature=0.2) != ask(temperature=0.9)
    assert "quantized models" in ask()  # it answers about the question


def test_stream_chunk_order_and_usage(http: httpx.Client) -> None:
    chunks = stream_chunks(http, {"model": QWEN, "messages": HI, "stream_options": {"include_usage": True}})
    first, final, usage = chunks[0], chunks[-2], chunks[-1]
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:-2])
    assert final["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len(chunks) - 2
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and ids.pop().startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" and c["system_fingerprint"] == QWEN for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    same = http.post("/v1/chat/completions", json={"model": QWEN, "messages": HI}).json()
    assert text == same["choices"][0]["message"]["content"]  # streamed and whole answers agree


def test_stream_without_usage_option_has_no_usage(http: httpx.Client) -> None:
    chunks = stream_chunks(http, {"model": QWEN, "messages": HI})
    assert all("usage" not in c for c in chunks) and chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_max_tokens_cuts_with_length(http: httpx.Client) -> None:
    chunks = stream_chunks(http, {"model": QWEN, "messages": HI, "max_tokens": 7,
                                  "stream_options": {"include_usage": True}})
    assert len(chunks) == 7 + 2 and chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 7
    body = http.post("/v1/chat/completions", json={"model": QWEN, "messages": HI, "max_tokens": -1}).json()
    assert body["choices"][0]["finish_reason"] == "stop"


def test_stop_string(http: httpx.Client) -> None:
    body = http.post("/v1/chat/completions", json={"model": QWEN, "messages": HI, "stop": ["Key points"]}).json()
    assert body["choices"][0]["message"]["content"].endswith("\n\n")
    assert "Key points" not in body["choices"][0]["message"]["content"]


def test_scripted_replies_in_order_then_generated(http: httpx.Client, server: MockLMStudioServer) -> None:
    server.script(QWEN, "First, scripted.", "Second — with a dash.")
    answers = [http.post("/v1/chat/completions", json={"model": QWEN, "messages": HI}).json() for _ in range(3)]
    contents = [a["choices"][0]["message"]["content"] for a in answers]
    assert contents[:2] == ["First, scripted.", "Second — with a dash."]
    assert answers[0]["usage"]["completion_tokens"] == len(tokenize("First, scripted.")) == 4
    assert "Key points" in contents[2]


def test_reply_tokens_exact_and_large(server: MockLMStudioServer, http: httpx.Client) -> None:
    server.reply_tokens = 5000
    chunks = stream_chunks(http, {"model": QWEN, "messages": HI, "stream_options": {"include_usage": True}})
    assert len(chunks) == 5000 + 2 and chunks[-1]["usage"]["completion_tokens"] == 5000
    server.update_model(QWEN, reply_tokens=3)  # a model's own setting wins
    body = http.post("/v1/chat/completions", json={"model": QWEN, "messages": HI}).json()
    assert body["usage"]["completion_tokens"] == 3


def test_json_schema_answer_is_valid_json(http: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                               "tags": {"type": "array", "items": {"type": "string"}}}}
    body = http.post("/v1/chat/completions", json={
        "model": QWEN, "messages": HI,
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "strict": True, "schema": schema}},
    }).json()
    answer = json.loads(body["choices"][0]["message"]["content"])
    assert set(answer) == {"name", "age", "tags"} and isinstance(answer["age"], int)


def test_v0_chat_adds_stats_model_info_runtime(http: httpx.Client) -> None:
    body = http.post("/api/v0/chat/completions", json={"model": QWEN, "messages": HI, "max_tokens": 4}).json()
    assert body["stats"]["stop_reason"] == "maxPredictedTokensReached"
    assert set(body["stats"]) == {"tokens_per_second", "time_to_first_token", "generation_time", "stop_reason"}
    assert body["model_info"] == {"arch": "qwen2", "quant": "Q4_K_M", "format": "gguf", "context_length": 4096}
    assert body["runtime"]["supported_formats"] == ["gguf"]
    chunks = stream_chunks(http, {"model": QWEN, "messages": HI, "max_tokens": 2}, "/api/v0/chat/completions")
    assert all("stats" not in c for c in chunks)  # v0 streams carry no stats


def test_text_completions(http: httpx.Client) -> None:
    body = http.post("/v1/completions", json={"model": QWEN, "prompt": "Once upon a time", "max_tokens": 5}).json()
    assert body["object"] == "text_completion" and body["choices"][0]["finish_reason"] == "length"
    assert count_tokens(body["choices"][0]["text"]) == 5
    chunks = stream_chunks(http, {"model": QWEN, "prompt": "Once", "max_tokens": 3}, "/v1/completions")
    assert [c["object"] for c in chunks] == ["text_completion"] * 4
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) and chunks[-1]["choices"][0]["finish_reason"]


def test_embeddings_deterministic_unit_vectors(http: httpx.Client) -> None:
    model = "text-embedding-nomic-embed-text-v1.5"
    body = http.post("/v1/embeddings", json={"model": model, "input": ["a cat", "a dog", "a cat"]}).json()
    vectors = [d["embedding"] for d in body["data"]]
    assert [d["index"] for d in body["data"]] == [0, 1, 2] and body["usage"] == {"prompt_tokens": 0,
                                                                                "total_tokens": 0}
    assert len(vectors[0]) == 768 and vectors[0] == vectors[2] != vectors[1]
    assert abs(sum(v * v for v in vectors[0]) - 1) < 1e-3
    wrong = http.post("/v1/embeddings", json={"model": QWEN, "input": "x"})
    assert wrong.status_code == 400


def test_tool_call_deltas_arrive_in_pieces(http: httpx.Client) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    chunks = stream_chunks(http, {"model": QWEN, "messages": messages, "tools": tools})
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[:-1]]
    head = calls[0]
    assert head["index"] == 0 and head["type"] == "function" and head["id"].isdigit()
    assert head["function"] == {"name": "get_weather", "arguments": ""}
    assert len(calls) > 3 and all(set(c) == {"index", "function"} for c in calls[1:])
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert json.loads(arguments) == {"city": "weather paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    whole = http.post("/v1/chat/completions", json={"model": QWEN, "messages": messages, "tools": tools}).json()
    assert whole["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == arguments
    after = [*messages, whole["choices"][0]["message"], {"role": "tool", "content": "18°C", "tool_call_id": "1"}]
    answer = http.post("/v1/chat/completions", json={"model": QWEN, "messages": after, "tools": tools}).json()
    assert answer["choices"][0]["finish_reason"] == "stop"  # a tool result gets a text answer


@pytest.mark.parametrize(("model", "field"), [("openai/gpt-oss-20b", "reasoning"),
                                              ("deepseek-r1-distill-qwen-7b", None)])
def test_reasoning_forms(http: httpx.Client, model: str, field: str | None) -> None:
    chunks = stream_chunks(http, {"model": model, "messages": HI, "stream_options": {"include_usage": True}})
    deltas = [c["choices"][0]["delta"] for c in chunks[:-2]]
    if field is None:  # <think> tags inside content
        content = "".join(d["content"] for d in deltas)
        assert content.startswith("<think>\n") and "\n</think>\n\n" in content
    else:
        assert deltas[0][field] and "content" not in deltas[0]
        assert "".join(d.get(field, "") for d in deltas) and "".join(d.get("content", "") for d in deltas)
    assert chunks[-1]["usage"]["completion_tokens"] == len(deltas)
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    none = http.post("/v1/chat/completions", json={"model": model, "messages": HI, "reasoning_effort": "none"})
    assert "think" not in none.json()["choices"][0]["message"]["content"][:10]


def test_reasoning_content_form_and_thinking_eats_max_tokens(server: MockLMStudioServer,
                                                             http: httpx.Client) -> None:
    server.update_model("deepseek-r1-distill-qwen-7b", reasoning="reasoning_content")
    body = http.post("/v1/chat/completions", json={"model": "deepseek-r1-distill-qwen-7b", "messages": HI,
                                                   "max_tokens": 10}).json()
    message = body["choices"][0]["message"]
    assert message["content"] == "" and message["reasoning_content"] and body["choices"][0]["finish_reason"] == "length"


# --- the request log --------------------------------------------------------------------------------------------

def test_request_log_records_without_the_token() -> None:
    token = "sk-lm-abcd1234:SECRETSECRETSECRET"
    with MockLMStudioServer(auth_token=token) as server:
        httpx.post(server.url + "/v1/chat/completions", json={"model": QWEN, "messages": HI, "max_tokens": 1},
                   headers={"Authorization": f"Bearer {token}", "X-Trace": "t1"})
        entry = server.last_request
        assert entry is not None
        assert (entry.method, entry.path, entry.model) == ("POST", "/v1/chat/completions", QWEN)
        assert entry.json["max_tokens"] == 1 and entry.headers["x-trace"] == "t1"
        assert "authorization" not in entry.headers
        assert token not in repr(server.requests) and token not in repr(server)
        server.clear_requests()
        assert server.requests == []


def test_custom_models() -> None:
    spec = ModelSpec("tiny/test-model", context_length=128, loaded=True, parallel=2)
    with MockLMStudioServer(models=[spec]) as server:
        ids = [m["id"] for m in httpx.get(server.url + "/v1/models").json()["data"]]
        assert ids == ["tiny/test-model"]
        server.add_model(ModelSpec("second"))
        assert "second" in server.models


def test_the_token_never_shows_in_the_servers_settings_repr() -> None:
    with MockLMStudioServer(auth_token="sk-lm-abc:SECRET") as server:
        assert "SECRET" not in repr(server._app.settings)


def test_a_token_protected_fake_says_who_it_is_to_any_client() -> None:
    # the greeting (who answers) is the same with the token, without it and with a wrong one; the rest stays locked
    token = "sk-lm-abcd1234:SECRETSECRETSECRET"
    with MockLMStudioServer(auth_token=token) as server:
        for api_key in (token, None, "sk-lm-wrong000:nopenopenope"):
            with LMStudioClient(server.url, api_key=api_key) as client:
                assert client.is_running() and client.server_is_fake is True
        greeting = httpx.get(server.url + "/lmstudio-greeting")
        assert (greeting.status_code, greeting.json()) == (200, {"lmstudio": True, "lm_notebook_fake": True})
        assert httpx.get(server.url + "/v1/models").status_code == 401
