"""The chat panel's verbs against the fake LM Studio server, over real loopback HTTP (no browser).

Where pacing matters, the server runs on a :class:`~lm_notebook.testing.ManualClock`: it sends a paced answer's tokens
only as the test moves its clock, so what has arrived when the test looks is decided by the test. Waits are on events
(a widget's value, the server's log), never on sleeps.
"""

from __future__ import annotations

import json

import pytest
from panel_page import CHAT, MODEL, Shown, advance, answer_view, chat_requests, page_text, slow, text_of

from lm_notebook import ChatPanel, LMStudioClient
from lm_notebook.chat.panel import ChatReply
from lm_notebook.chat.widgets import SUBMIT_MARK
from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec

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
    # the words of a notebook cell's footer ("first token", not "TTFT"), and the finish reason
    assert "tokens" in shown and "first token" in shown and "tok/s" in shown and "finish: stop" in shown
    assert "TTFT" not in shown
    answer_html = answer_view(panel).content.box.children[-1].value
    assert "<strong>bold</strong>" in answer_html and '<code class="language-python">' in answer_html
    assert not panel.busy and not panel.send_button.disabled and panel.stop_button.disabled
    assert not panel.retry_button.disabled


def test_the_answer_grows_while_it_streams(
    paced_panel: ChatPanel, paced: MockLMStudioServer, clock: ManualClock
) -> None:
    slow(paced, tokens=200, rate=100)
    reply = paced_panel.send("Tell me a story")
    shown = Shown(paced_panel)
    lengths = [len(text_of(shown.first_token()))]
    for _ in range(3):
        advance(clock, 0.2)  # 20 more tokens leave the server
        lengths.append(len(text_of(shown.wait_for(lambda v: len(text_of(v)) > lengths[-1]))))
        assert paced_panel.busy and not reply.done
        assert "streaming…" in page_text(paced_panel.widget)
    assert lengths == sorted(set(lengths)), "the answer is seen growing"
    advance(clock, 10)
    result = reply.wait(10)
    assert result is not None and result.completion_tokens == 200 and not result.stopped
    assert len(text_of(shown.values[-1])) > lengths[-1]  # the end: the whole answer, rendered once


def test_the_first_part_is_shown_at_once_then_repaints_wait_for_the_interval(
    paced_panel: ChatPanel, paced: MockLMStudioServer, clock: ManualClock
) -> None:
    paced_panel.repaint_interval = 3600.0  # no second live repaint can come during this test
    slow(paced, tokens=300, rate=100)
    reply = paced_panel.send("Tell me a story")
    shown = Shown(paced_panel)
    # the server's clock stands still: it has sent one token, and the panel shows it without waiting an interval
    first = shown.first_token()
    advance(clock, 10)  # the other 299 tokens arrive; none is repainted live, the end shows them all
    result = reply.wait(10)
    assert result is not None and result.completion_tokens == 300
    assert shown.values == [first, shown.values[-1]]  # one live repaint, then the final render
    assert text_of(shown.values[-1]).strip().startswith(text_of(first).strip())


def test_a_long_answer_repaints_only_its_unfinished_end(
    paced_panel: ChatPanel, paced: MockLMStudioServer, clock: ManualClock
) -> None:
    slow(paced, tokens=3000, rate=1000)
    reply = paced_panel.send("Write a lot")
    shown = Shown(paced_panel)
    shown.first_token()  # the server's pacing has begun
    for _ in range(5):  # 400 tokens at a time, each repainted before the next leave the server
        painted = len(shown.values)
        advance(clock, 0.4)
        shown.wait_for_count(painted + 1)
    live = shown.live
    assert live.frozen_blocks >= 1  # the finished beginning is frozen into widgets of its own, rendered once
    advance(clock, 10)
    result = reply.wait(20)
    assert result is not None
    assert len(result.content) > 10_000
    *streaming, final = [len(v) for v in shown.values]  # the last one is the whole answer, rendered once at the end
    assert len(streaming) >= 5, "there were repaints while streaming"
    assert max(streaming) < 6_000 < final, "each repaint sends the unfinished end, not the whole answer"
    assert live.frozen_blocks == 0 and len(live.box.children) == 1  # folded back into one piece at the end


def test_thinking_is_shown_collapsed_and_kept_out_of_history(
    panel: ChatPanel, lmstudio_mock: MockLMStudioServer
) -> None:
    panel.model = "openai/gpt-oss-20b"
    reply = panel.send("Think first")
    result = reply.wait(10)
    assert result is not None and result.reasoning and result.content
    view = answer_view(panel)
    assert view.thinking_box is not None and view.thinking_box.selected_index is None  # collapsed
    assert view.thinking_box.get_title(0) == "Thinking"
    assert result.reasoning not in json.dumps(panel.history)


# --- stop ----------------------------------------------------------------------------------------------------------

def test_stop_mid_answer_keeps_the_partial_answer_marked_stopped(
    paced_panel: ChatPanel, paced: MockLMStudioServer, clock: ManualClock
) -> None:
    slow(paced, tokens=2000, rate=100)
    reply = paced_panel.send("Ramble on")
    shown = Shown(paced_panel)
    shown.first_token()  # the server's pacing has begun
    advance(clock, 0.3)  # 30 tokens leave the server; the other 1,970 wait for a clock that will not move
    shown.wait_for(lambda v: len(text_of(v)) >= 20)
    paced_panel.stop()
    assert reply.done and reply.stopped and reply.state == "stopped"  # settled before stop() returned
    partial = reply.content
    assert len(partial) >= 20
    assert paced_panel.history[-1] == {"role": "assistant", "content": partial}
    assert "stopped" in page_text(paced_panel.widget)
    assert not paced_panel.busy and paced_panel.stop_button.disabled
    # the connection is gone: the server saw the client leave (no answer keeps growing behind the panel)
    paced.wait_until(lambda: paced.counters.abandoned == 1)
    slow(paced, tokens=5, rate=0)
    assert paced_panel.send("Go on").wait(10) is not None


def test_a_stopped_answer_keeps_its_token_count_in_the_footer(
    paced_panel: ChatPanel, paced: MockLMStudioServer, clock: ManualClock
) -> None:
    slow(paced, tokens=2000, rate=100)
    reply = paced_panel.send("Ramble on")
    shown = Shown(paced_panel)
    shown.first_token()
    advance(clock, 0.3)  # 30 more tokens leave the server, then it waits for a clock that will not move
    shown.wait_for(lambda v: len(text_of(v)) >= 20)
    paced_panel.stop()
    assert reply.done and reply.stopped
    footer = text_of(answer_view(paced_panel).footer.value).split(" · ")
    tokens = [fact for fact in footer if fact.endswith(" tokens")]
    assert tokens and tokens[0].startswith("≈") and int(tokens[0][1:].split()[0]) >= 20, footer  # the server sent
    assert footer[-1] == "stopped"  # no usage for a stopped stream: the parts that arrived are counted


def test_stop_while_waiting_for_the_first_token(
    paced_panel: ChatPanel, paced: MockLMStudioServer, clock: ManualClock
) -> None:
    paced.update_model(MODEL, ttft=10.0)  # on a clock that stands still: the first token never comes
    reply = paced_panel.send("Anyone there?")
    paced.wait_for_requests(1, path=CHAT)
    paced_panel.stop()
    assert reply.done and reply.stopped and reply.content == ""  # settled before stop() returned
    assert paced_panel.history == [{"role": "user", "content": "Anyone there?"}]  # kept, retryable
    paced.update_model(MODEL, ttft=0.0)
    again = paced_panel.retry().wait(10)
    assert again is not None and again.content
    assert [m["role"] for m in paced_panel.history] == ["user", "assistant"]


def test_closing_the_panel_stops_its_stream(paced_client: LMStudioClient, paced: MockLMStudioServer) -> None:
    slow(paced, tokens=2000, rate=100)
    chat = ChatPanel(paced_client)
    reply = chat.send("Talk forever")
    paced.wait_for_requests(1, path=CHAT)
    chat.widget.close()  # what closing the output (or Widget.close_all) does
    assert reply.done and reply.stopped
    assert "closed" in repr(chat)
    with pytest.raises(RuntimeError, match="closed"):
        chat.send("hello?")


def test_two_panels_are_independent(
    paced_client: LMStudioClient, paced: MockLMStudioServer, clock: ManualClock
) -> None:
    slow(paced, tokens=200, rate=100)
    first, second = ChatPanel(paced_client), ChatPanel(paced_client, system="Be brief.")
    try:
        a, b = first.send("one"), second.send("two")
        for chat in (first, second):  # each has its first token (all the server sends until its clock moves)
            Shown(chat).first_token()
        first.stop()
        assert a.done and a.stopped
        assert not b.done and second.busy  # the clock has not moved: the second answer is still streaming
        paced.wait_until(lambda: paced.counters.abandoned == 1)  # the first stream is gone, its pause with it
        advance(clock, 10)
        result = b.wait(10)
        assert result is not None and not result.stopped and result.completion_tokens == 200
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
    paced_panel: ChatPanel, paced: MockLMStudioServer
) -> None:
    panel = paced_panel
    with pytest.raises(RuntimeError, match="Nothing to retry"):
        panel.retry()
    with pytest.raises(ValueError, match="empty"):
        panel.send("   ")
    slow(paced, tokens=500, rate=100)  # the server's clock stands still: this answer streams until stopped
    reply = panel.send("busy now")
    with pytest.raises(RuntimeError, match="still answering"):
        panel.send("again")
    panel.retry_button.click()  # from the UI: a status message, not a traceback
    assert "still answering" in panel.status.value
    panel.input.value = "too soon" + SUBMIT_MARK  # Enter while busy: the text stays, the status says why
    assert panel.input.value == "too soon" and "Still answering" in panel.status.value
    panel.stop()
    assert reply.done and reply.stopped


def test_clear_starts_a_new_conversation(paced_panel: ChatPanel, paced: MockLMStudioServer) -> None:
    panel = paced_panel
    panel.system = "You are terse."
    assert panel.send("Hi").wait(10) is not None
    slow(paced, tokens=1000, rate=100)
    streaming = panel.send("And more")
    paced.wait_for_requests(2, path=CHAT)
    panel.clear()
    assert streaming.done and streaming.stopped
    assert panel.history == [{"role": "system", "content": "You are terse."}]
    assert panel._messages_box.children == () and "New conversation" in panel.status.value
    slow(paced, tokens=5, rate=0)
    assert panel.send("Fresh start").wait(10) is not None
    assert chat_requests(paced)[-1]["messages"] == [
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
