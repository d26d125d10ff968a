"""The core client against llama.cpp's server and real models: what a fake server cannot prove.

Where llama.cpp's server differs from LM Studio, the test says how, and checks that the client degrades gracefully.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from real_server import GEMMA3, MODELS, N_CTX, SMOLLM2, LlamaServer, RealTierMissing, serving

from lm_notebook import (
    AsyncLMStudioClient,
    ContextLengthExceededError,
    EndpointNotSupportedError,
    LMStudioClient,
    LMStudioStreamError,
    ModelNotFoundError,
)

SAMPLING = {"temperature": 0, "seed": 42}
QUESTION = "What is the capital of France? Answer in one word."
# About 3,000 tokens for both tokenizers: over the 2,048-token context, cheap to reject.
TOO_LONG = "word " * 3000


def test_server_is_seen_as_running_and_lists_both_models(real_client: LMStudioClient) -> None:
    assert real_client.is_running()  # no /lmstudio-greeting: /v1/models answers instead
    models = real_client.list_models()
    assert sorted(m.id for m in models) == sorted(MODELS)
    # /api/v1/models and /api/v0/models are 404 {"detail": "Not Found"}: the client fell back to /v1/models,
    # which only gives ids.
    assert {m.source for m in models} == {"/v1/models"}
    assert all(m.state is None and m.context_length is None for m in models)
    assert sorted(m["id"] for m in real_client.fetch_models()) == sorted(MODELS)


def test_get_model_refuses_an_unknown_id_with_a_suggestion(real_client: LMStudioClient) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        real_client.get_model("smollm2")
    assert f'Did you mean "{SMOLLM2}"?' in str(info.value)


def test_load_model_is_reported_as_not_supported(real_client: LMStudioClient) -> None:
    with pytest.raises(EndpointNotSupportedError):
        real_client.load_model(SMOLLM2)


@pytest.mark.parametrize("model", MODELS)
def test_chat_gives_a_real_deterministic_answer(real_client: LMStudioClient, model: str) -> None:
    first = real_client.chat(QUESTION, model=model, max_tokens=16, **SAMPLING)
    again = real_client.chat(QUESTION, model=model, max_tokens=16, **SAMPLING)
    assert "paris" in first.content.lower(), first.content
    assert again.content == first.content
    assert first.finish_reason in ("stop", "length")
    assert first.usage is not None
    assert first.usage.prompt_tokens and first.usage.prompt_tokens > 5
    assert first.usage.completion_tokens and 1 <= first.usage.completion_tokens <= 16
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    assert first.model == model
    assert first.timings.time_to_first_token is None  # not measurable without a stream
    assert first.timings.total is not None and 0 < first.timings.total < 30
    assert first.timings.tokens_per_second is not None and first.timings.tokens_per_second > 0


def test_stream_matches_chat_and_its_token_count(real_client: LMStudioClient) -> None:
    prompt = "Name three primary colors."
    # llama.cpp's first answer to a prompt can differ from every later one at temperature 0 (a later request reuses
    # the prompt's cached KV, computed in other batches): measured here, the 1st differed and the 2nd-5th agreed,
    # streamed or not. So one request first; then the chat and the stream are compared under the same conditions.
    real_client.chat(prompt, model=SMOLLM2, max_tokens=24, **SAMPLING)
    whole = real_client.chat(prompt, model=SMOLLM2, max_tokens=24, **SAMPLING)
    with real_client.stream_chat(prompt, model=SMOLLM2, max_tokens=24, **SAMPLING) as stream:
        deltas = list(stream)
    result = stream.result()
    assert "".join(deltas) == result.content == whole.content
    assert result.finish_reason == whole.finish_reason
    assert not result.stopped
    # llama.cpp's server sends no usage in a stream, even with stream_options.include_usage (LM Studio 0.3.18+ does):
    # the answer's usage comes only from a non-streamed request. It sends one chunk per generated token, so the
    # streamed deltas count the completion tokens exactly.
    assert whole.usage is not None
    assert len(deltas) == whole.usage.completion_tokens
    if result.usage is not None:  # a server that does send it must agree
        assert result.usage.completion_tokens == whole.usage.completion_tokens
        assert result.usage.prompt_tokens == whole.usage.prompt_tokens
    timings = result.timings
    assert timings.time_to_first_token is not None and timings.total is not None
    assert 0 < timings.time_to_first_token <= timings.total  # no wall-clock bound: the machine may be busy
    assert timings.tokens_per_second is not None and timings.tokens_per_second > 0


def test_second_model_streams_too(real_client: LMStudioClient) -> None:
    # Switching models makes llama.cpp's server unload one and load the other (like LM Studio's auto-evict).
    result = real_client.stream_chat(QUESTION, model=GEMMA3, max_tokens=16, **SAMPLING).result()
    assert "paris" in result.content.lower(), result.content
    assert result.model == GEMMA3


def test_async_client_streams_the_same_answer(real_client: LMStudioClient, real_base_url: str) -> None:
    expected = real_client.chat(QUESTION, model=SMOLLM2, max_tokens=16, **SAMPLING).content

    async def run() -> tuple[list[str], str]:
        async with AsyncLMStudioClient(real_base_url, timeout=120) as client:
            ids = [m.id for m in await client.list_models()]
            stream = client.stream_chat(QUESTION, model=SMOLLM2, max_tokens=16, **SAMPLING)
            text = "".join([t async for t in stream])
            return ids, text

    ids, text = asyncio.run(run())
    assert sorted(ids) == sorted(MODELS)
    assert text == expected


def test_prompt_longer_than_the_context_gives_the_context_error(real_client: LMStudioClient) -> None:
    with pytest.raises(ContextLengthExceededError) as info:
        real_client.chat(TOO_LONG, model=SMOLLM2, max_tokens=8)
    # llama.cpp: 400 {"error": {"message": "This model's maximum context length is 2048 tokens. ...",
    # "code": "context_length_exceeded"}}
    assert info.value.status_code == 400
    assert str(N_CTX) in info.value.server_message


def test_stream_over_the_context_gives_the_context_error_and_the_client_goes_on(real_client: LMStudioClient) -> None:
    # llama.cpp's server answers 200 text/event-stream, then ends the body with no event at all (the error is only
    # in its log); the client asks once more, unstreamed and for one token, to learn why. The very next request on
    # the same client must work too: the server drops that stream's connection, so it must not be reused.
    with pytest.raises(ContextLengthExceededError) as info:
        for _ in real_client.stream_chat(TOO_LONG, model=SMOLLM2, max_tokens=8):
            pass
    assert str(N_CTX) in info.value.server_message
    assert info.value.partial_content == ""
    after = real_client.chat(QUESTION, model=SMOLLM2, max_tokens=8, **SAMPLING)
    assert after.content


def test_unknown_model_gives_model_not_found(real_client: LMStudioClient) -> None:
    # llama.cpp's server itself would answer with its first model and echo the unknown id back: the client checks
    # ids against /v1/models on servers that are not LM Studio.
    for ask in (
        lambda: real_client.chat(QUESTION, model="smollm2", max_tokens=4),
        lambda: real_client.stream_chat(QUESTION, model="smollm2", max_tokens=4).result(),
    ):
        with pytest.raises(ModelNotFoundError) as info:
            ask()
        assert f'Did you mean "{SMOLLM2}"?' in str(info.value)
        assert sorted(info.value.available) == sorted(MODELS)


def test_interrupt_mid_stream_closes_the_connection_and_the_server_goes_on(
    real_client: LMStudioClient, llama_server: LlamaServer
) -> None:
    long_prompt = "Write a long story about a dragon who learns to bake bread."
    full = real_client.chat(long_prompt, model=SMOLLM2, max_tokens=200, **SAMPLING)
    assert full.usage is not None and full.usage.completion_tokens == 200

    received: list[str] = []
    with (
        pytest.raises(KeyboardInterrupt),
        real_client.stream_chat(long_prompt, model=SMOLLM2, max_tokens=200, **SAMPLING) as stream,
    ):
        for text in stream:
            received.append(text)
            if len(received) == 3:
                raise KeyboardInterrupt  # what a kernel interrupt does inside the loop
    assert stream.stopped
    assert stream.result().stopped
    assert stream.content == "".join(received) and full.content.startswith(stream.content)

    # The server noticed the closed connection and stopped generating (its log says so, the moment it does), and it
    # answers the next request
    assert llama_server.wait_for_log("Disconnected from client", timeout=30), llama_server.log_tail()
    after = real_client.chat(QUESTION, model=SMOLLM2, max_tokens=8, **SAMPLING)
    assert after.content
    assert llama_server.alive()


@pytest.fixture(scope="module")
def interrupting_server(llama_server: LlamaServer) -> Iterator[LlamaServer]:
    """A second server with llama.cpp's default ``interrupt_requests`` (on), SmolLM2 only."""
    try:
        server = LlamaServer(only=(SMOLLM2,), interrupt_requests=True)
    except RealTierMissing as exc:  # the session server started, so this cannot happen
        pytest.fail(str(exc))
    yield from serving(server)


def test_a_stream_cut_by_a_waiting_request_is_an_error_not_a_short_answer(interrupting_server: LlamaServer) -> None:
    # With interrupt_requests on (llama.cpp's default), a request that waits for the model makes the server end the
    # running stream with [DONE] and no finish_reason. That is a cut answer: the client must say so, keeping what
    # arrived, rather than pass it off as a finished (short) answer.
    with LMStudioClient(interrupting_server.base_url, timeout=120) as client:
        stream = client.stream_chat("Write a long story about a dragon.", model=SMOLLM2, max_tokens=200, **SAMPLING)
        waiting: list[str] = []
        received: list[str] = []
        thread: threading.Thread | None = None
        with pytest.raises(LMStudioStreamError) as info:
            for text in stream:
                received.append(text)
                if len(received) == 2:
                    thread = threading.Thread(
                        target=lambda: waiting.append(client.chat(QUESTION, model=SMOLLM2, max_tokens=8).content)
                    )
                    thread.start()
        assert thread is not None, "the stream ended before the second request was sent"
        thread.join(timeout=60)
    assert "finish_reason" in str(info.value)
    assert info.value.partial_content == "".join(received)
    assert 0 < len(received) < 200
    assert waiting and waiting[0]  # the waiting request was served
