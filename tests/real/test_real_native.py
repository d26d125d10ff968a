"""LM Studio 0.4's native route against llama.cpp's server (which has none): ``route="auto"`` must keep using
``/v1/chat/completions`` there, and ``route="native"`` must say clearly that the route is not available."""

from __future__ import annotations

import asyncio

import pytest
from client_doubles import CountingTransport
from real_server import SMOLLM2

from lm_notebook import AsyncLMStudioClient, EndpointNotSupportedError, LMStudioClient


def test_auto_uses_v1_on_llama_cpp_and_answers(real_client: LMStudioClient) -> None:
    # a fresh client: its first request finds out what the server is (not LM Studio: /v1, nothing native asked)
    result = real_client.chat("What is the capital of France? Answer in one word.", model=SMOLLM2, max_tokens=8,
                              temperature=0)
    assert result.route == "openai" and result.content and result.server_stats is None
    with real_client.stream_chat("Say hi.", model=SMOLLM2, max_tokens=4, temperature=0) as stream:
        assert stream.text() and stream.progress is None
    assert stream.result().route == "openai"
    assert real_client.supports_native_chat() is False  # no greeting: not LM Studio 0.4


def test_a_fresh_client_on_llama_cpp_asks_nothing_native_and_nothing_twice(real_base_url: str) -> None:
    # llama.cpp's server keeps no request log: the client's transport counts what was sent
    transport = CountingTransport()

    async def run() -> list[str]:
        async with AsyncLMStudioClient(real_base_url, timeout=120, transport=transport, model=SMOLLM2) as client:
            routes = [(await client.chat("Say hi.", max_tokens=4, temperature=0)).route]
            async with client.stream_chat("Say hi.", max_tokens=4, temperature=0) as stream:
                routes.append((await stream.result()).route)
            routes.append((await client.chat("Say hi.", max_tokens=4, temperature=0)).route)
            return routes

    assert asyncio.run(run()) == ["openai"] * 3
    sent = [path for kind, path, _ in transport.events if kind == "sent"]
    # what the first request asked before this change too (who answers, which ids it has), then only the answers
    assert sent == ["/lmstudio-greeting", "/v1/models"] + ["/v1/chat/completions"] * 3


@pytest.mark.parametrize("streamed", [False, True])
def test_native_is_refused_clearly_on_llama_cpp(real_client: LMStudioClient, streamed: bool) -> None:
    with pytest.raises(EndpointNotSupportedError) as info:
        if streamed:
            real_client.stream_chat("Hi", model=SMOLLM2, route="native").text()
        else:
            real_client.chat("Hi", model=SMOLLM2, route="native")
    message = info.value.message
    assert "native chat route (POST /api/v1/chat, route='native') needs LM Studio 0.4 or newer" in message
    assert "HTTP 404" in message and "route='auto'" in message and "\n" not in message


def test_model_management_is_refused_clearly_on_llama_cpp(real_client: LMStudioClient) -> None:
    # llama.cpp lists its models only on /v1/models, which says nothing of what is loaded: "nothing is loaded" (an
    # empty list) would be false, SmolLM2 answers right now
    for what, call in (("loaded_models()", real_client.loaded_models), ("unload_all()", real_client.unload_all)):
        with pytest.raises(EndpointNotSupportedError) as info:
            call()
        message = info.value.message
        assert message.startswith(f"{what} needs LM Studio") and real_client.base_url in message, message
        assert "\n" not in message
