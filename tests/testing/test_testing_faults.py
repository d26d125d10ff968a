"""Every quirk and fault of the fake LM Studio, checked at the byte level with raw httpx and sockets."""

from __future__ import annotations

import json
import queue
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec, Quirks
from lm_notebook.testing.streaming import SPLIT_PAUSE

QWEN = "qwen2.5-7b-instruct"
HI = [{"role": "user", "content": "Say hello"}]


def chat(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": QWEN, "messages": HI, **body})


def raw_stream(http: httpx.Client, **body: Any) -> bytes:
    with http.stream("POST", "/v1/chat/completions",
                     json={"model": QWEN, "messages": HI, "stream": True, **body}) as response:
        assert response.status_code == 200
        return response.read()


def raw_request(body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%b" % (len(payload), payload))


def read_until(sock: socket.socket, ending: bytes) -> bytes:
    """What the socket receives until the bytes so far end with ``ending`` (chunked framing included)."""
    data = b""
    while not data.endswith(ending):
        more = sock.recv(1 << 20)
        assert more, f"the stream ended before {ending!r}: {data[-200:]!r}"
        data += more
    return data


def read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while more := sock.recv(1 << 20):
        data += more
    return data


def data_lines(chunks: queue.Queue[str], count: int) -> list[str]:
    return [chunks.get(timeout=10) for _ in range(count)]


# --- error styles and request errors -------------------------------------------------------------------------------

def test_unknown_model_04_object_and_03_plain_404() -> None:
    with MockLMStudioServer() as s04, MockLMStudioServer(version="0.3") as s03:
        r = httpx.post(s04.url + "/v1/chat/completions", json={"model": "nope", "messages": HI})
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
        assert error["param"] == "model"
        assert error["message"].startswith('Invalid model identifier "nope". Please specify a valid downloaded model')
        assert QWEN in error["message"]
        r = httpx.post(s03.url + "/v1/chat/completions", json={"model": "nope", "messages": HI})
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/plain")
        assert r.text.startswith('Invalid model identifier "nope"')
        assert httpx.get(s03.url + "/api/v1/models").json() == {
            "error": "Unexpected endpoint or method. (GET /api/v1/models)"}  # no /api/v1 before 0.4


def test_error_style_per_model(server: MockLMStudioServer) -> None:
    server.add_model(ModelSpec("old/model", type="embeddings", quirks=Quirks(error_style="0.3")))
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "old/model", "messages": HI})
    assert r.status_code == 400 and isinstance(r.json()["error"], str)


def test_no_models_loaded_both_styles() -> None:
    for version, status in (("0.4", 400), ("0.3", 404)):
        with MockLMStudioServer(version=version, jit_loading=False) as server:  # type: ignore[arg-type]
            server.unload_all()
            r = httpx.post(server.url + "/v1/chat/completions", json={"model": QWEN, "messages": HI})
            assert r.status_code == status
            body = r.json()["error"]
            message = body if version == "0.3" else body["message"]
            assert message.startswith("No models loaded. Please load a model")
            if version == "0.4":
                assert body == {"message": message, "type": "invalid_request_error", "param": "model", "code": None}


def test_json_object_rejected(http: httpx.Client) -> None:
    r = chat(http, response_format={"type": "json_object"})
    assert r.status_code == 400
    assert r.json() == {"error": "'response_format.type' must be 'json_schema' or 'text'"}
    assert chat(http, response_format={"type": "text"}).status_code == 200


def test_context_length_exceeded(server: MockLMStudioServer, http: httpx.Client) -> None:
    server.update_model(QWEN)  # loaded with context 4096 by default
    long = [{"role": "user", "content": "word " * 5000}]
    r = http.post("/v1/chat/completions", json={"model": QWEN, "messages": long})
    assert r.status_code == 400
    message = r.json()["error"]
    assert message.startswith("Trying to keep the first 5007 tokens when context the overflows.")
    assert "context length of only 4096 tokens" in message
    with http.stream("POST", "/v1/chat/completions", json={"model": QWEN, "messages": long, "stream": True}) as s:
        assert s.status_code == 200
        raw = s.read().decode()
    event, data = raw.split("\n", 1)
    assert event == "event: error"
    body = json.loads(data.removeprefix("data: ").strip())
    assert body["error"]["message"].startswith("Input does not fit in context length.")
    assert body["message"] == body["error"]["message"] and "[DONE]" not in raw
    server.load_model("openai/gpt-oss-20b", context_length=16384)  # a larger loaded context fits
    long_ok = http.post("/v1/chat/completions", json={"model": "openai/gpt-oss-20b", "messages": long})
    assert long_ok.status_code == 200


def test_auth_required() -> None:
    token = "sk-lm-Ab12Cd34:Ef56Gh78Ij90Kl12Mn34"
    with MockLMStudioServer(auth_token=token) as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            r = httpx.get(server.url + "/v1/models", headers=headers)
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "invalid_api_key" and r.json()["error"]["type"] == "invalid_request"
            assert "LM Studio API token is required" in r.json()["error"]["message"]
        ok = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200


# --- CORS ----------------------------------------------------------------------------------------------------------

def preflight(server: MockLMStudioServer, origin: str) -> httpx.Response:
    return httpx.options(server.url + "/v1/chat/completions", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})


def test_cors_off_by_default(server: MockLMStudioServer) -> None:
    r = preflight(server, "http://localhost:3000")
    assert r.status_code == 200
    assert r.json() == {"error": "Unexpected endpoint or method. (OPTIONS /v1/chat/completions)"}
    assert "access-control-allow-origin" not in r.headers
    got = httpx.get(server.url + "/v1/models", headers={"Origin": "http://localhost:3000"})
    assert "access-control-allow-origin" not in got.headers


def test_cors_development_setting() -> None:
    with MockLMStudioServer(cors=True) as server:
        r = preflight(server, "http://localhost:3000")
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
        assert r.headers["access-control-allow-headers"] == "Content-Type, Accept"
        got = httpx.get(server.url + "/v1/models", headers={"Origin": "http://localhost:3000"})
        assert got.headers["access-control-allow-origin"] == "*"


def test_cors_origin_list() -> None:
    with MockLMStudioServer(cors=["https://app.example"]) as server:
        r = preflight(server, "https://app.example")
        assert r.headers["access-control-allow-origin"] == "https://app.example" and r.headers["vary"] == "Origin"
        stranger = preflight(server, "https://evil.example")
        assert not any(k.startswith("access-control-") for k in stranger.headers)
        got = httpx.get(server.url + "/v1/models", headers={"Origin": "https://evil.example"})
        assert got.status_code == 200 and "access-control-allow-origin" not in got.headers


# --- wire quirks ---------------------------------------------------------------------------------------------------

def test_crlf_line_endings(server: MockLMStudioServer, http: httpx.Client) -> None:
    server.set_quirks(line_ending="\r\n")
    raw = raw_stream(http, max_tokens=3)
    assert raw.count(b"\r\n\r\n") == 5 and raw.replace(b"\r\n", b"").count(b"\n") == 0
    assert raw.endswith(b"data: [DONE]\r\n\r\n")


def test_keep_alive_comments(server: MockLMStudioServer, http: httpx.Client) -> None:
    server.set_quirks(QWEN, keep_alive_every=2)
    raw = raw_stream(http, max_tokens=4)
    assert raw.startswith(b": keep-alive\n\n") and raw.count(b": keep-alive\n\n") == 3
    assert b": keep-alive" not in raw_stream(http, model="openai/gpt-oss-20b", max_tokens=4)  # per model only


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def paused(clock: ManualClock) -> Iterator[MockLMStudioServer]:
    """A server whose pauses end only when the test advances ``clock``."""
    with MockLMStudioServer(clock=clock) as s:
        yield s


def test_multibyte_character_split_across_two_writes(paused: MockLMStudioServer, clock: ManualClock) -> None:
    paused.script(QWEN, "Température: 18°C")
    paused.set_quirks(split_multibyte=True)
    with socket.create_connection(("127.0.0.1", paused.port), timeout=10) as sock:
        sock.sendall(raw_request({"model": QWEN, "messages": HI, "stream": True}))
        # the server pauses after the lead byte of "é" (then the chunk's CRLF): a client's read can end there
        read_until(sock, b"Temp\xc3\r\n")
        assert clock.wait_for_pending() == [SPLIT_PAUSE]
        clock.advance(SPLIT_PAUSE)
        rest = read_to_end(sock)
    size_line, after = rest.split(b"\r\n", 1)  # the next write opens with the character's second byte
    assert int(size_line, 16) > 0 and after.startswith(b"\xa9rature")


def test_split_character_reassembles(server: MockLMStudioServer, http: httpx.Client) -> None:
    server.script(QWEN, "Température: 18°C")
    server.set_quirks(split_multibyte=True)
    chunks = [json.loads(line[6:]) for line in raw_stream(http).decode().split("\n\n") if line[6:7] == "{"]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Température: 18°C"


# --- faults --------------------------------------------------------------------------------------------------------

def test_500_and_times(server: MockLMStudioServer, http: httpx.Client) -> None:
    fault = server.set_fault("500", times=2)
    assert [chat(http).status_code for _ in range(3)] == [500, 500, 200]
    assert fault.hits == 2 and server.faults == []
    assert chat(http).status_code == 200


def test_429_with_retry_after(server: MockLMStudioServer, http: httpx.Client) -> None:
    server.set_fault("429", retry_after=3, model=QWEN)
    r = chat(http)
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert chat(http, model="openai/gpt-oss-20b").status_code == 200  # other models unaffected
    server.clear_faults()
    assert chat(http).status_code == 200


def test_fault_by_path(server: MockLMStudioServer, http: httpx.Client) -> None:
    server.set_fault("500", path="/api/v1/models", times=1)
    assert http.get("/v1/models").status_code == 200  # no path: only generation routes
    assert http.get("/api/v1/models").status_code == 500
    assert http.get("/api/v1/models").status_code == 200


def test_stall_mid_stream(paused: MockLMStudioServer, clock: ManualClock) -> None:
    paused.set_fault("stall", seconds=0.5, after_chunks=2, times=1)
    chunks: queue.Queue[str] = queue.Queue()

    def read() -> None:
        with httpx.stream("POST", paused.url + "/v1/chat/completions", timeout=10,
                          json={"model": QWEN, "messages": HI, "stream": True, "max_tokens": 4}) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    chunks.put(line)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert clock.wait_for_pending() == [0.5]  # the stall, after two token chunks
        assert len(data_lines(chunks, 2)) == 2 and chunks.empty()
    finally:
        clock.advance(0.5)
        reader.join(timeout=10)
    assert len(data_lines(chunks, 3)) == 3 and chunks.empty()  # the last two tokens and the final chunk


def test_a_stall_fires_the_clients_read_timeout(paused: MockLMStudioServer) -> None:
    # on a clock nobody advances, the stall lasts until the server stops
    paused.set_fault("stall", seconds=1.0, after_chunks=1, times=1)
    with pytest.raises(httpx.ReadTimeout), httpx.stream(
        "POST", paused.url + "/v1/chat/completions", timeout=0.3,
        json={"model": QWEN, "messages": HI, "stream": True},
    ) as r:
        r.read()


def test_drop_mid_stream(server: MockLMStudioServer, http: httpx.Client) -> None:
    server.set_fault("drop", after_chunks=3, times=1)
    lines: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError), http.stream(
        "POST", "/v1/chat/completions", json={"model": QWEN, "messages": HI, "stream": True}
    ) as r:
        lines.extend(line for line in r.iter_lines() if line)
    assert len(lines) == 3
    assert chat(http).status_code == 200  # the server is fine afterwards


def test_drop_without_streaming(server: MockLMStudioServer, http: httpx.Client) -> None:
    server.set_fault("drop", times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        chat(http)


def test_malformed_chunk(server: MockLMStudioServer, http: httpx.Client) -> None:
    server.set_fault("malformed_chunk", after_chunks=1)
    data = [line[6:] for line in raw_stream(http, max_tokens=3).decode().split("\n\n") if line.startswith("data: ")]
    assert data[-1] == "[DONE]" and len(data) == 3 + 1 + 1 + 1
    with pytest.raises(json.JSONDecodeError):
        json.loads(data[1])
    assert [json.loads(d)["object"] for d in data[:1] + data[2:-1]] == ["chat.completion.chunk"] * 4


@pytest.mark.parametrize("form", ["event", "data"])
def test_stream_error_in_band(server: MockLMStudioServer, http: httpx.Client, form: str) -> None:
    server.set_fault("stream_error", after_chunks=2, form=form)  # type: ignore[arg-type]
    raw = raw_stream(http).decode()
    blocks = [b for b in raw.split("\n\n") if b]
    assert len(blocks) == 3 and "[DONE]" not in raw
    if form == "event":
        assert blocks[-1].startswith("event: error\ndata: {")
    else:
        assert blocks[-1].startswith('data: {"error":')


def test_empty_stream(server: MockLMStudioServer, http: httpx.Client) -> None:
    server.set_fault("empty_stream", times=1)
    chunks = [json.loads(line[6:]) for line in raw_stream(http, stream_options={"include_usage": True}).decode()
              .split("\n\n") if line.startswith("data: {")]
    assert len(chunks) == 2 and chunks[0]["choices"][0]["delta"] == {}
    assert chunks[1]["usage"]["completion_tokens"] == 0


def test_unknown_fault_kind_rejected(server: MockLMStudioServer) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        server.set_fault("explode")  # type: ignore[arg-type]


def test_lenient_model_id() -> None:
    with MockLMStudioServer(lenient_model_id=True) as server:
        r = httpx.post(server.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": HI})
        assert r.status_code == 200 and r.json()["model"] == QWEN
