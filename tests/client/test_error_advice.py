"""Errors that say what to do with the real values: a downloaded model that is not loaded, a missing or refused
token, a context overflow's numbers; and whether the server is this project's fake. Over real loopback HTTP against
the fake server where the server is involved, else ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from client_doubles import Harness

from lm_notebook import (
    AsyncLMStudioClient,
    AuthenticationError,
    ContextLengthExceededError,
    LMStudioClient,
    NoModelLoadedError,
)
from lm_notebook.testing import MockLMStudioServer, ModelSpec


@pytest.fixture(autouse=True)
def no_token_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LM_API_TOKEN", raising=False)
    monkeypatch.delenv("LMSTUDIO_API_TOKEN", raising=False)


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- 7. downloaded but not loaded, with just-in-time loading off ----------------------------------------------------

@pytest.fixture(params=["another model loaded", "nothing loaded"])
def jit_off(request: pytest.FixtureRequest) -> Iterator[MockLMStudioServer]:
    models = [ModelSpec("google/gemma-3-4b")]
    if request.param == "another model loaded":
        models.append(ModelSpec("qwen2.5-7b-instruct", loaded=True))
    with MockLMStudioServer(models=models, jit_loading=False) as server:
        yield server


def check_not_loaded(err: NoModelLoadedError) -> None:
    assert err.model == "google/gemma-3-4b" and err.downloaded
    text = err.message
    assert "downloaded but not loaded" in text and "just-in-time loading is off" in text
    assert "`lms load google/gemma-3-4b`" in text and 'client.load_model("google/gemma-3-4b")' in text
    assert "not available" not in text and "download the model" not in text and "\n" not in text


def test_a_downloaded_model_that_is_not_loaded_says_how_to_load_it(jit_off: MockLMStudioServer) -> None:
    with LMStudioClient(jit_off.url) as client:
        with pytest.raises(NoModelLoadedError) as info:
            client.chat("hi", model="google/gemma-3-4b")
        check_not_loaded(info.value)
        with pytest.raises(NoModelLoadedError) as info:
            list(client.stream_chat("hi", model="google/gemma-3-4b"))
        check_not_loaded(info.value)

    async def run() -> None:
        async with AsyncLMStudioClient(jit_off.url) as aclient:
            with pytest.raises(NoModelLoadedError) as info:
                await aclient.chat("hi", model="google/gemma-3-4b")
            check_not_loaded(info.value)

    asyncio.run(run())


def test_loading_it_as_the_error_says_then_works(jit_off: MockLMStudioServer) -> None:
    with LMStudioClient(jit_off.url) as client:
        with pytest.raises(NoModelLoadedError):
            client.chat("hi", model="google/gemma-3-4b")
        client.load_model("google/gemma-3-4b")
        assert client.chat("hi", model="google/gemma-3-4b").content


def test_an_unknown_model_with_jit_off_is_still_not_found(jit_off: MockLMStudioServer) -> None:
    from lm_notebook import LMStudioAPIError, ModelNotFoundError

    with LMStudioClient(jit_off.url) as client, pytest.raises(LMStudioAPIError) as info:
        client.chat("hi", model="no-such-model")
    assert isinstance(info.value, (ModelNotFoundError, NoModelLoadedError))
    assert "downloaded but not loaded" not in info.value.message


# --- 10. a missing token and a refused one ---------------------------------------------------------------------------

TOKEN = "sk-lm-test1234:secretsecretsecret"


@pytest.fixture
def guarded() -> Iterator[MockLMStudioServer]:
    with MockLMStudioServer(auth_token=TOKEN) as server:
        yield server


def test_a_missing_token_says_how_to_set_one(guarded: MockLMStudioServer) -> None:
    with LMStudioClient(guarded.url) as client, pytest.raises(AuthenticationError) as info:
        client.list_models()
    err = info.value
    assert "none was sent" in err.message and "LM_API_TOKEN" in err.message and "refused" not in err.message
    assert not err.token_sent


def test_a_wrong_token_says_it_was_refused(guarded: MockLMStudioServer) -> None:
    wrong = "sk-lm-wrong000:nopenopenope"
    with LMStudioClient(guarded.url, api_key=wrong) as client:
        with pytest.raises(AuthenticationError) as info:
            client.list_models()
        err = info.value
        assert "the token was refused" in err.message and "none was sent" not in err.message
        assert wrong not in err.message and err.token_sent
        with pytest.raises(AuthenticationError, match="the token was refused"):
            list(client.stream_chat("hi", model=guarded.loaded_models()[0]))


def test_the_right_token_works(guarded: MockLMStudioServer) -> None:
    with LMStudioClient(guarded.url, api_key=TOKEN) as client:
        assert client.list_models()


# --- 16. a context overflow names the model, the sizes and a context that fits ----------------------------------

LONG = "word " * 5000  # about 5000 tokens for the fake server: more than the 4096 loaded, less than 8192 with room


@pytest.fixture
def small_context() -> Iterator[MockLMStudioServer]:
    with MockLMStudioServer(models=[ModelSpec("qwen2.5-7b-instruct", loaded=True, context_length=4096)]) as server:
        yield server


def check_overflow(err: ContextLengthExceededError, *, max_tokens: int) -> None:
    assert err.model == "qwen2.5-7b-instruct" and err.context_length == 4096 and err.max_tokens == max_tokens
    assert err.prompt_tokens is not None and err.prompt_tokens > 4096
    fit = err.suggested_context_length
    assert fit is not None and fit >= err.prompt_tokens + max_tokens and fit & (fit - 1) == 0  # a power of two
    assert fit < 2 * (err.prompt_tokens + max_tokens)  # the next one, not any larger
    text = err.message
    assert f"({err.prompt_tokens} tokens)" in text and "4096 tokens" in text and '"qwen2.5-7b-instruct"' in text
    assert f"`lms load qwen2.5-7b-instruct --context-length {fit}`" in text
    assert f'client.load_model("qwen2.5-7b-instruct", context_length={fit})' in text
    assert "<model>" not in text and (fit == 16384 or "16384" not in text)


def test_a_context_overflow_names_the_model_the_sizes_and_a_fitting_context(small_context: MockLMStudioServer) -> None:
    with LMStudioClient(small_context.url) as client:
        with pytest.raises(ContextLengthExceededError) as info:
            client.chat(LONG, model="qwen2.5-7b-instruct", max_tokens=512)
        check_overflow(info.value, max_tokens=512)
        assert info.value.max_context_length == 32768  # from the model list
        with pytest.raises(ContextLengthExceededError) as info:  # the stream's in-band error event
            list(client.stream_chat(LONG, model="qwen2.5-7b-instruct", max_tokens=100))
        check_overflow(info.value, max_tokens=100)


def test_an_overflow_without_numbers_takes_the_loaded_context_from_the_model_list(mode: str) -> None:
    listing = {"models": [{"type": "llm", "key": "m", "max_context_length": 8192, "format": "gguf",
                           "loaded_instances": [{"id": "m", "config": {"context_length": 2048}}]}]}
    answers: dict[str, Any] = {
        "/lmstudio-greeting": httpx.Response(200, json={"lmstudio": True}),
        "/api/v1/models": httpx.Response(200, json=listing),
        "/v1/chat/completions": httpx.Response(400, json={"error": "the request exceeds the available context size"}),
    }
    h = Harness(mode, lambda request: answers[request.url.path], route="openai")  # /v1's error answers
    with pytest.raises(ContextLengthExceededError) as info:
        h.call("chat", "hi", model="m")
    err = info.value
    assert (err.model, err.prompt_tokens, err.context_length, err.max_context_length) == ("m", None, 2048, 8192)
    assert err.suggested_context_length == 4096 and "--context-length 4096" in err.message


def test_a_prompt_too_long_for_the_models_largest_context_says_so(mode: str) -> None:
    listing = {"models": [{"type": "llm", "key": "m", "max_context_length": 8192, "format": "gguf",
                           "loaded_instances": [{"id": "m", "config": {"context_length": 4096}}]}]}
    overflow = ("Trying to keep the first 9000 tokens when context the overflows. However, the model is loaded with "
                "context length of only 4096 tokens, which is not enough.")
    answers: dict[str, Any] = {
        "/lmstudio-greeting": httpx.Response(200, json={"lmstudio": True}),
        "/api/v1/models": httpx.Response(200, json=listing),
        "/v1/chat/completions": httpx.Response(400, json={"error": overflow}),
    }
    h = Harness(mode, lambda request: answers[request.url.path], route="openai")  # /v1's error answers
    with pytest.raises(ContextLengthExceededError) as info:
        h.call("chat", "hi", model="m", max_tokens=256)
    err = info.value
    assert (err.prompt_tokens, err.context_length, err.suggested_context_length) == (9000, 4096, None)
    assert "largest context (8192 tokens) is too small" in err.message


# --- 26. the client knows when it talks to the bundled fake server ---------------------------------------------

@pytest.mark.parametrize(("greeting", "fake"), [({"lmstudio": True, "lm_notebook_fake": True}, True),
                                                 ({"lmstudio": True}, False),
                                                 ({"lmstudio": True, "lm_notebook_fake": "yes"}, False)])
def test_server_is_fake_once_the_greeting_is_read(mode: str, greeting: dict[str, Any], fake: bool) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=greeting)

    transport = httpx.MockTransport(handle)
    if mode == "sync":
        with LMStudioClient(transport=transport) as client:
            assert client.server_is_fake is None  # nothing asked yet
            assert client.is_running()
            assert client.server_is_fake is fake
            assert AsyncLMStudioClient.from_client(client).server_is_fake is fake
        return

    async def run() -> tuple[bool | None, bool | None]:
        async with AsyncLMStudioClient(transport=transport) as aclient:
            before = aclient.server_is_fake
            await aclient.is_running()
            return before, aclient.server_is_fake

    assert asyncio.run(run()) == (None, fake)


def test_a_streamed_overflow_too_long_for_the_largest_context_says_so_as_chat_does() -> None:
    spec = ModelSpec("m", loaded=True, context_length=4096, max_context_length=8192)
    prompt = "word " * 9000  # more than even the largest context
    with MockLMStudioServer(models=[spec]) as server, LMStudioClient(server.url) as client:
        with pytest.raises(ContextLengthExceededError) as unstreamed:
            client.chat(prompt, model="m")
        with pytest.raises(ContextLengthExceededError) as streamed:  # the stream's in-band error event
            client.stream_chat(prompt, model="m").text()

        async def in_async() -> ContextLengthExceededError:
            async with AsyncLMStudioClient(server.url) as aclient:
                try:
                    await aclient.stream_chat(prompt, model="m").text()
                except ContextLengthExceededError as err:
                    return err
            raise AssertionError("no overflow")

        from_async = asyncio.run(in_async())
    for err in (unstreamed.value, streamed.value, from_async):
        assert (err.context_length, err.max_context_length, err.suggested_context_length) == (4096, 8192, None)
        assert "largest context (8192 tokens) is too small" in err.message and "--context-length" not in err.message
