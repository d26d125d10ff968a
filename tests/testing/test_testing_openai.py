"""Faithfulness: the official ``openai`` client (which nobody here wrote) against the fake LM Studio server."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import openai
import pytest

from lm_notebook.testing import MockLMStudioServer

QWEN = "qwen2.5-7b-instruct"
HI = [{"role": "user", "content": "Explain streaming in two lines"}]


@pytest.fixture
def client(server: MockLMStudioServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url + "/v1", api_key="lm-studio", max_retries=0, timeout=10) as c:
        yield c


def test_list_models(client: openai.OpenAI, server: MockLMStudioServer) -> None:
    models = list(client.models.list())
    assert [m.id for m in models] == list(server.models)
    assert all(m.object == "model" and m.owned_by == "organization_owner" for m in models)


def test_chat(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=QWEN, messages=HI)  # type: ignore[arg-type]
    assert answer.id.startswith("chatcmpl-") and answer.model == QWEN and answer.system_fingerprint == QWEN
    choice = answer.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert choice.message.content and "```" in choice.message.content
    assert answer.usage is not None and answer.usage.completion_tokens > 50


def test_stream_with_usage_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=QWEN, messages=HI, stream=True,  # type: ignore[arg-type]
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-2].choices[0].finish_reason == "stop"
    assert usage_chunk.usage.completion_tokens == len(chunks) - 2
    whole = client.chat.completions.create(model=QWEN, messages=HI)  # type: ignore[arg-type]
    assert text == whole.choices[0].message.content


def test_stream_tool_calls(client: openai.OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}}}}}]
    stream = client.chat.completions.create(model=QWEN, messages=HI, tools=tools, stream=True)  # type: ignore
    pieces: dict[int, str] = {}
    names = []
    finish = None
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for call in choice.delta.tool_calls or []:
            if call.function and call.function.name:
                names.append(call.function.name)
            pieces[call.index] = pieces.get(call.index, "") + ((call.function.arguments or "") if call.function
                                                               else "")
    assert names == ["lookup"] and finish == "tool_calls"
    assert set(json.loads(pieces[0])) == {"query", "limit"}


def test_completions_and_embeddings(client: openai.OpenAI) -> None:
    text = client.completions.create(model=QWEN, prompt="The sky is", max_tokens=4)
    assert text.object == "text_completion" and text.choices[0].finish_reason == "length"
    vectors = client.embeddings.create(model="text-embedding-nomic-embed-text-v1.5", input=["a", "b"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 768


def test_unknown_model_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="nope", messages=HI)  # type: ignore[arg-type]
    assert caught.value.status_code == 400 and caught.value.code == "model_not_found"


def test_older_server_unknown_model_is_not_found() -> None:
    with MockLMStudioServer(version="0.3") as server, openai.OpenAI(
        base_url=server.url + "/v1", api_key="x", max_retries=0
    ) as client, pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=HI)  # type: ignore[arg-type]


def test_authentication_error() -> None:
    with MockLMStudioServer(auth_token="sk-lm-abc:def") as server:
        with openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0) as client, pytest.raises(
            openai.AuthenticationError
        ):
            client.models.list()
        with openai.OpenAI(base_url=server.url + "/v1", api_key="sk-lm-abc:def", max_retries=0) as client:
            assert list(client.models.list())


def test_context_overflow_and_json_object(client: openai.OpenAI) -> None:
    long = [{"role": "user", "content": "token " * 5000}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=QWEN, messages=long)  # type: ignore[arg-type]
    # a string error body: openai keeps it whole in .body (its message only says "Error code: 400")
    assert "context length of only 4096" in str(caught.value.body)
    with pytest.raises(openai.APIError, match="does not fit in context length"):
        list(client.chat.completions.create(model=QWEN, messages=long, stream=True))  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as rejected:
        client.chat.completions.create(model=QWEN, messages=HI,  # type: ignore[arg-type]
                                       response_format={"type": "json_object"})
    assert "'json_schema' or 'text'" in str(rejected.value.body)


def test_rate_limit_and_server_error(client: openai.OpenAI, server: MockLMStudioServer) -> None:
    server.set_fault("429", times=1)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=QWEN, messages=HI)  # type: ignore[arg-type]
    server.set_fault("500", times=1)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=QWEN, messages=HI)  # type: ignore[arg-type]


def test_openai_retries_honour_retry_after(server: MockLMStudioServer, caplog: pytest.LogCaptureFixture) -> None:
    server.set_fault("429", times=1, retry_after=0.2)
    caplog.set_level(logging.INFO, logger="openai")
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=2) as client:
        answer = client.chat.completions.create(model=QWEN, messages=HI, max_tokens=3)  # type: ignore[arg-type]
    assert answer.choices[0].finish_reason == "length"
    sent = [r for r in server.requests if r.path == "/v1/chat/completions"]
    assert len(sent) == 2
    # openai read our Retry-After: its wait is the header's 0.2 s, not its own backoff (0.5 s and up, with jitter)
    waits = [float(m[1]) for r in caplog.records if (m := re.match(r"Retrying request in ([\d.]+) s", r.getMessage()))]
    assert waits == [0.2]


def test_in_band_stream_error(client: openai.OpenAI, server: MockLMStudioServer) -> None:
    server.set_fault("stream_error", after_chunks=2)
    received = []
    with pytest.raises(openai.APIError, match="crashed"):
        for chunk in client.chat.completions.create(model=QWEN, messages=HI, stream=True):  # type: ignore
            received.append(chunk)
    assert len(received) == 2


def test_dropped_stream_raises(client: openai.OpenAI, server: MockLMStudioServer) -> None:
    server.set_fault("drop", after_chunks=2, times=1)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model=QWEN, messages=HI, stream=True):  # type: ignore
            received.append(chunk)
    assert len(received) == 2


def test_async_client_streams(server: MockLMStudioServer) -> None:
    import asyncio

    async def run() -> str:
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as client:
            stream = await client.chat.completions.create(model=QWEN, messages=HI, stream=True)  # type: ignore
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(run()).startswith("Here is a short answer")
