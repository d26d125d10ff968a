"""Views of a ``compare`` DataFrame: responses side by side, a per-model summary, and speed charts.

>>> df = compare(["Say hi", "Name a colour"], ["model-a", "model-b"], temperature=0)   # doctest: +SKIP
>>> comparison_table(df)      # prompts × models, readable HTML in a notebook            # doctest: +SKIP
>>> summary(df)               # per model: TTFT, latency, tokens/s, errors, tokens       # doctest: +SKIP
>>> plot_summary(df)          # needs matplotlib (pip install 'lm_notebook[plot]')       # doctest: +SKIP
"""

from __future__ import annotations

import html
from collections.abc import Collection, Hashable
from typing import TYPE_CHECKING, Any

import pandas as pd

from lm_notebook.comparison.quality import has_checks, plot_quality, quality_mark, quality_summary, ranked
from lm_notebook.comparison.structured import valid_rate
from lm_notebook.comparison.tool_rows import ranked_by_tools, tool_summary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_REQUIRED = ("prompt_name", "prompt", "model", "repeat", "response", "status")


def _check_frame(df: pd.DataFrame, what: str) -> None:
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what}() takes the DataFrame that compare() returns; this one lacks the column(s) {missing}."
        )


def _models_in_order(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(str(m) for m in df["model"]))


def _text(value: Any) -> str:
    if value is None:
        return ""
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):  # lists and the like are not NA
        pass
    return str(value)


def _cell(row: pd.Series, *, reasoning: bool) -> str:
    """What one answer cell shows: the answer, or what went wrong (and the partial answer kept)."""
    response = _text(row.get("response"))
    status = _text(row.get("status"))
    parts = []
    if reasoning and _text(row.get("reasoning")):
        parts.append(f"💭 {_text(row.get('reasoning'))}\n\n")
    if status == "error":
        kind = _text(row.get("error_type")) or "error"
        parts.append(f"⚠ {kind}: {_text(row.get('error'))}")
        if response:
            parts.append(f"\n\npartial answer: {response}")
    elif status == "cancelled":
        parts.append("⏹ cancelled" + (f" — partial answer: {response}" if response else " (not run)"))
    else:
        parts.append(response)
        if _text(row.get("finish_reason")) == "length":
            parts.append(" …[cut at max_tokens]")
    parts.append(quality_mark(row))  # ✓/✗ and the score, when the comparison had checks
    return "".join(parts)


class ComparisonTable:
    """Answers side by side: one row per prompt, one column per model (per model and repeat with repeats).

    Displays as an HTML table in a notebook (text wraps, nothing truncated) and as plain text elsewhere; ``frame``
    is the same table as a DataFrame (``.frame.to_csv(...)``).
    """

    def __init__(self, frame: pd.DataFrame, *, max_chars: int | None = None) -> None:
        self.frame = frame
        self.max_chars = max_chars

    def _clip(self, text: str, limit: int | None) -> str:
        if limit is None or len(text) <= limit:
            return text
        return text[: max(limit - 1, 0)] + "…"

    def __repr__(self) -> str:
        shown = self.frame.map(lambda v: self._clip(_text(v).replace("\n", " ⏎ "), self.max_chars or 60))
        return str(shown.to_string())

    def _repr_html_(self) -> str:
        cell = "text-align:left;vertical-align:top;white-space:pre-wrap;word-break:break-word;min-width:12em"
        head = "text-align:left;vertical-align:bottom"
        rows = ['<table class="lm-compare" style="border-collapse:collapse">', "<thead><tr>"]
        rows.append(f'<th style="{head}">{html.escape(str(self.frame.index.name or ""))}</th>')
        rows.extend(f'<th style="{head}">{html.escape(str(c))}</th>' for c in self.frame.columns)
        rows.append("</tr></thead><tbody>")
        for label, values in self.frame.iterrows():
            rows.append(f'<tr><th style="{cell}">{html.escape(str(label))}</th>')
            for value in values:
                text = html.escape(self._clip(_text(value), self.max_chars))
                rows.append(f'<td style="{cell}">{text}</td>')
            rows.append("</tr>")
        rows.append("</tbody></table>")
        return "".join(rows)

    def _repr_mimebundle_(
        self, include: Collection[str] | None = None, exclude: Collection[str] | None = None
    ) -> dict[str, str]:
        return {"text/plain": repr(self), "text/html": self._repr_html_()}


def comparison_table(df: pd.DataFrame, *, reasoning: bool = False, max_chars: int | None = None) -> ComparisonTable:
    """Prompts × models with the answers side by side (errors and interruptions shown in their cell).

    ``reasoning=True`` puts each model's thinking above its answer; ``max_chars`` shortens long cells.
    """
    _check_frame(df, "comparison_table")
    models = _models_in_order(df)
    repeats = int(df["repeat"].max()) + 1 if len(df) else 1
    names = list(dict.fromkeys(df["prompt_name"]))
    table: dict[Hashable, dict[str, str]] = {name: {} for name in names}
    for _, row in df.iterrows():
        entry = table[row["prompt_name"]]
        entry.setdefault("prompt", _text(row["prompt"]))
        column = str(row["model"]) if repeats == 1 else f"{row['model']} #{int(row['repeat']) + 1}"
        entry[column] = _cell(row, reasoning=reasoning)
    columns = ["prompt"] + (models if repeats == 1 else [f"{m} #{r + 1}" for m in models for r in range(repeats)])
    frame = pd.DataFrame.from_dict(table, orient="index").reindex(columns=columns).fillna("")
    frame.index.name = "prompt_name"
    return ComparisonTable(frame, max_chars=max_chars)


def _quantile(values: pd.Series, q: float) -> float:
    clean = values.dropna()
    return float(clean.quantile(q)) if len(clean) else float("nan")


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per model: requests, errors, the load time, median and p90 time to first token and latency, tokens/s, tokens;
    with a ``schema=``, ``valid_rate`` (the share of answers that followed it); with ``checks=``, ``pass_rate`` (of
    the ``scored`` rows), ``score_mean`` and each check's mean and pass rate, the best models first.

    Timing statistics use the answers that completed and were not cold (a cold request's first token waited for the
    model to load: that wait is ``load_s``, kept apart). Tokens/s counts cold answers too: loading does not slow
    generation. TTFT and tokens/s are the server's own (``server_ttft_s``, ``server_tokens_per_s``, LM Studio 0.4)
    when every answer has them, else the client's measurements; the ``timings`` column says which. The server's TTFT
    leaves the load out (it reports it apart), so with the server's numbers cold answers count for TTFT too.

    With ``tools=``: ``tool_calls``, ``tool_errors``, ``tool_rounds_exceeded`` (rows that hit ``max_rounds`` without
    an answer) and ``tool_call_success_rate`` = (valid calls / all calls) × (rows that answered / rows whose act
    ran; an error row — ``max_rounds``, an empty answer, a failure after the first call — did not answer) — a model
    that loops until ``max_rounds`` scores 0; it counts the calls made, not rows that needed one (see
    :data:`~lm_notebook.comparison.tool_rows.SUCCESS_RATE`); the models are then ranked by it, best first (ties: the
    higher tokens/s), ``tool_rank`` first and ``.attrs["ranked_by"]`` saying so — unless the comparison had checks,
    whose ranking comes first.
    """
    _check_frame(df, "summary")
    # the server's own numbers (LM Studio 0.4) when every answer has them, else the client's; ``timings`` says which
    answered = df[df["status"] == "ok"]
    server = bool(len(answered)) and all(
        column in df and bool(answered[column].notna().all()) for column in ("server_ttft_s", "server_tokens_per_s"))
    ttft_column, speed_column = ("server_ttft_s", "server_tokens_per_s") if server else ("ttft_s", "tokens_per_s")
    out = []
    for model in _models_in_order(df):
        rows = df[df["model"].astype(str) == model]
        ok = rows[rows["status"] == "ok"]
        cold = ok["cold"].astype(bool) if "cold" in ok else pd.Series(False, index=ok.index)
        warm = ok[~cold]
        timed = ok if server else warm  # the server's time to first token leaves the load out: cold answers count
        load = rows["load_s"].dropna() if "load_s" in rows else pd.Series(dtype=float)
        entry: dict[str, Any] = {
            "model": model,
            "quantization": rows["quantization"].iloc[0] if "quantization" in rows else None,
            "requests": len(rows),
            "ok": len(ok),
            "errors": int((rows["status"] == "error").sum()),
            "cancelled": int((rows["status"] == "cancelled").sum()),
            "cached": int(rows["cached"].astype(bool).sum()) if "cached" in rows else 0,
            "load_s": float(load.max()) if len(load) else float("nan"),
            "ttft_median_s": _quantile(timed.get(ttft_column, pd.Series(dtype=float)), 0.5),
            "ttft_p90_s": _quantile(timed.get(ttft_column, pd.Series(dtype=float)), 0.9),
            "latency_median_s": _quantile(warm.get("latency_s", pd.Series(dtype=float)), 0.5),
            "latency_p90_s": _quantile(warm.get("latency_s", pd.Series(dtype=float)), 0.9),
            "tokens_per_s_median": _quantile(ok.get(speed_column, pd.Series(dtype=float)), 0.5),
            "timings": "server" if server else "client",
            "prompt_tokens": int(ok["prompt_tokens"].fillna(0).sum()) if "prompt_tokens" in ok else 0,
            "completion_tokens": int(ok["completion_tokens"].fillna(0).sum()) if "completion_tokens" in ok else 0,
            **tool_summary(rows),  # compare(..., tools=...): the calls, the model's mistakes, its success rate
        }
        entry.update(quality_summary(rows))  # pass rate and mean scores, when the comparison had checks
        if "valid" in rows:  # compare(..., schema=...): how often the model's answer followed the schema
            entry["valid_rate"] = valid_rate(rows)
        out.append(entry)
    frame = pd.DataFrame(out)
    indexed: pd.DataFrame = frame.set_index("model") if len(frame) else frame
    if has_checks(df):
        return ranked(indexed)  # with checks: the best models first (they rank, with tools too)
    return ranked_by_tools(indexed)  # with tools: the best tool user first


def plot_summary(df: pd.DataFrame, *, figsize: tuple[float, float] = (12.0, 3.4)) -> Figure:
    """Bar charts per model: generation speed (tokens/s), time to first token and latency (median, p90); with
    checks, a fourth panel: pass rate against tokens/s, one point a model (quality vs speed).

    Returns a matplotlib ``Figure`` (shown by the notebook; ``fig.savefig("speed.png")`` elsewhere). Needs the
    optional ``plot`` extra: ``pip install 'lm_notebook[plot]'``.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plot_summary() draws with matplotlib, which is not installed. Install the optional extra: "
            "pip install 'lm_notebook[plot]' (or pip install matplotlib); summary(df) has the same numbers."
        ) from None
    stats = summary(df)
    models = [str(m) for m in stats.index]
    positions = list(range(len(models)))
    # pyplot makes a figure the notebook knows how to show; closing it at once means it is shown once (as this
    # function's result), not a second time by the inline backend at the end of the cell.
    quality = has_checks(df)
    if quality and figsize == (12.0, 3.4):
        figsize = (16.0, 3.4)  # room for the fourth panel
    fig = plt.figure(figsize=figsize, layout="constrained")
    plt.close(fig)
    axes = fig.subplots(1, 4 if quality else 3)
    speed, ttft, latency = axes[:3]
    if quality:
        plot_quality(axes[3], stats)
    speed.bar(positions, stats["tokens_per_s_median"].fillna(0.0).tolist(), color="tab:green")
    speed.set_title("generation speed (median)")
    speed.set_ylabel("tokens / s")
    width = 0.38
    for ax, name, title in ((ttft, "ttft", "time to first token"), (latency, "latency", "latency")):
        ax.bar([p - width / 2 for p in positions], stats[f"{name}_median_s"].fillna(0.0).tolist(), width,
               label="median", color="tab:blue")
        ax.bar([p + width / 2 for p in positions], stats[f"{name}_p90_s"].fillna(0.0).tolist(), width,
               label="p90", color="tab:orange")
        ax.set_title(f"{title} (warm requests)")
        ax.set_ylabel("seconds")
        ax.legend(loc="upper right", fontsize="small")
    for ax in (speed, ttft, latency):
        ax.set_xticks(positions, models, rotation=20, ha="right", fontsize="small")
    return fig
