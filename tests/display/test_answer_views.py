"""What the answer views say beyond the text (issue 10): a model loading, a stopped answer's count, the fake server,
and every code block of ``-f code``."""

from __future__ import annotations

import dataclasses
import io
import threading
from types import SimpleNamespace

import pytest
from stream_view_doubles import CLEAR_AT_NEXT_OUTPUT, FakeClock, FakeStream, RecordingPublisher, live_text, result

from lm_notebook import LMStudioClient
from lm_notebook.client.stream import StreamPart
from lm_notebook.client.types import ModelInfo, Timings
from lm_notebook.display.answer import NotebookStreamView, TerminalStreamView, make_view, stream_into
from lm_notebook.display.footer import facts_text, footer_text, live_facts
from lm_notebook.display.model_table import FAKE_SERVER_CAPTION, model_table
from lm_notebook.display.render import CodeBlock, RenderedChatResult, finish_as, render_answer
from lm_notebook.testing import MockLMStudioServer, ModelSpec

NOTEBOOK = SimpleNamespace(kernel=object())  # what make_view looks for: a shell with a kernel


# --- item 6: a model loading just in time --------------------------------------------------------------------------


def test_a_loading_view_says_so_with_the_seconds_ticking_until_the_first_token(
    publisher: RecordingPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the thread sleeps as long as the clock says the next tick is away: a fake second would be a real one, so the
    # tick is made short and the clock is moved by whole seconds
    monkeypatch.setattr("lm_notebook.display.answer.LOADING_TICK", 0.01)
    clock = FakeClock()
    view = NotebookStreamView("markdown", "qwen", interval=0.5, clock=clock, loading=True)
    view.start()
    assert live_text(publisher.sent[0]).endswith("<sub>Loading qwen… 0 s</sub>")
    clock.advance(1.0)  # a second later, with nothing arrived: the repaint thread repaints the seconds
    publisher.wait_for(lambda sent: any("Loading qwen… 1 s" in live_text(m) for m in sent))
    clock.advance(1.0)
    publisher.wait_for(lambda sent: any("Loading qwen… 2 s" in live_text(m) for m in sent))
    assert "waiting for the first token" not in str(publisher.sent)
    assert publisher.threads - {threading.current_thread().name}, "the ticks come from the repaint thread"
    shown = len(publisher.sent)
    view.add(StreamPart("content", "Tides "))  # loaded: the first token is painted at once (the clock stands still)
    publisher.wait_for(lambda sent: any("Tides ▌" in live_text(m) for m in sent[shown:]))
    assert "qwen · ≈1 token · streaming…" in live_text(publisher.sent[-1])
    clock.advance(5.0)  # from here only new text repaints: no more ticks, and nothing waits to be painted
    assert view._repainter.tick() is None
    view.stop()
    assert publisher.sent[-1] == (CLEAR_AT_NEXT_OUTPUT, None, False)


def test_a_view_not_told_of_a_load_waits_for_the_first_token_without_ticking(publisher: RecordingPublisher) -> None:
    clock = FakeClock()
    view = NotebookStreamView("markdown", "qwen", clock=clock)
    view.start()
    assert live_text(publisher.sent[0]).endswith("<sub>qwen · waiting for the first token…</sub>")
    clock.advance(60)
    assert view._repainter.tick() is None  # nothing to repaint, however long it waits
    view.stop()


def test_make_view_passes_loading_and_fake_server_to_both_views(monkeypatch: pytest.MonkeyPatch) -> None:
    cell = make_view(NOTEBOOK, "markdown", "qwen", loading=True, fake_server=True)
    assert isinstance(cell, NotebookStreamView) and cell.loading and cell.fake_server
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    terminal = make_view(SimpleNamespace(), "markdown", "qwen", loading=True, fake_server=True)
    assert isinstance(terminal, TerminalStreamView) and terminal.loading and terminal.fake_server
    terminal.start()
    terminal.add(StreamPart("content", "Hi"))
    terminal.stop()
    assert out.getvalue() == "Loading qwen… (LM Studio loads it before it answers)\nHi"


def test_the_loading_fact_names_the_model_and_the_whole_seconds() -> None:
    assert facts_text(live_facts("qwen", 0, loading_for=3.7)) == "Loading qwen… 3 s"
    assert facts_text(live_facts(None, 0, loading_for=0.2)) == "Loading the model… 0 s"
    assert facts_text(live_facts("qwen", 2, loading_for=9.0)) == "qwen · ≈2 tokens · streaming…"  # it has loaded


# --- item 18: a stopped answer keeps its token count ---------------------------------------------------------------


def test_a_stopped_answer_keeps_the_count_of_what_arrived(publisher: RecordingPublisher) -> None:
    stream = FakeStream([StreamPart("content", f"w{i} ") for i in range(8)], interrupt_at=5)
    view = NotebookStreamView("markdown", "qwen", interval=0.05)
    with pytest.raises(KeyboardInterrupt):
        stream_into(stream, view)  # type: ignore[arg-type]
    stopped = stream.result()
    assert stopped.usage is None  # the server's count never came
    view.show_final(stopped, "markdown", note="stopped")
    assert publisher.sent[-1][0]["text/markdown"].endswith("<sub>qwen · ≈5 tokens · first token 0.25 s · stopped</sub>")


def test_a_stopped_answer_in_the_terminal_keeps_its_count(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    view = TerminalStreamView("markdown", "qwen")
    for word in ("one ", "two "):
        view.add(StreamPart("content", word))
    view.stop()
    view.show_final(result("one two ", usage=None, stopped=True, timings=Timings()), "markdown", note="stopped")
    assert out.getvalue().endswith("— qwen · ≈2 tokens · stopped\n")


def test_the_server_count_wins_over_the_approximate_one() -> None:
    assert render_answer(result("Hi"), "text", approx_tokens=99)["text/plain"].endswith(
        "— qwen · 12 tokens · first token 0.25 s · 16.0 tok/s"
    )


# --- item 24: -f code shows and keeps every block ------------------------------------------------------------------

TWO_BLOCKS = "First the SQL:\n```sql\nSELECT 1;\n```\nthen the caller:\n\n```python\nrun('x')\n```\nDone."


def test_the_result_holds_every_code_block_with_its_language() -> None:
    rendered = finish_as(result(TWO_BLOCKS), "code")
    assert rendered.code == (CodeBlock("sql", "SELECT 1;"), CodeBlock("python", "run('x')"))
    assert finish_as(result(TWO_BLOCKS), "markdown").code == rendered.code  # whatever the format
    assert finish_as(result("x = 1\n"), "code").code == (CodeBlock("", "x = 1"),)  # no fence: the answer is code
    assert finish_as(result("No code here."), "markdown").code == ()
    cut = RenderedChatResult.of(result("```python\ndef f():\n    return", stopped=True), "code")
    assert cut.code == (CodeBlock("python", "def f():\n    return"),)  # a block cut open is kept


def test_the_code_format_shows_every_block() -> None:
    bundle = finish_as(result(TWO_BLOCKS), "code")._repr_mimebundle_()
    assert bundle["text/markdown"].startswith("```sql\nSELECT 1;\n```\n\n```python\nrun('x')\n```\n\n<sub>qwen")
    assert bundle["text/plain"].startswith("SELECT 1;\n\nrun('x')\n\n— qwen")
    assert "First the SQL" not in bundle["text/markdown"]


# --- item 26: the bundled fake server says so ----------------------------------------------------------------------


def test_the_model_table_says_the_models_are_the_fake_servers_and_how_to_reach_lm_studio() -> None:
    models = [ModelInfo("qwen2.5-7b-instruct", type="llm", state="loaded")]
    fake = model_table(models, current=None, base_url="http://127.0.0.1:1234", fake_server=True)
    assert fake["text/plain"].endswith("\n" + FAKE_SERVER_CAPTION)
    assert "These models are the bundled fake LM Studio server&#x27;s: its answers are canned." in fake["text/html"]
    assert "LMSTUDIO_BASE_URL (or %config LMMagics.base_url)" in FAKE_SERVER_CAPTION
    empty = model_table([], current=None, base_url="http://x", fake_server=True)
    assert "has no models" in empty["text/plain"] and FAKE_SERVER_CAPTION in empty["text/plain"]
    real = model_table(models, current=None, base_url="http://x")
    assert "fake" not in real["text/plain"] + real["text/html"]


def test_the_footer_says_fake_server_live_and_final(publisher: RecordingPublisher) -> None:
    assert footer_text(result(), fake_server=True) == "qwen · 12 tokens · first token 0.25 s · 16.0 tok/s · fake server"
    assert "fake" not in footer_text(result())
    final = finish_as(result("Hi"), "markdown", fake_server=True)
    assert final.fake_server and final._repr_mimebundle_()["text/markdown"].endswith("· fake server</sub>")
    assert final == finish_as(result("Hi"), "markdown")  # where it came from is not part of the answer
    view = NotebookStreamView("markdown", "qwen", fake_server=True)
    stream_into(FakeStream([StreamPart("content", "Hi")]), view)  # type: ignore[arg-type]
    assert live_text(publisher.sent[0]).endswith("qwen · waiting for the first token… · fake server</sub>")
    view.show_final(result("Hi", stopped=True), "markdown")
    assert publisher.sent[-1][0]["text/markdown"].endswith("· stopped · fake server</sub>")


# --- found in review (session 3): a view that fails to start -------------------------------------------------------


def test_a_view_that_fails_to_start_closes_the_stream_and_ends_its_live_output(
    publisher: RecordingPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = FakeStream([StreamPart("content", "Hi")])
    view = NotebookStreamView("markdown", "qwen", interval=0.05)

    def no_thread() -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(view._repainter, "start", no_thread)  # after the live output was displayed
    with pytest.raises(RuntimeError, match="can't start new thread"):
        stream_into(stream, view)  # type: ignore[arg-type]
    assert stream.closed  # the connection is not left open
    assert view._repainter.stopped and publisher.sent[-1][0] == CLEAR_AT_NEXT_OUTPUT  # the live view goes


# --- issue 17: a coalesced stream's text comes a read at a time; the footer counts its tokens -------------------


def test_a_view_reading_a_coalesced_stream_counts_its_tokens_not_its_parts(publisher: RecordingPublisher) -> None:
    tokens = 2000
    with MockLMStudioServer(models=[ModelSpec("m", loaded=True, reply_tokens=tokens)]) as server, \
            LMStudioClient(server.url) as client, client.stream_chat("Hi", model="m") as stream:
        view = NotebookStreamView("markdown", "m", interval=0.05)
        parts: list[StreamPart] = []
        add = view.add
        view.add = lambda part: (parts.append(part), add(part))[1]  # type: ignore[method-assign]
        assert view.read_from(stream) is stream
        result = stream_into(stream, view)
    assert "".join(p.text for p in parts) == result.content and len(parts) < tokens  # a piece a read
    assert view.tokens == stream.deltas == tokens
    view.show_final(dataclasses.replace(result, usage=None), "markdown", note="stopped")  # as if no count came
    assert f"≈{tokens} tokens" in publisher.sent[-1][0]["text/markdown"]


# --- issue 17: nothing but the request on the way to the first token ------------------------------------------------


def test_each_live_output_has_its_own_id_and_making_a_view_reads_no_randomness(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Display ids are unique (a frontend updates every output shown with an id), and a view is made without a
    system call: in a kernel each one lets the kernel's other threads take the GIL first, on the way to the first
    token (a uuid4 a view read os.urandom)."""
    import os
    import subprocess
    import sys

    def no_urandom(n: int) -> bytes:
        raise AssertionError("os.urandom read while a view is made")

    monkeypatch.setattr(os, "urandom", no_urandom)
    views = [NotebookStreamView("markdown", "m") for _ in range(500)]
    monkeypatch.undo()
    ids = [v.display_id for v in views]
    assert len(set(ids)) == len(ids)
    other = subprocess.run(
        [sys.executable, "-c", "from lm_notebook.display.answer import new_display_id as n; print(n())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # another process (a restarted kernel): another prefix, so no clash with this one's ids
    assert other and other not in ids and other[:20] != ids[0][:20]
