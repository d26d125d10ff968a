"""The checks' part of the views: pass rates and mean scores in ``summary``, a passed/failed mark in
``comparison_table``, and the quality-vs-speed scatter in ``plot_summary`` (each used by
:mod:`lm_notebook.comparison.views` only when the frame has check columns)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def check_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if str(c).startswith("check_") and c != "check_notes"]


def has_checks(df: pd.DataFrame) -> bool:
    return "passed" in df.columns and "score" in df.columns


def quality_summary(rows: pd.DataFrame) -> dict[str, Any]:
    """One model's pass rate (passed rows of those not cancelled: an error counts as a failure), mean score, and
    each check's mean score (``check_<name>_mean``)."""
    if not has_checks(rows):
        return {}
    judged = rows[rows["status"] != "cancelled"]
    out: dict[str, Any] = {
        "pass_rate": float(judged["passed"].astype(bool).mean()) if len(judged) else float("nan"),
        "score_mean": float(judged["score"].mean()) if judged["score"].notna().any() else float("nan"),
    }
    for column in check_columns(rows):
        values = judged[column]
        out[f"{column}_mean"] = float(values.mean()) if values.notna().any() else float("nan")
    return out


def quality_mark(row: pd.Series) -> str:
    """The line under an answer in ``comparison_table``: ✓ or ✗, its score, and the notes of a failed row."""
    if "passed" not in row.index or row.get("status") != "ok":
        return ""
    score = row.get("score")
    shown = f"{float(score):.2f}" if score is not None and not pd.isna(score) else "—"
    if bool(row.get("passed")):
        return f"\n\n✓ passed · score {shown}"
    notes = row.get("check_notes")
    why = f" — {notes}" if isinstance(notes, str) and notes else ""
    return f"\n\n✗ failed · score {shown}{why}"


def plot_quality(ax: Axes, stats: pd.DataFrame) -> None:
    """Pass rate against generation speed, one labelled point a model: the picture of "fast and good"."""
    speed = stats["tokens_per_s_median"].fillna(0.0).tolist()
    rate = (stats["pass_rate"].fillna(0.0) * 100).tolist()
    ax.scatter(speed, rate, s=60, color="tab:purple", zorder=3)
    for x, y, model in zip(speed, rate, [str(m) for m in stats.index], strict=True):
        ax.annotate(model, (x, y), textcoords="offset points", xytext=(5, 5), fontsize="small")
    ax.set_title("quality vs speed")
    ax.set_xlabel("tokens / s (median)")
    ax.set_ylabel("pass rate (%)")
    ax.set_ylim(-8, 115)  # room for the labels above a point at 100 %
    ax.margins(x=0.3)  # and beside the fastest model's
    ax.grid(True, alpha=0.3)
