"""comparison_table, summary and plot_summary on hand-made compare() frames (no server needed)."""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd
import pytest

from lm_notebook.comparison.views import ComparisonTable, comparison_table, plot_summary, summary


def row(prompt_name: Any, model: str, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "prompt_name": prompt_name, "prompt": f"prompt {prompt_name}", "model": model, "repeat": 0, "status": "ok",
        "response": f"{model} says {prompt_name}", "reasoning": "", "finish_reason": "stop", "error": None,
        "error_type": None, "ttft_s": 0.1, "latency_s": 1.0, "tokens_per_s": 50.0, "load_s": None,
        "prompt_tokens": 10, "completion_tokens": 40, "cold": False, "cached": False, "quantization": "Q4_K_M",
    }
    base.update(kw)
    return base


def frame() -> pd.DataFrame:
    return pd.DataFrame([
        row("a", "m1", cold=True, ttft_s=2.1, latency_s=3.0, load_s=2.0),
        row("a", "m2", response="<b>bold</b> & more\nline two"),
        row("b", "m1", ttft_s=0.2, latency_s=1.2),
        row("b", "m2", status="error", response="half an ans", error="broke", error_type="LMStudioStreamError",
            finish_reason=None, ttft_s=None, latency_s=None, tokens_per_s=None),
        row("c", "m1", ttft_s=0.3, latency_s=1.4, finish_reason="length"),
        row("c", "m2", status="cancelled", response="", error="cancelled (not run)", error_type="Cancelled",
            ttft_s=None, latency_s=None, tokens_per_s=None),
    ])


def test_table_is_prompts_by_models_with_errors_in_their_cells() -> None:
    table = comparison_table(frame())
    assert isinstance(table, ComparisonTable)
    assert list(table.frame.columns) == ["prompt", "m1", "m2"]
    assert list(table.frame.index) == ["a", "b", "c"]
    assert table.frame.loc["a", "m1"] == "m1 says a"
    assert table.frame.loc["b", "m2"] == "⚠ LMStudioStreamError: broke\n\npartial answer: half an ans"
    assert table.frame.loc["c", "m2"] == "⏹ cancelled (not run)"
    assert table.frame.loc["c", "m1"].endswith("…[cut at max_tokens]")


def test_table_html_is_escaped_wrapped_and_deterministic() -> None:
    table = comparison_table(frame())
    html = table._repr_html_()
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more\nline two" in html
    assert "<b>bold" not in html
    assert "white-space:pre-wrap" in html
    assert html == comparison_table(frame())._repr_html_()
    bundle = table._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert "m1 says a" in bundle["text/plain"] and "⏎" in bundle["text/plain"]


def test_table_with_repeats_and_max_chars() -> None:
    df = pd.DataFrame([row("a", "m1"), row("a", "m1", repeat=1, response="second try, much longer text")])
    table = comparison_table(df, max_chars=10)
    assert list(table.frame.columns) == ["prompt", "m1 #1", "m1 #2"]
    assert "second tr…" in table._repr_html_()


def test_table_can_show_reasoning() -> None:
    df = pd.DataFrame([row("a", "m1", reasoning="hmm, think")])
    assert comparison_table(df, reasoning=True).frame.loc["a", "m1"] == "💭 hmm, think\n\nm1 says a"


def test_views_refuse_other_frames() -> None:
    with pytest.raises(ValueError, match="compare\\(\\) returns"):
        summary(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="comparison_table"):
        comparison_table(pd.DataFrame({"x": [1]}))


def test_summary_keeps_cold_requests_out_of_timing_statistics() -> None:
    s = summary(frame())
    assert list(s.index) == ["m1", "m2"]
    m1, m2 = s.loc["m1"], s.loc["m2"]
    assert (m1["requests"], m1["ok"], m1["errors"], m1["cancelled"]) == (3, 3, 0, 0)
    assert (m2["requests"], m2["ok"], m2["errors"], m2["cancelled"]) == (3, 1, 1, 1)
    assert m1["load_s"] == 2.0
    assert m1["ttft_median_s"] == pytest.approx(0.25)  # the cold 2.1 s is not in it
    assert m1["latency_median_s"] == pytest.approx(1.3)
    assert m1["ttft_p90_s"] == pytest.approx(0.29)
    assert m1["tokens_per_s_median"] == 50.0
    assert m1["completion_tokens"] == 120 and m2["completion_tokens"] == 40
    assert pd.isna(m2["load_s"])


def test_plot_summary_draws_three_charts() -> None:
    fig = plot_summary(frame())
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == [
        "generation speed (median)", "time to first token (warm requests)", "latency (warm requests)",
    ]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["m1", "m2"]
    assert [p.get_height() for p in axes[0].patches] == [50.0, 50.0]


def test_plot_summary_without_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"lm_notebook\[plot\]"):
        plot_summary(frame())
