"""The notebook layer: rendering an answer (pure), the live notebook view and its throttle, the terminal view.

The views' newer behaviour (loading, stopped counts, the fake server, every code block) is in test_answer_views.py.
"""

from __future__ import annotations

import io
import json
import threading

import pytest
from stream_view_doubles import CLEAR_AT_NEXT_OUTPUT, FakeClock, FakeStream, RecordingPublisher, live_text, result

from lm_notebook.client.stream import StreamPart
from lm_notebook.client.types import ChatResult, ModelInfo
from lm_notebook.display.answer import NotebookStreamView, TerminalStreamView, stream_into
from lm_notebook.display.footer import footer_text
from lm_notebook.display.model_table import model_table
from lm_notebook.display.render import (
    AnswerFormatError,
    RenderedChatResult,
    answer_code,
    close_open_fence,
    fenced,
    finish_as,
    parse_json_answer,
    render_answer,
    render_bundle,
)

# --- pure rendering ---------------------------------------------------------------------------------------------


def test_footer_has_model_tokens_ttft_rate_and_only_abnormal_endings() -> None:
    assert footer_text(result()) == "qwen · 12 tokens · first token 0.25 s · 16.0 tok/s"
    assert footer_text(result(finish_reason="length")).endswith(" · cut at max tokens")
    assert footer_text(result(stopped=True)).endswith(" · stopped")
    assert footer_text(result(), note="incomplete").endswith(" · incomplete")


def test_markdown_bundle_keeps_thinking_apart_and_collapsed() -> None:
    bundle = render_answer(result("The answer.", reasoning="I <think> hard & long"), "markdown")
    md = bundle["text/markdown"]
    assert md.startswith("<details><summary>Thinking (5 words)</summary>")
    assert "I &lt;think&gt; hard &amp; long" in md  # escaped: the thinking cannot break the page
    assert md.index("</details>") < md.index("The answer.")
    assert "<sub>qwen · 12 tokens" in md
    assert bundle["text/plain"].startswith("[thinking: 5 words, in .reasoning]\n\nThe answer.")
    assert "I <think>" not in bundle["text/plain"]


def test_live_bundle_shows_a_thinking_summary_only_and_a_cursor() -> None:
    bundle = render_bundle("Partial", "step one step two", "markdown", "m · 3 tokens · streaming…", live=True)
    assert "<summary>Thinking… (4 words)</summary></details>" in bundle["text/markdown"]
    assert "step one" not in bundle["text/markdown"]
    assert "Partial▌" in bundle["text/markdown"]


def test_an_open_code_fence_is_closed_so_the_footer_stays_outside() -> None:
    assert close_open_fence("a\n```python\nx = 1") == "a\n```python\nx = 1\n```"
    assert close_open_fence("```\nx\n```\n") == "```\nx\n```\n"
    assert close_open_fence("````\n```\n") == "````\n```\n````"
    md = render_answer(result("```python\nprint(1)", stopped=True), "markdown")["text/markdown"]
    assert md.index("print(1)\n```") < md.index("<sub>")


def test_code_format_keeps_the_language_and_survives_backticks() -> None:
    assert [(b.language, b.code) for b in answer_code("Here:\n```python\nx = 1\n```\nDone")] == [("python", "x = 1")]
    assert [(b.language, b.code) for b in answer_code("x = 1\n")] == [("", "x = 1")]
    md = render_answer(result("Sure!\n```sql\nSELECT 1;\n```"), "code")["text/markdown"]
    assert md.startswith("```sql\nSELECT 1;\n```")
    assert fenced("a ``` b").startswith("````\n")


def test_text_format_is_preformatted_html_escaped() -> None:
    bundle = render_answer(result("<b>not bold</b>"), "text")
    assert "&lt;b&gt;not bold&lt;/b&gt;" in bundle["text/html"]
    assert "text/markdown" not in bundle


def test_json_format_parses_shows_pretty_and_keeps_the_value() -> None:
    rendered = finish_as(result('```json\n{"a": [1, 2]}\n```'), "json")
    assert rendered.parsed == {"a": [1, 2]}
    assert isinstance(rendered, ChatResult)
    assert '```json\n{\n  "a": [\n    1,' in rendered._repr_mimebundle_()["text/markdown"]
    assert parse_json_answer(" [1] ") == [1]


def test_invalid_json_is_a_clear_error_that_keeps_the_raw_text() -> None:
    with pytest.raises(AnswerFormatError, match="not valid JSON") as info:
        finish_as(result("{'single': 'quotes'}"), "json")
    assert info.value.result.content == "{'single': 'quotes'}"
    assert info.value.result.display_format == "text"


def test_rendered_result_is_a_chat_result_with_a_plain_text_fallback() -> None:
    r = RenderedChatResult.of(result("hi"), "markdown")
    assert r == RenderedChatResult.of(result("hi"), "markdown")
    assert str(r) == "hi" and r.content == "hi"
    bundle = r._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/markdown"}


def test_model_table_marks_the_current_model_and_helps_when_empty() -> None:
    models = [
        ModelInfo("a", type="llm", state="loaded", loaded_context_length=4096, max_context_length=32768),
        ModelInfo("b", type="vlm", state="not-loaded", max_context_length=8192),
    ]
    plain = model_table(models, current="b", base_url="http://x")["text/plain"].splitlines()
    assert plain[1].startswith("   a ") and "4096 of 32768" in plain[1]
    assert plain[2].startswith("▶  b ")
    empty = model_table([], current=None, base_url="http://x")["text/plain"]
    assert "has no models" in empty and "lms get" in empty


# --- the live notebook view -------------------------------------------------------------------------------------


def test_live_view_is_one_display_updated_off_the_reader_then_cleared_at_the_next_output(
    publisher: RecordingPublisher,
) -> None:
    parts = [StreamPart("content", f"w{i} ") for i in range(300)]
    view = NotebookStreamView("markdown", "m", interval=0.05)
    stream_into(FakeStream(parts), view)  # type: ignore[arg-type]
    sent = publisher.sent
    first, live, last = sent[0], sent[1:-1], sent[-1]
    # the first message creates the live display (no empty placeholder a saved notebook would keep)
    assert first[1:] == (view.display_id, False)
    assert live_text(first).endswith("m · waiting for the first token…</sub>")
    assert all(display_id == view.display_id and update for _, display_id, update in live)
    assert last == (CLEAR_AT_NEXT_OUTPUT, None, False)  # the answer shown next replaces the live view
    assert len(live) < len(parts)  # never one repaint per part
    assert view.repaints == len(live)


def test_live_view_paints_the_first_token_at_once_then_at_most_once_an_interval(
    publisher: RecordingPublisher,
) -> None:
    clock = FakeClock()
    view = NotebookStreamView("markdown", "m", interval=0.5, clock=clock)
    view.start()
    view.add(StreamPart("content", "first "))
    # painted without the clock moving, on the reading thread itself: the first token waits for nothing
    assert len(publisher.sent) == 2 and "first ▌" in live_text(publisher.sent[1])
    assert publisher.threads == {threading.current_thread().name}
    for i in range(50):
        view.add(StreamPart("content", f"w{i} "))
    clock.advance(0.5)  # one interval later: the 50 parts are shown in one repaint
    publisher.wait_for(lambda sent: len(sent) == 3)
    assert "w49 ▌" in live_text(publisher.sent[2]) and "≈51 tokens · streaming…" in live_text(publisher.sent[2])
    assert publisher.threads - {threading.current_thread().name}, "later repaints come from the repaint thread"
    view.add(StreamPart("content", "late"))  # the clock stands still: no repaint for it before stop()
    view.stop()
    assert publisher.sent[3:] == [(CLEAR_AT_NEXT_OUTPUT, None, False)]


def test_live_view_shows_the_last_words_of_a_stall(publisher: RecordingPublisher) -> None:
    view = NotebookStreamView("markdown", "m", interval=0.02)
    view.start()
    view.add(StreamPart("content", "early words"))
    # nothing else arrives: the last words must still reach the screen, with no further token to push them
    publisher.wait_for(lambda sent: any("early words" in live_text(m) for m in sent))
    view.stop()
    assert publisher.sent[-1] == (CLEAR_AT_NEXT_OUTPUT, None, False)


def test_interrupt_closes_the_stream_and_ends_live_updates(publisher: RecordingPublisher) -> None:
    stream = FakeStream([StreamPart("content", "a"), StreamPart("content", "b")], interrupt_at=1)
    view = NotebookStreamView("markdown", "m", interval=0.05)
    with pytest.raises(KeyboardInterrupt):
        stream_into(stream, view)  # type: ignore[arg-type]
    assert stream.closed
    assert publisher.sent[-1] == (CLEAR_AT_NEXT_OUTPUT, None, False)
    n = len(publisher.sent)
    view.add(StreamPart("content", "after the end"))  # a stopped view repaints nothing, whatever arrives
    assert view._repainter.tick() is None
    assert len(publisher.sent) == n
    view.show_final(stream.result(), "markdown", note="stopped")
    assert publisher.sent[-1][1] is None and "· stopped</sub>" in publisher.sent[-1][0]["text/markdown"]


# --- the terminal view ------------------------------------------------------------------------------------------


def test_terminal_view_writes_tokens_as_they_come_then_only_the_footer(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    view = TerminalStreamView("markdown", "m")
    view.start()
    view.add(StreamPart("reasoning", "hmm"))
    view.add(StreamPart("content", "Hel"))
    assert out.getvalue() == "[thinking] hmm\n\nHel"  # written at once, not at the end
    view.add(StreamPart("content", "lo"))
    view.stop()
    view.show_final(result("Hello"), "markdown")
    assert out.getvalue() == "[thinking] hmm\n\nHello\n\n— qwen · 12 tokens · first token 0.25 s · 16.0 tok/s\n"


def test_terminal_view_writes_the_whole_answer_when_nothing_was_streamed(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    TerminalStreamView("json", "m").show_final(result('{"a": 1}'), "json", parsed={"a": 1})
    assert json.loads(out.getvalue().split("\n\n—")[0]) == {"a": 1}
