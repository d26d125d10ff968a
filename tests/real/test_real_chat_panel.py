"""The chat panel's verbs (what its buttons call) against llama.cpp's server and a real model."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from real_server import MODELS, SMOLLM2

from lm_notebook import ChatPanel, LMStudioClient


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


def test_stop_keeps_the_partial_answer_and_the_next_message_is_answered(panel: ChatPanel) -> None:
    panel.max_tokens_input.value = 300
    reply = panel.send("Write a long story about a lighthouse keeper.")
    deadline = time.monotonic() + 30
    while len(reply.content) < 20 and not reply.done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not reply.done, "the answer finished before it could be stopped"
    stopped_at = time.monotonic()
    panel.stop()
    reply.wait(timeout=5)
    assert time.monotonic() - stopped_at < 1.0
    assert reply.stopped and reply.content
    panel.max_tokens_input.value = 16
    after = panel.send("What is 2+2?")
    assert after.wait(timeout=60) is not None and after.ok, after.error
