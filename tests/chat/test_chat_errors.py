"""The chat panel when things go wrong: each failure is shown with what to do, kept out of what the model is sent,
and Retry recovers; against the fake LM Studio server over real loopback HTTP."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from panel_page import MODEL, chat_requests, page_text

from lm_notebook import ChatPanel, LMStudioClient
from lm_notebook.client.errors import (
    ContextLengthExceededError,
    LMStudioConnectionError,
    LMStudioError,
    LMStudioRequestError,
    LMStudioStreamError,
    ModelLoadError,
    ModelNotFoundError,
    ServerError,
)
from lm_notebook.testing import MockLMStudioServer, ModelSpec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_down_is_shown_with_the_action_and_the_message_is_kept() -> None:
    with LMStudioClient(f"http://127.0.0.1:{_free_port()}", model=MODEL) as client, ChatPanel(client) as chat:
        chat.refresh_models()
        assert "Could not list models" in chat.status.value
        reply = chat.send("Hello?")
        assert reply.wait(10) is None
        assert isinstance(reply.error, LMStudioConnectionError) and reply.state == "failed"
        shown = page_text(chat.widget)
        assert "is not reachable" in shown and "lms server start" in shown
        assert chat.history == [{"role": "user", "content": "Hello?"}]
        assert not chat.busy and not chat.retry_button.disabled


@pytest.mark.parametrize(
    ("setup", "error_type", "words"),
    [
        (lambda s: s.set_fault("500", times=1), ServerError, "HTTP 500"),
        (lambda s: s.set_fault("drop", after_chunks=5, times=1), LMStudioStreamError, "partial answer"),
        (lambda s: s.set_fault("stream_error", after_chunks=3, times=1), LMStudioError, "mid-answer"),
        (lambda s: s.set_fault("malformed_chunk", after_chunks=2, times=1), LMStudioStreamError, "malformed"),
    ],
    ids=["server-error", "stream-dropped", "in-band-error", "malformed-chunk"],
)
def test_each_error_is_shown_in_the_panel_and_retry_recovers(
    panel: ChatPanel, lmstudio_mock: MockLMStudioServer, setup: Any, error_type: type[Exception], words: str
) -> None:
    setup(lmstudio_mock)
    reply = panel.send("Please answer")
    assert reply.wait(10) is None
    assert isinstance(reply.error, error_type), reply.error
    assert words in page_text(panel.widget)
    assert panel.history == [{"role": "user", "content": "Please answer"}]
    assert "Failed" in panel.status.value
    lmstudio_mock.clear_faults()
    again = panel.retry()
    assert again.wait(10) is not None and again.ok
    assert words not in page_text(panel.widget)  # the failed answer made way for the new one
    assert [m["role"] for m in panel.history] == ["user", "assistant"]


def test_unknown_model(panel: ChatPanel) -> None:
    panel.model = "no-such-model"
    reply = panel.send("Hi")
    assert reply.wait(10) is None and isinstance(reply.error, ModelNotFoundError)
    assert "Available:" in page_text(panel.widget)


def test_context_exceeded(lmstudio_client: LMStudioClient, lmstudio_mock: MockLMStudioServer) -> None:
    lmstudio_mock.add_model(ModelSpec("tiny-context", loaded=True, context_length=16))
    with ChatPanel(lmstudio_client, model="tiny-context") as chat:
        reply = chat.send("word " * 100)
        assert reply.wait(10) is None and isinstance(reply.error, ContextLengthExceededError)
        assert "context-length" in page_text(chat.widget)


def test_model_failing_to_load(lmstudio_client: LMStudioClient, lmstudio_mock: MockLMStudioServer) -> None:
    lmstudio_mock.set_fault("load_failure")
    with ChatPanel(lmstudio_client, model="google/gemma-3-4b") as chat:
        reply = chat.send("Hi")
        assert reply.wait(10) is None and isinstance(reply.error, ModelLoadError)


def test_a_rejected_parameter_is_shown_not_raised(panel: ChatPanel) -> None:
    panel.max_tokens_input.value = 0
    reply = panel.send("Hi")
    assert reply.wait(5) is None and isinstance(reply.error, LMStudioRequestError)
    assert "max_tokens must be" in page_text(panel.widget)


def test_an_empty_answer_is_flagged_with_the_likely_cause(panel: ChatPanel, lmstudio_mock: MockLMStudioServer) -> None:
    lmstudio_mock.set_fault("empty_stream", times=1)
    reply = panel.send("Hi")
    result = reply.wait(10)
    assert result is not None and result.content == ""
    assert "empty answer" in page_text(panel.widget) and "context length" in page_text(panel.widget)
    assert panel.history == [{"role": "user", "content": "Hi"}]  # nothing empty is sent back to the model


def test_failed_answers_are_never_sent_to_the_model(panel: ChatPanel, lmstudio_mock: MockLMStudioServer) -> None:
    lmstudio_mock.set_fault("drop", after_chunks=3, times=1)
    assert panel.send("first question").wait(10) is None
    lmstudio_mock.script(MODEL, "An answer.")
    assert panel.send("second question").wait(10) is not None
    sent = chat_requests(lmstudio_mock)[-1]["messages"]
    # no error text, no partial answer; the unanswered question is joined to the new one
    assert sent == [{"role": "user", "content": "first question\n\nsecond question"}]
    assert [m["role"] for m in panel.history] == ["user", "user", "assistant"]


def test_no_model_at_all(lmstudio_mock: MockLMStudioServer) -> None:
    empty = MockLMStudioServer(models=[])
    with empty, LMStudioClient(empty.url) as client, ChatPanel(client) as chat:
        assert chat.model is None and "no models" in chat.status.value
        reply = chat.send("Hi")
        assert reply.wait(1) is None and "pick one in the Model list" in page_text(chat.widget)
