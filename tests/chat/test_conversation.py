"""The chat's data model with plain values: messages, history, what the model is sent, retry, outcomes, exports."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from lm_notebook.chat.conversation import (
    AnswerOutcome,
    ChatReply,
    Conversation,
    Draft,
    DraftText,
    answer_outcome,
    as_stopped,
)
from lm_notebook.chat.export import conversation_dataframe, conversation_markdown
from lm_notebook.client.errors import LMStudioStreamError, ServerError
from lm_notebook.client.types import ChatResult, Usage


def answered(text: str, **kw: object) -> AnswerOutcome:
    result = ChatResult(text, model="m", finish_reason="stop", **kw)  # type: ignore[arg-type]
    return AnswerOutcome(text, result.reasoning, result, None)


def failed(error: Exception) -> AnswerOutcome:
    return AnswerOutcome("", "", None, error)


def test_the_model_imports_no_widgets_at_run_time() -> None:
    code = "import sys, lm_notebook.chat.conversation, lm_notebook.chat.export; print('ipywidgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_history_has_the_system_prompt_then_the_messages_the_model_may_see() -> None:
    chat = Conversation()
    chat.add_user("Hi")
    answer, reply = chat.add_answer("m")
    answer.record(answered("Hello!"))
    assert reply.prompt == "Hi" and reply.model == "m" and not reply.done  # the panel settles it after showing it
    assert chat.history("Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    assert chat.history("  ") == chat.history("") == chat.history("Be brief.")[1:]  # a blank system prompt is none
    assert len(chat) == 2 and chat.replies == [reply] and chat.has_user_message


def test_failed_and_empty_answers_stay_out_of_history_and_unanswered_questions_are_joined() -> None:
    chat = Conversation()
    chat.add_user("first question")
    failed_answer, _ = chat.add_answer("m")
    failed_answer.record(failed(ServerError("LM Studio answered HTTP 500: boom", status_code=500)))
    chat.add_user("second question")
    empty, _ = chat.add_answer("m")
    empty.record(AnswerOutcome("", "", as_stopped(ChatResult("")), None))  # stopped before any text
    chat.add_user("third")
    assert [m["role"] for m in chat.history("")] == ["user", "user", "user"]
    assert chat.request_messages("sys") == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "first question\n\nsecond question\n\nthird"},
    ]
    assert failed_answer.error is not None and not failed_answer.in_history


def test_retry_drops_what_follows_the_last_user_message() -> None:
    chat = Conversation()
    with pytest.raises(RuntimeError, match="Nothing to retry: send a message first"):
        chat.drop_answers_to_last_message()
    chat.add_user("Question")
    first, _ = chat.add_answer("m")
    first.record(answered("First take."))
    assert chat.drop_answers_to_last_message() == [first]
    assert chat.history("") == [{"role": "user", "content": "Question"}]
    assert chat.drop_answers_to_last_message() == []  # nothing after it: nothing dropped, still retryable
    question = chat.entries[0]
    assert chat.clear() == [question]
    assert chat.entries == [] and not chat.has_user_message and len(chat) == 0


def test_an_outcome_keeps_the_servers_text_or_what_streamed() -> None:
    draft = DraftText("streamed", "thought", parts=2)
    done = ChatResult("final text", reasoning="r", model="m")
    assert answer_outcome(done, None, draft, model="m") == AnswerOutcome("final text", "r", done, None, 2)
    partial = ChatResult("partial", model="m")
    broken = LMStudioStreamError("dropped", partial=partial, dropped=True)
    kept = answer_outcome(None, broken, draft, model="m")
    assert (kept.content, kept.result, kept.error) == ("partial", None, broken)
    plain_error = ValueError("a bug")
    assert answer_outcome(None, plain_error, draft, model="m").content == "streamed"
    # stopped before the stream existed: an empty stopped result, with what had streamed
    early = answer_outcome(None, None, draft, model="m")
    assert early.result is not None and early.result.stopped and early.result.model == "m"
    assert (early.content, early.reasoning, early.result.content) == ("streamed", "thought", "streamed")
    assert as_stopped(done).stopped and as_stopped(early.result) is early.result


def test_a_draft_collects_text_parts_from_one_thread_for_readers_on_another() -> None:
    draft = Draft()
    assert draft.add("reasoning", "hmm ") and draft.add("content", "Hel") and draft.add("content", "lo")
    assert not draft.add("tool_call", "{}")  # not text: not counted
    assert draft.text() == DraftText("Hello", "hmm ", 3)
    writer = threading.Thread(target=lambda: [draft.add("content", "x") for _ in range(1000)])
    writer.start()
    lengths = [len(draft.text().content) for _ in range(50)]
    writer.join()
    assert lengths == sorted(lengths) and draft.text().parts == 1003


def test_a_reply_reads_the_draft_while_streaming_then_its_result() -> None:
    draft = Draft()
    reply = ChatReply("Hi", "m", draft)
    draft.add("content", "Hel")
    assert (reply.content, reply.state, reply.done, reply.ok) == ("Hel", "streaming", False, False)
    with pytest.raises(TimeoutError, match="still streaming after 0 s; call stop"):
        reply.wait(0)
    assert repr(reply) == "<ChatReply streaming model='m', 3 chars>"
    result = ChatResult("Hello", model="m", stopped=True, usage=Usage(1, 2, 3))
    reply.settle(result, None)
    reply.settle(None, ValueError("late"))  # once settled, it stays
    assert reply.wait(0) is result and reply.content == "Hello" and reply.stopped and reply.ok
    assert reply.state == "stopped"
    failed_reply = ChatReply("Hi", "m")
    failed_reply.settle(None, ServerError("LM Studio answered HTTP 500: boom", status_code=500))
    assert failed_reply.state == "failed" and failed_reply.wait() is None and failed_reply.content == ""
    assert repr(failed_reply).startswith("<ChatReply failed model='m': ")


def test_exports_are_plain_functions_of_the_entries() -> None:
    chat = Conversation()
    chat.add_user("Do it")
    answer, _ = chat.add_answer("m")
    answer.record(AnswerOutcome("Sure.", "thinking", ChatResult("Sure.", reasoning="thinking", model="m",
                                                               finish_reason="stop"), None))
    chat.add_user("Again")
    broken, _ = chat.add_answer("m")
    broken.record(failed(ServerError("LM Studio answered HTTP 500: boom", status_code=500)))
    md = conversation_markdown("Be kind.", chat.entries)
    assert md.startswith("**System:** Be kind.\n\n### You\n\nDo it\n\n### m\n\n<details><summary>Thinking")
    assert "Sure." in md and "> ⚠ " in md
    frame = conversation_dataframe("Be kind.", chat.entries)
    assert list(frame["role"]) == ["system", "user", "assistant", "user", "assistant"]
    assert frame.loc[2, "finish_reason"] == "stop" and frame.loc[2, "reasoning"] == "thinking"
    assert frame.loc[4, "error"] is not None and not frame["stopped"].any()
