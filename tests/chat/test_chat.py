"""The chat panel's verbs against the fake LM Studio server, over real loopback HTTP (no browser)."""

from __future__ import annotations

import html
import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lm_notebook import ChatPanel, LMStudioClient
from lm_notebook.chat.panel import ChatReply
from lm_notebook.chat.widgets import SUBMIT_MARK
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

MODEL = "qwen2.5-7b-instruct"


@pytest.fixture
def panel(lmstudio_client: LMStudioClient) -> Iterator[ChatPanel]:
    chat = ChatPanel(lmstudio_client)
    yield chat
    chat.close()


def page_text(widget: Any) -> str:
    """Every HTML value in the widget tree, tags removed (what a reader of the panel sees)."""
    values: list[str] = []

    def walk(w: Any) -> None:
        value = getattr(w, "value", None)
        if type(w).__name__ == "HTML" and isinstance(value, str) and not value.startswith("<style>"):
            values.append(value)
        for child in getattr(w, "children", ()):
            walk(child)

    walk(widget)
    return html.unescape(re.sub(r"<[^>]+>", " ", " ".join(values)))


def chat_requests(server: MockLMStudioServer) -> list[dict[str, Any]]:
    return [r.json for r in server.requests if r.path == "/v1/chat/completions"]


def slow(server: MockLMStudioServer, *, tokens: int, rate: float, model: str = MODEL) -> None:
    server.update_model(model, tokens_per_second=rate, reply_tokens=tokens)


# --- streaming -----------------------------------------------------------------------------------------------------

def test_send_streams_an_answer_into_the_panel_and_history(panel: ChatPanel, lmstudio_mock: MockLMStudioServer) -> None:
    lmstudio_mock.script(MODEL, "Hello! Here is `code` and **bold**.\n\n```python\nprint('hi')\n```")
    reply = panel.send("Say hello")
    assert isinstance(reply, ChatReply)
    result = reply.wait(10)
    assert result is not None and reply.ok and reply.state == "answered"
    assert result.content.startswith("Hello!")
    assert panel.history == [
        {"role": "user", "content": "Say hello"},
        {"role": "assistant", "content": result.content},
    ]
    shown = page_text(panel.widget)
    assert "Say hello" in shown and "print('hi')" in shown
    assert "tokens" in shown and "TTFT" in shown and "tok/s" in shown and "finish: stop" in shown
    answer_html = panel._entries[-1].view.content.box.children[-1].value
    assert "<strong>bold</strong>" in answer_html and '<code class="language-python">' in answer_html
    assert not panel.busy and not panel.send_button.disabled and panel.stop_button.disabled
    assert not panel.retry_button.disabled


def test_the_answer_grows_while_it_streams_with_throttled_repaints(
    panel: ChatPanel, lmstudio_mock: MockLMStudioServer
) -> None:
    slow(lmstudio_mock, tokens=150, rate=200)  # about 0.75 s
    reply = panel.send("Tell me a story")
    tail = panel._entries[-1].view.content._tail
    seen: list[str] = []
    tail.observe(lambda change: seen.append(change["new"]), names="value")
    lengths: list[int] = []
    while not reply.done:
        lengths.append(len(reply.content))
        assert panel.busy or reply.done
        time.sleep(0.05)
    assert reply.ok and len(reply.content) > 0
    growing = sorted(set(lengths))
    assert len(growing) >= 3, "the reply should be seen growing"
    elapsed = reply.result.timings.total if reply.result and reply.result.timings.total else 1.0
    # a few repaints a second at most (plus the final render), never one per token
    assert 2 <= len(seen) <= elapsed / 0.2 + 3 < 150


def test_a_long_answer_repaints_only_its_unfinished_end(panel: ChatPanel, lmstudio_mock: MockLMStudioServer) -> None:
    slow(lmstudio_mock, tokens=3000, rate=4000)
    reply = panel.send("Write a lot")
    live = panel._entries[-1].view.content
    sizes: list[int] = []
    live._tail.observe(lambda change: sizes.append(len(change["new"])), names="value")
    result = reply.wait(20)
    assert result is not None
    assert len(result.content) > 10_000
    streaming_sizes = sizes[:-1]  # the last one is the whole answer, rendered once at the end
    assert streaming_sizes, "there were repaints while streaming"
    assert max(streaming_sizes) < 6_000, "each repaint sends the unfinished end, not the whole answer"
    assert live.frozen_blocks == 0 and len(live.box.children) == 1  # folded back into one piece at the end


def test_thinking_is_shown_collapsed_and_kept_out_of_history(
    panel: ChatPanel, lmstudio_mock: MockLMStudioServer
) -> None:
    panel.model = "openai/gpt-oss-20b"
    reply = panel.send("Think first")
    result = reply.wait(10)
    assert result is not None and result.reasoning and result.content
    view = panel._entries[-1].view
    assert view.thinking_box is not None and view.thinking_box.selected_index is None  # collapsed
    assert view.thinking_box.get_title(0) == "Thinking"
    assert result.reasoning not in json.dumps(panel.history)


# --- stop ----------------------------------------------------------------------------------------------------------

def test_stop_mid_answer_keeps_the_partial_answer_marked_stopped(
    panel: ChatPanel, lmstudio_mock: MockLMStudioServer
) -> None:
    slow(lmstudio_mock, tokens=2000, rate=100)  # 20 s if never stopped
    reply = panel.send("Ramble on")
    deadline = time.monotonic() + 5
    while len(reply.content) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    panel.stop()
    assert reply.wait(0.6) is not None
    assert time.monotonic() - started < 0.6
    assert reply.stopped and reply.state == "stopped"
    partial = reply.content
    assert 20 <= len(partial) < 2000
    assert panel.history[-1] == {"role": "assistant", "content": partial}
    assert "stopped" in page_text(panel.widget)
    assert not panel.busy and panel.stop_button.disabled
    # the connection is gone: the server stops sending (no answer keeps growing behind the panel)
    time.sleep(0.3)
    assert reply.content == partial
    lmstudio_mock.update_model(MODEL, tokens_per_second=0, reply_tokens=5)
    assert panel.send("Go on").wait(10) is not None


def test_stop_while_waiting_for_the_first_token(panel: ChatPanel, lmstudio_mock: MockLMStudioServer) -> None:
    lmstudio_mock.update_model(MODEL, ttft=10.0)
    reply = panel.send("Anyone there?")
    time.sleep(0.2)
    started = time.monotonic()
    panel.stop()
    assert reply.wait(0.7) is not None and reply.stopped and reply.content == ""
    assert time.monotonic() - started < 0.7
    assert panel.history == [{"role": "user", "content": "Anyone there?"}]  # kept, retryable
    lmstudio_mock.update_model(MODEL, ttft=0.0)
    again = panel.retry().wait(10)
    assert again is not None and again.content
    assert [m["role"] for m in panel.history] == ["user", "assistant"]


def test_closing_the_panel_stops_its_stream(lmstudio_client: LMStudioClient, lmstudio_mock: MockLMStudioServer) -> None:
    slow(lmstudio_mock, tokens=2000, rate=100)
    chat = ChatPanel(lmstudio_client)
    reply = chat.send("Talk forever")
    time.sleep(0.3)
    chat.widget.close()  # what closing the output (or Widget.close_all) does
    assert reply.wait(0.7) is not None and reply.stopped
    assert "closed" in repr(chat)
    with pytest.raises(RuntimeError, match="closed"):
        chat.send("hello?")


def test_two_panels_are_independent(lmstudio_client: LMStudioClient, lmstudio_mock: MockLMStudioServer) -> None:
    slow(lmstudio_mock, tokens=200, rate=250)
    first, second = ChatPanel(lmstudio_client), ChatPanel(lmstudio_client, system="Be brief.")
    try:
        a, b = first.send("one"), second.send("two")
        time.sleep(0.2)
        first.stop()
        assert a.wait(1) is not None and a.stopped
        assert not b.done and second.busy
        result = b.wait(10)
        assert result is not None and not result.stopped
        assert first.history[0] == {"role": "user", "content": "one"}
        assert second.history[0] == {"role": "system", "content": "Be brief."}
        assert len(first.history) == 2 and len(second.history) == 3
    finally:
        first.close()
        second.close()


# --- retry, clear, model switch ------------------------------------------------------------------------------------

def test_retry_regenerates_the_last_answer(panel: ChatPanel, lmstudio_mock: MockLMStudioServer) -> None:
    lmstudio_mock.script(MODEL, "First take.", "Second take.")
    assert panel.send("Question").wait(10) is not None
    assert panel.retry().wait(10) is not None
    assert panel.history == [
        {"role": "user", "content": "Question"},
        {"role": "assistant", "content": "Second take."},
    ]
    assert "First take." not in page_text(panel.widget)
    sent = chat_requests(lmstudio_mock)[-1]["messages"]
    assert sent == [{"role": "user", "content": "Question"}]


def test_retry_and_send_refuse_politely_when_they_cannot_run(
    panel: ChatPanel, lmstudio_mock: MockLMStudioServer
) -> None:
    with pytest.raises(RuntimeError, match="Nothing to retry"):
        panel.retry()
    with pytest.raises(ValueError, match="empty"):
        panel.send("   ")
    slow(lmstudio_mock, tokens=500, rate=100)
    reply = panel.send("busy now")
    with pytest.raises(RuntimeError, match="still answering"):
        panel.send("again")
    panel.retry_button.click()  # from the UI: a status message, not a traceback
    assert "still answering" in panel.status.value
    panel.stop()
    assert reply.wait(1) is not None


def test_clear_starts_a_new_conversation(panel: ChatPanel, lmstudio_mock: MockLMStudioServer) -> None:
    panel.system = "You are terse."
    assert panel.send("Hi").wait(10) is not None
    slow(lmstudio_mock, tokens=1000, rate=100)
    streaming = panel.send("And more")
    time.sleep(0.2)
    panel.clear()
    assert streaming.done and streaming.stopped
    assert panel.history == [{"role": "system", "content": "You are terse."}]
    assert panel._messages_box.children == ()
    lmstudio_mock.update_model(MODEL, tokens_per_second=0, reply_tokens=5)
    assert panel.send("Fresh start").wait(10) is not None
    assert chat_requests(lmstudio_mock)[-1]["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Fresh start"},
    ]


def test_model_list_comes_from_the_server_and_switching_model_is_heard(
    panel: ChatPanel, lmstudio_mock: MockLMStudioServer
) -> None:
    ids = panel.refresh_models()  # the panel fills its list in the background; this waits for it
    assert ids[0] == MODEL and "openai/gpt-oss-20b" in ids
    assert "text-embedding-nomic-embed-text-v1.5" not in ids  # not a chat model
    assert dict(panel.model_dropdown.options)[f"{MODEL}  ●"] == MODEL  # loaded ones are marked
    assert panel.send("Hi").wait(10) is not None
    panel.model_dropdown.value = "google/gemma-3-4b"  # what picking in the list does
    assert panel.model == "google/gemma-3-4b"
    result = panel.send("And you?").wait(10)
    assert result is not None
    body = chat_requests(lmstudio_mock)[-1]
    assert body["model"] == "google/gemma-3-4b"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]  # the conversation goes on
    lmstudio_mock.add_model(ModelSpec("fresh-model"))
    assert "fresh-model" in panel.refresh_models()


def test_parameters_come_from_the_controls(lmstudio_client: LMStudioClient, lmstudio_mock: MockLMStudioServer) -> None:
    with ChatPanel(lmstudio_client, temperature=0.2, max_tokens=7, seed=42) as chat:
        assert chat.send("Short").wait(10) is not None
        body = chat_requests(lmstudio_mock)[-1]
        assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.2, 7, 42)
        assert chat.replies[-1].result is not None and chat.replies[-1].result.finish_reason == "length"
        assert "cut at max tokens" in page_text(chat.widget)
        chat.temperature_slider.value = 1.1
        chat.max_tokens_input.value = -1
        assert chat.send("Long").wait(10) is not None
        body = chat_requests(lmstudio_mock)[-1]
        assert (body["temperature"], body["max_tokens"]) == (1.1, -1)


def test_enter_in_the_input_sends_and_clears_it(panel: ChatPanel, lmstudio_mock: MockLMStudioServer) -> None:
    lmstudio_mock.script(MODEL, "Got it.")
    panel.input.value = "line one\nline two"  # Shift+Enter: a newline, nothing sent
    assert panel.history == []
    panel.input.value = "line one\nline two" + SUBMIT_MARK  # what the page's Enter handler syncs
    assert panel.input.value == ""
    assert panel.replies[-1].wait(10) is not None
    assert panel.history[0] == {"role": "user", "content": "line one\nline two"}
    panel.input.value = "sent with the button"
    panel.send_button.click()
    assert panel.input.value == ""
    assert panel.replies[-1].wait(10) is not None
    assert panel.history[-2]["content"] == "sent with the button"


# --- errors --------------------------------------------------------------------------------------------------------

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


# --- exports -------------------------------------------------------------------------------------------------------

def test_exports(panel: ChatPanel, lmstudio_mock: MockLMStudioServer) -> None:
    panel.system = "Be kind."
    lmstudio_mock.script(MODEL, "Sure: *done*.")
    assert panel.send("Do it").wait(10) is not None
    lmstudio_mock.set_fault("500", times=1)
    assert panel.send("Again").wait(10) is None
    md = panel.to_markdown()
    assert md.startswith("**System:** Be kind.")
    assert "### You\n\nDo it" in md and f"### {MODEL}\n\nSure: *done*." in md
    assert "> ⚠ LM Studio" in md
    frame = panel.to_dataframe()
    assert list(frame["role"]) == ["system", "user", "assistant", "user", "assistant"]
    assert frame.loc[2, "finish_reason"] == "stop" and frame.loc[2, "completion_tokens"] > 0
    assert frame.loc[4, "error"].startswith("LM Studio") and frame["stopped"].sum() == 0
    assert repr(panel) == f"<ChatPanel model={MODEL!r} messages=4>"
    bundle = panel._repr_mimebundle_()
    assert bundle is not None and "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == repr(panel)


# --- %lm_chat ------------------------------------------------------------------------------------------------------
