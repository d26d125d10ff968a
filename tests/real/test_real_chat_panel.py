"""The chat panel's methods that its buttons call (send, stop), against llama.cpp's server and a real model."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from real_server import MODELS, SMOLLM2, LlamaServer

from lm_notebook import ChatPanel, LMStudioClient
from lm_notebook.client.stream import ChatStream, StreamPart


@pytest.fixture
def panel(real_client: LMStudioClient) -> Iterator[ChatPanel]:
    chat = ChatPanel(real_client, model=SMOLLM2, temperature=0, max_tokens=16, seed=42)
    try:
        yield chat
    finally:
        chat.close()


def test_the_panel_lists_both_models_and_answers(panel: ChatPanel) -> None:
    assert sorted(panel.refresh_models()) == sorted(MODELS)
    reply = panel.send("What is the capital of France? Answer in one word.")
    result = reply.wait(timeout=60)
    assert reply.ok, reply.error
    assert result is not None and "paris" in result.content.lower(), result
    assert [m["role"] for m in panel.history] == ["user", "assistant"]


class StreamWatch(LMStudioClient):
    """The real client, with ``reached`` set once an answer it streams has ``chars`` characters of content: the event
    a test waits on to stop an answer mid-way."""

    def __init__(self, base_url: str, chars: int) -> None:
        super().__init__(base_url, timeout=120)
        self.chars = chars
        self.reached = threading.Event()

    def stream_chat(self, *args: Any, **kwargs: Any) -> ChatStream:
        stream = super().stream_chat(*args, **kwargs)
        parts = stream.iter_parts

        def watched() -> Iterator[StreamPart]:
            seen = 0
            for part in parts():
                if part.kind == "content":
                    seen += len(part.text)
                    if seen >= self.chars:
                        self.reached.set()
                yield part

        stream.iter_parts = watched  # type: ignore[method-assign]
        return stream


def test_stop_keeps_the_partial_answer_and_the_next_message_is_answered(llama_server: LlamaServer) -> None:
    with StreamWatch(llama_server.base_url, chars=20) as client, ChatPanel(
        client, model=SMOLLM2, temperature=0, max_tokens=300, seed=42
    ) as panel:
        reply = panel.send("Write a long story about a lighthouse keeper.")
        assert client.reached.wait(timeout=60), "the answer never reached 20 characters"
        assert not reply.done, "the answer finished before it could be stopped"
        panel.stop()
        reply.wait(timeout=30)  # a guard against a hang, not a speed check
        assert reply.stopped and reply.content  # cut before the model finished, the partial answer kept
        partial = reply.content
        panel.max_tokens_input.value = 16
        after = panel.send("What is 2+2?")
        assert after.wait(timeout=60) is not None and after.ok, after.error
        assert reply.content == partial  # nothing of the stopped answer arrived later
        assert [m["role"] for m in panel.history] == ["user", "assistant", "user", "assistant"]
