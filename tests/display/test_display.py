"""The notebook layer: rendering an answer (pure), the live notebook view and its throttle, the terminal view."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell

from lm_notebook.client.stream import StreamPart
from lm_notebook.client.types import ChatResult, ModelInfo, Timings, Usage
from lm_notebook.display.answer import (
    PLACEHOLDER,
    AnswerFormatError,
    NotebookStreamView,
    RenderedChatResult,
    TerminalStreamView,
    close_open_fence,
    fenced,
    finish_as,
    footer_text,
    model_table,
    parse_json_answer,
    render_answer,
    render_bundle,
    split_code,
    stream_into,
)


def result(content: str = "Hello **world**", **kw: Any) -> ChatResult:
    kw.setdefault("model", "qwen")
    kw.setdefault("usage", Usage(prompt_tokens=3, completion_tokens=12, total_tokens=15))
    kw.setdefault("timings", Timings(time_to_first_token=0.25, total=1.0, tokens_per_second=16.0))
    kw.setdefault("finish_reason", "stop")
    return ChatResult(content, **kw)


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
    assert split_code("Here:\n```python\nx = 1\n```\nDone") == ("python", "x = 1")
    assert split_code("x = 1\n") == ("", "x = 1")
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


class RecordingPublisher(DisplayPublisher):
    """Records what a kernel would send: (data, display_id, update)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[dict[str, Any], str | None, bool]] = []
        self.threads: set[str] = set()

    def publish(self, data: Any, metadata: Any = None, source: Any = None, *, transient: Any = None,
                update: bool = False, **kw: Any) -> None:
        self.sent.append((data, (transient or {}).get("display_id"), update))
        self.threads.add(threading.current_thread().name)


@pytest.fixture
def publisher() -> Iterator[RecordingPublisher]:
    shell = InteractiveShell.instance()
    saved = shell.display_pub
    shell.display_pub = RecordingPublisher()
    try:
        yield shell.display_pub
    finally:
        shell.display_pub = saved


class FakeStream:
    """What stream_into needs from a ChatStream: parts at a given pace, close(), result()."""

    def __init__(self, parts: list[StreamPart], *, pace: float = 0.0, interrupt_at: int | None = None) -> None:
        self.parts = parts
        self.pace = pace
        self.interrupt_at = interrupt_at
        self.closed = False
        self.sent: list[StreamPart] = []

    def iter_parts(self) -> Iterator[StreamPart]:
        for i, part in enumerate(self.parts):
            if i == self.interrupt_at:
                raise KeyboardInterrupt
            if self.pace:
                time.sleep(self.pace)
            self.sent.append(part)
            yield part

    def close(self) -> None:
        self.closed = True

    def result(self) -> ChatResult:
        return result("".join(p.text for p in self.sent if p.kind == "content"), stopped=self.closed)


def test_live_view_starts_and_ends_with_the_placeholder_and_throttles(publisher: RecordingPublisher) -> None:
    parts = [StreamPart("content", f"w{i} ") for i in range(300)]
    view = NotebookStreamView("markdown", "m", interval=0.05)
    started = time.perf_counter()
    stream_into(FakeStream(parts, pace=0.001), view)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    sent = publisher.sent
    assert sent[0] == (PLACEHOLDER, view.display_id, False)  # what nbval and the saved notebook keep
    assert sent[-1] == (PLACEHOLDER, view.display_id, True)  # the live output empties itself
    assert all(display_id == view.display_id and update for _, display_id, update in sent[1:])
    live = sent[1:-1]
    assert live[0][0]["text/markdown"].endswith("m · waiting for the first token…</sub>")
    # ≤ one repaint per interval (+ the "waiting" one), however many parts came
    assert len(live) <= elapsed / 0.05 + 2
    assert len(live) >= 3
    assert any(name != threading.current_thread().name for name in publisher.threads)  # repaints off the reader


def test_live_view_repaints_after_a_stall_without_new_tokens(publisher: RecordingPublisher) -> None:
    view = NotebookStreamView("markdown", "m", interval=0.02)
    view.start()
    view.add(StreamPart("content", "early words"))
    time.sleep(0.15)  # nothing else arrives: the last words must still be on screen
    shown = publisher.sent[-1][0]["text/markdown"]
    view.stop()
    assert "early words" in shown


def test_interrupt_closes_the_stream_and_ends_live_updates(publisher: RecordingPublisher) -> None:
    stream = FakeStream([StreamPart("content", "a"), StreamPart("content", "b")], interrupt_at=1)
    view = NotebookStreamView("markdown", "m", interval=0.05)
    with pytest.raises(KeyboardInterrupt):
        stream_into(stream, view)  # type: ignore[arg-type]
    assert stream.closed
    assert publisher.sent[-1] == (PLACEHOLDER, view.display_id, True)
    n = len(publisher.sent)
    time.sleep(0.12)
    assert len(publisher.sent) == n  # the repaint thread is gone
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
