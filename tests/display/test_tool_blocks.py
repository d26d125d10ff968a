"""The tool-call block renderer: plain values in, a closed <details> block and one line of text out."""

from __future__ import annotations

from lm_notebook.display.tool_blocks import (
    BODY_CHARS,
    ToolBlock,
    arguments_text,
    duration_text,
    tool_block_html,
    tool_block_text,
    tool_blocks_bundle,
)


def test_text_names_the_call_its_result_and_its_time() -> None:
    line = tool_block_text("lookup", {"city": "Paris", "limit": 3}, output="2.1 million", duration=0.012)
    assert line == '🔧 lookup(city="Paris", limit=3) → 2.1 million  (12 ms)'
    failed = tool_block_text("lookup", '{"city": ', error="arguments are not JSON", duration=2.5)
    assert failed == '✗ lookup({"city":) → error: arguments are not JSON  (2.5 s)'
    assert tool_block_text("plot_it", {}, running=True) == "🔧 plot_it() → running…"


def test_html_is_a_closed_details_block_with_arguments_and_result() -> None:
    block = tool_block_html("lookup", {"city": "<Paris>"}, output="a & b", duration=0.5)
    assert block.startswith('<details class="lm-tool-call"') and "open" not in block.split(">")[0]
    assert "<code>lookup</code>" in block and "done" in block and "500 ms" in block
    assert "&lt;Paris&gt;" in block and "a &amp; b" in block and "<b>result</b>" in block


def test_html_of_an_error_shows_the_error_and_no_result() -> None:
    block = tool_block_html("nope", "{bad json", error="unknown tool 'nope'")
    assert "lm-tool-error" in block and "failed" in block and "<b>error</b>" in block
    assert "<b>result</b>" not in block and "{bad json" in block


def test_running_block_has_no_result_yet() -> None:
    block = tool_block_html("slow", {"n": 1}, running=True)
    assert "running…" in block and "<b>result</b>" not in block and "<b>error</b>" not in block


def test_long_output_is_cut_in_the_body_and_the_summary() -> None:
    block = tool_block_html("big", {}, output="x" * (BODY_CHARS + 10))
    assert "10 more characters" in block
    assert len(tool_block_text("big", {}, output="y" * 500)) < 120


def test_helpers_and_bundle() -> None:
    assert arguments_text(None) == "" and arguments_text("raw") == "raw"
    assert arguments_text({"x": object()}).startswith("x=<object")
    assert duration_text(None) == "" and duration_text(0.0004) == "0 ms"
    bundle = tool_blocks_bundle([ToolBlock("a", {"q": 1}, output="1"), ToolBlock("b", None, error="boom")])
    assert bundle["text/plain"].splitlines() == ["🔧 a(q=1) → 1", "✗ b() → error: boom"]
    assert bundle["text/html"].count("<details") == 2


def test_arguments_that_cannot_be_shown_still_make_a_block() -> None:
    from lm_notebook.display.tool_blocks import ToolBlock, tool_blocks_bundle

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    bundle = tool_blocks_bundle([ToolBlock("f", {"x": Unprintable()}, output="ok")])
    assert "x=<a Unprintable that cannot be shown>" in bundle["text/plain"]
    assert "&lt;a dict that cannot be shown&gt;" in bundle["text/html"]  # the whole dict: its repr raises
