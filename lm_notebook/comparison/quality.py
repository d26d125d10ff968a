"""The checks' part of the views: pass rates and mean scores in ``summary``, a passed/failed mark in
``comparison_table``, and the quality-vs-speed scatter in ``plot_summary`` (each used by
:mod:`lm_notebook.comparison.views` only when the frame has check columns)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from lm_notebook.comparison.scoring_columns import THRESHOLDS_ATTR

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def check_columns(df: pd.DataFrame) -> list[str]:
    """The checks' score columns: those compare() recorded (its thresholds), else (a frame that lost its attrs,
    read back from a file say) the ``check_*`` columns."""
    recorded = df.attrs.get(THRESHOLDS_ATTR)
    if isinstance(recorded, dict):
        return [c for c in df.columns if c in recorded]
    return [c for c in df.columns if str(c).startswith("check_") and c != "check_notes"]


def has_checks(df: pd.DataFrame) -> bool:
    return "passed" in df.columns and "score" in df.columns


def _rate(verdicts: pd.Series) -> float:
    """The share of True among the rows with a verdict (NaN when none has one)."""
    known = verdicts.dropna()
    return float(known.astype(bool).mean()) if len(known) else float("nan")


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if values.notna().any() else float("nan")


def quality_summary(rows: pd.DataFrame) -> dict[str, Any]:
    """One model's quality: ``pass_rate`` (passed rows of the ``scored`` ones: a row the model failed to answer is
    failed; a cancelled row, or one a check could not score, has no verdict and is left out), ``scored`` (the rows
    with a verdict, of ``requests``), ``score_mean``, and per check its mean score (``check_<name>_mean``) and pass
    rate (``pass_rate_<name>``: of the rows that check scored, and the unanswered ones). In the means too, an
    unanswered row counts as failed: it scores 0."""
    if not has_checks(rows):
        return {}
    passed = rows["passed"].astype("boolean")
    unanswered = rows["status"] == "error"
    # an unanswered row failed, so it scores 0 in the means too (a model that answers one prompt in ten, well,
    # does not get a mean score of 1)
    out: dict[str, Any] = {"pass_rate": _rate(passed), "scored": int(passed.notna().sum()),
                           "score_mean": _mean(rows["score"].where(~unanswered, 0.0))}
    thresholds = rows.attrs.get(THRESHOLDS_ATTR) or {}
    for column in check_columns(rows):
        out[f"{column}_mean"] = _mean(rows[column].where(~unanswered, 0.0))
    for column in check_columns(rows):
        threshold = thresholds.get(column)
        if threshold is None:  # the frame lost its attrs (read back from a file): a score does not say pass/fail
            continue
        values = rows[column]
        each = (values >= threshold).astype("boolean").where(values.notna(), pd.NA)
        each = each.where(~unanswered, False)
        out[f"pass_rate_{column.removeprefix('check_')}"] = _rate(each)
    return out


def ranked(stats: pd.DataFrame) -> pd.DataFrame:
    """The summary with the best models first: by pass rate, then mean score, then speed (the given order breaks
    ties; a model with no verdict goes last)."""
    keys = [k for k in ("pass_rate", "score_mean", "tokens_per_s_median") if k in stats.columns]
    if not keys or len(stats) < 2:
        return stats
    order: pd.DataFrame = stats.sort_values(keys, ascending=False, na_position="last", kind="stable")
    return order


def quality_mark(row: pd.Series) -> str:
    """The line under an answer in ``comparison_table``: ✓ or ✗, its score, and the notes of a failed row."""
    if "passed" not in row.index or row.get("status") != "ok":
        return ""
    score = row.get("score")
    shown = f"{float(score):.2f}" if score is not None and not pd.isna(score) else "—"
    notes = row.get("check_notes")
    why = f" — {notes}" if isinstance(notes, str) and notes else ""
    passed = row.get("passed")
    if passed is None or pd.isna(passed):
        return f"\n\n? not scored{why}"
    if bool(passed):
        return f"\n\n✓ passed · score {shown}"
    return f"\n\n✗ failed · score {shown}{why}"


def plot_quality(ax: Axes, stats: pd.DataFrame) -> None:
    """Pass rate against generation speed, one labelled point a model: the picture of "fast and good"."""
    known = stats[stats["pass_rate"].notna()]  # a model with no verdict has no place on this chart (not 0 %)
    speed = known["tokens_per_s_median"].fillna(0.0).tolist()
    rate = (known["pass_rate"] * 100).tolist()
    ax.scatter(speed, rate, s=60, color="tab:purple", zorder=3)
    for x, y, model in zip(speed, rate, [str(m) for m in known.index], strict=True):
        ax.annotate(model, (x, y), textcoords="offset points", xytext=(5, 5), fontsize="small")
    ax.set_title("quality vs speed")
    ax.set_xlabel("tokens / s (median)")
    ax.set_ylabel("pass rate (%)")
    ax.set_ylim(-8, 115)  # room for the labels above a point at 100 %
    ax.margins(x=0.3)  # and beside the fastest model's
    ax.grid(True, alpha=0.3)
