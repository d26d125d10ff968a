"""Our own client against the fake LM Studio: chat, stream, models (with fallback), and every error class."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from lm_notebook.client.clients import AsyncLMStudioClient, LMStudioClient
from lm_notebook.client.errors import (
    AuthenticationError,
    ContextLengthExceededError,
    InvalidRequestError,
    LMStudioError,
    LMStudioRequestError,
    LMStudioStreamError,
    ModelLoadError,
    ModelNotFoundError,
    NoModelLoadedError,
    RateLimitError,
    ServerError,
)
from lm_notebook.testing import MockLMStudioServer, count_tokens

QWEN = "qwen2.5-7b-instruct"


@pytest.fixture
def client(server: MockLMStudioServer) -> Iterator[LMStudioClient]:
    with LMStudioClient(server.url, model=QWEN, timeout=10) as c:
        yield c


def test_chat(client: LMStudioClient) -> None:
    result = client.chat("Tell me about context windows")
    assert result.finish_reason == "stop" and "```" in result.content
    assert result.usage is not None and result.usage.completion_tokens == count_tokens(result.content)


def test_stream_matches_chat(client: LMStudioClient) -> None:
    with client.stream_chat("Tell me about context windows") as stream:
        pieces = list(stream)
    result = stream.result()
    assert len(pieces) > 50
    assert "".join(pieces) == result.content == client.chat("Tell me about context windows").content
    assert result.usage is not None and result.usage.completion_tokens == len(pieces)  # usage chunk was asked for


def test_reasoning_forms_are_separated(client: LMStudioClient, server: MockLMStudioServer) -> None:
    for model in ("openai/gpt-oss-20b", "deepseek-r1-distill-qwen-7b"):
        result = client.chat("Why is the sky blue", model=model)
        assert result.reasoning.strip().startswith("The user asks about") and "<think>" not in result.content
        assert result.content.startswith("Here is a short answer")
    server.update_model("deepseek-r1-distill-qwen-7b", reasoning="reasoning_content")
    with client.stream_chat("Why", model="deepseek-r1-distill-qwen-7b") as stream:
        text = "".join(stream)
    assert stream.result().reasoning and "The user asks" not in text


def test_list_models_v1_then_fallbacks(server: MockLMStudioServer) -> None:
    with LMStudioClient(server.url) as client:
        models = {m.id: m for m in client.list_models()}
    assert models[QWEN].source == "/api/v1/models" and models[QWEN].loaded and models[QWEN].parallel == 4
    assert models[QWEN].loaded_context_length == 4096 and models["google/gemma-3-4b"].type == "vlm"
    with MockLMStudioServer(version="0.3") as old, LMStudioClient(old.url) as client:
        models = {m.id: m for m in client.list_models()}
        assert models[QWEN].source == "/api/v0/models" and models[QWEN].state == "loaded"
    with MockLMStudioServer() as bare, LMStudioClient(bare.url) as client:
        bare.set_fault("500", path="/api/v1/models")  # not a fallback case: a server error surfaces
        with pytest.raises(ServerError):
            client.list_models()


def test_load_and_unload(client: LMStudioClient, server: MockLMStudioServer) -> None:
    loaded = client.load_model("google/gemma-3-4b", context_length=8192)
    assert loaded.status == "loaded" and loaded.instance_id == "google/gemma-3-4b"
    assert "google/gemma-3-4b" in server.loaded_models()
    client.unload_model("google/gemma-3-4b")
    assert "google/gemma-3-4b" not in server.loaded_models()


def test_errors_map_to_our_classes(client: LMStudioClient, server: MockLMStudioServer) -> None:
    with pytest.raises(ModelNotFoundError) as not_found:
        client.chat("Hi", model="qwen2.5-7b-instruc")
    assert QWEN in not_found.value.available
    with pytest.raises(ContextLengthExceededError):
        client.chat("word " * 5000)
    sent = len(server.requests)
    with pytest.raises(LMStudioRequestError):  # refused before sending: the server would answer 400
        client.chat("Hi", response_format={"type": "json_object"})
    assert len(server.requests) == sent
    with pytest.raises(InvalidRequestError):  # and the server's own 400 maps too (a raw payload gets through)
        client._request("POST", "/v1/chat/completions", json_body={
            "model": QWEN, "messages": [{"role": "user", "content": "Hi"}], "response_format": {"type": "json_object"}})
    server.set_fault("429", times=1, retry_after=2)
    with pytest.raises(RateLimitError) as limited:
        client.chat("Hi")
    assert limited.value.retry_after == 2
    server.set_fault("500", times=1)
    with pytest.raises(ServerError):
        client.chat("Hi")
    server.set_fault("load_failure", times=1)
    with pytest.raises(ModelLoadError):
        client.chat("Hi", model="google/gemma-3-4b")


def test_old_style_errors_map_too() -> None:
    with MockLMStudioServer(version="0.3", jit_loading=False) as server, LMStudioClient(server.url) as client:
        with pytest.raises(ModelNotFoundError):
            client.chat("Hi", model="nope")
        server.unload_all()
        with pytest.raises(NoModelLoadedError):
            client.chat("Hi", model=QWEN)


def test_auth(server: MockLMStudioServer) -> None:
    with MockLMStudioServer(auth_token="sk-lm-x:y") as locked:
        with LMStudioClient(locked.url, api_key="wrong", model=QWEN) as client, pytest.raises(AuthenticationError):
            client.chat("Hi")
        with LMStudioClient(locked.url, api_key="sk-lm-x:y", model=QWEN) as client:
            assert client.chat("Hi").content


def test_stream_errors(client: LMStudioClient, server: MockLMStudioServer) -> None:
    with pytest.raises(ContextLengthExceededError):
        list(client.stream_chat("word " * 5000))
    server.set_fault("stream_error", after_chunks=3, times=1)
    with pytest.raises(LMStudioError) as in_band:
        list(client.stream_chat("Hi"))
    assert in_band.value.partial_content
    server.set_fault("drop", after_chunks=3, times=1)
    with pytest.raises(LMStudioStreamError) as dropped:
        list(client.stream_chat("Hi"))
    assert dropped.value.partial_content == "Here is a"


def test_quirky_wire_still_reads(client: LMStudioClient, server: MockLMStudioServer) -> None:
    server.set_quirks(line_ending="\r\n", keep_alive_every=3, split_multibyte=True)
    server.script(QWEN, "Température — 18°C")
    assert "".join(client.stream_chat("Weather")) == "Température — 18°C"


def test_async_client(server: MockLMStudioServer) -> None:
    async def run() -> tuple[str, str]:
        async with AsyncLMStudioClient(server.url, model=QWEN) as client:
            whole = await client.chat("Hi")
            parts = [t async for t in client.stream_chat("Hi")]
            return whole.content, "".join(parts)

    whole, streamed = asyncio.run(run())
    assert whole == streamed and whole
