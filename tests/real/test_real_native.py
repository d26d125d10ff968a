"""LM Studio 0.4's native route against llama.cpp's server (which has none): ``route="auto"`` must keep using
``/v1/chat/completions`` there, and ``route="native"`` must say clearly that the route is not available."""

from __future__ import annotations

import pytest
from real_server import SMOLLM2

from lm_notebook import EndpointNotSupportedError, LMStudioClient


def test_auto_uses_v1_on_llama_cpp_and_answers(real_client: LMStudioClient) -> None:
    assert real_client.supports_native_chat() is False  # no greeting, no /api/v1/models: not LM Studio 0.4
    result = real_client.chat("What is the capital of France? Answer in one word.", model=SMOLLM2, max_tokens=8,
                              temperature=0)
    assert result.route == "openai" and result.content and result.server_stats is None
    with real_client.stream_chat("Say hi.", model=SMOLLM2, max_tokens=4, temperature=0) as stream:
        assert stream.text() and stream.progress is None
    assert stream.result().route == "openai"


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
