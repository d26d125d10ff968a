"""The facts under an answer: listed once, said alike in plain text (a notebook cell) and in HTML (the chat panel)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from lm_notebook.client.types import ChatResult, Timings, Usage
from lm_notebook.display.footer import facts_html, facts_text, footer_facts, footer_text, live_facts


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
    "one token": result(usage=Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2)),
    "markup in the model id": result(model="<b>&model</b>"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_text_and_html_formatters_say_the_same_facts(case: ChatResult) -> None:
    for facts in (
        footer_facts(case),
        footer_facts(case, approx_tokens=7, with_finish=True, fake_server=True),
        live_facts("m", 3),
        live_facts("m", 0, loading_for=2.0, fake_server=True),
    ):
        assert words_of(facts_html(facts)) == facts_text(facts)
        assert facts_html(facts).count("lmnb-fact-") == len(facts)


def test_the_facts_of_a_finished_answer() -> None:
    assert footer_text(result()) == "qwen · 12 tokens · first token 0.25 s · 16.0 tok/s"
    assert footer_text(result(finish_reason="length")).endswith(" · cut at max tokens")
    assert footer_text(result(stopped=True)).endswith(" · stopped")
    assert footer_text(result(), note="incomplete").endswith(" · incomplete")
    assert footer_text(CASES["no rate"]) == "qwen · 12 tokens · first token 0.50 s · 2.00 s"
    assert footer_text(CASES["one token"]).startswith("qwen · 1 token ·")
    no_usage = CASES["no usage"]
    assert footer_text(no_usage) == "qwen"
    assert facts_text(footer_facts(no_usage, approx_tokens=9, with_model=False)) == "≈9 tokens"
    assert [f.kind for f in footer_facts(result(stopped=True), with_finish=True)] == [
        "model", "tokens", "first_token", "speed", "finish", "ending",
    ]


def test_the_facts_of_an_answer_still_streaming() -> None:
    assert facts_text(live_facts("m", 0)) == "m · waiting for the first token…"
    assert facts_text(live_facts("m", 5)) == "m · ≈5 tokens · streaming…"
    assert facts_text(live_facts(None, 1)) == "≈1 token · streaming…"
