"""The panel's answer footer: the facts a notebook cell's footer says, in the same words, plus its error boxes."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from lm_notebook.chat.widgets import footer_html
from lm_notebook.client.types import ChatResult, Timings, Usage
from lm_notebook.display.footer import footer_text


def result(**kw: Any) -> ChatResult:
    kw.setdefault("model", "qwen")
    kw.setdefault("usage", Usage(prompt_tokens=3, completion_tokens=12, total_tokens=15))
    kw.setdefault("timings", Timings(time_to_first_token=0.25, total=1.0, tokens_per_second=16.0))
    kw.setdefault("finish_reason", "stop")
    return ChatResult("Hello", **kw)


def words_of(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


CASES = {
    "normal": result(),
    "stopped": result(stopped=True),
    "cut": result(finish_reason="length"),
    "no rate": result(timings=Timings(time_to_first_token=0.5, total=2.0)),
    "no usage": result(usage=None, timings=Timings()),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_cell_and_the_panel_say_the_same_words(case: ChatResult) -> None:
    # the panel's heading names the model and its footer adds the finish reason; every other fact is worded alike
    cell = footer_text(case).split(" · ")
    panel = words_of(footer_html(case, approx_tokens=0)).split(" · ")
    assert [w for w in panel if not w.startswith("finish: ")] == [w for w in cell if w != case.model]
    assert "TTFT" not in words_of(footer_html(case, approx_tokens=0))


def test_the_panel_footer_adds_the_error_and_the_empty_answer_warning() -> None:
    failed = footer_html(None, approx_tokens=0, error=ValueError("bad <thing>"))
    assert 'class="lmnb-error-box"' in failed and "bad &lt;thing&gt;" in failed
    empty = footer_html(ChatResult("", model="qwen/q3", finish_reason="stop"), approx_tokens=0)
    assert "empty answer" in empty and "context length" in empty
    # the advice names the model it is about, never a placeholder or a context length picked out of the air
    assert "lms load qwen/q3 --context-length N" in empty and "&lt;model&gt;" not in empty and "16384" not in empty
