"""Views of a :func:`~lm_notebook.comparison.benchmark.benchmark` frame: the summary per concurrency level, and the
throughput and TTFT curves.

Statistics use the measured requests (``phase == "measure"``) that answered; a cold request's TTFT (the model loading)
is left out of the TTFT and latency percentiles. Aggregate throughput is every output token of the level over the
level's wall time (first request sent to last answer done); per-stream is the median of each request's own rate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_REQUIRED = ("phase", "concurrency", "status", "ttft_s", "latency_s", "tokens_per_s", "output_tokens", "start_s",
             "end_s")
SUMMARY_COLUMNS = (
    "requests", "ok", "errors", "wall_s", "output_tokens_per_s", "per_stream_tokens_per_s", "ttft_p50_s",
    "ttft_p90_s", "latency_p50_s", "latency_p90_s", "slots", "queued",
)


def _check(df: pd.DataFrame, what: str) -> None:
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{what}() takes the DataFrame that benchmark() returns; this one lacks {missing}.")


def _q(values: pd.Series, q: float) -> float:
    clean = pd.to_numeric(values, errors="coerce").dropna()
    return float(clean.quantile(q)) if len(clean) else float("nan")


def benchmark_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per concurrency level: requests, errors, wall time, aggregate output tokens/s, per-stream tokens/s,
    TTFT and latency p50/p90, the model's parallel slots and whether the level was beyond them (``queued``).

    ``.attrs`` holds what is reported apart: ``load_s`` (the model's load during the warm-up, NaN when it was already
    loaded), ``model`` and ``endpoint``.
    """
    _check(df, "benchmark_summary")
    measured = df[df["phase"] == "measure"]
    out: list[dict[str, Any]] = []
    for level in sorted(set(int(c) for c in measured["concurrency"])):
        rows = measured[measured["concurrency"] == level]
        ok = rows[rows["status"] == "ok"]
        warm = ok[~ok["cold"].astype(bool)] if "cold" in ok else ok
        wall = float(rows["end_s"].max() - rows["start_s"].min()) if len(ok) else float("nan")
        tokens = float(pd.to_numeric(ok["output_tokens"], errors="coerce").fillna(0).sum())
        slots = rows["slots"].dropna() if "slots" in rows else pd.Series(dtype="Int64")
        known = int(slots.iloc[0]) if len(slots) else None
        out.append({
            "concurrency": level,
            "requests": len(rows),
            "ok": len(ok),
            "errors": int((rows["status"] == "error").sum()),
            "wall_s": wall,
            "output_tokens_per_s": tokens / wall if wall and wall > 0 else float("nan"),
            "per_stream_tokens_per_s": _q(ok["tokens_per_s"], 0.5),
            "ttft_p50_s": _q(warm["ttft_s"], 0.5),
            "ttft_p90_s": _q(warm["ttft_s"], 0.9),
            "latency_p50_s": _q(warm["latency_s"], 0.5),
            "latency_p90_s": _q(warm["latency_s"], 0.9),
            "slots": known,
            "queued": bool(known is not None and level > known),
        })
    summary: pd.DataFrame = pd.DataFrame(out, columns=["concurrency", *SUMMARY_COLUMNS]).set_index("concurrency")
    summary["slots"] = summary["slots"].astype("Int64")
    loads = pd.to_numeric(df["load_s"], errors="coerce").dropna() if "load_s" in df else pd.Series(dtype=float)
    summary.attrs["load_s"] = float(loads.max()) if len(loads) else float("nan")
    for name in ("model", "endpoint"):
        if name in df and len(df):
            summary.attrs[name] = str(df[name].iloc[0])
    return summary


def plot_benchmark(df: pd.DataFrame, *, figsize: tuple[float, float] = (10.0, 3.6)) -> Figure:
    """Two charts against concurrency: output tokens/s (aggregate and per stream), and TTFT (p50, p90); a dotted
    line marks the server's parallel slots when known. Needs matplotlib (``pip install 'lm_notebook[plot]'``)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plot_benchmark() draws with matplotlib, which is not installed. Install the optional extra: "
            "pip install 'lm_notebook[plot]' (or pip install matplotlib); benchmark_summary(df) has the numbers."
        ) from None
    stats = benchmark_summary(df)
    levels = [int(c) for c in stats.index]
    fig = plt.figure(figsize=figsize, layout="constrained")
    plt.close(fig)  # shown once, as this function's result (see plot_summary)
    speed, ttft = fig.subplots(1, 2)
    speed.plot(levels, stats["output_tokens_per_s"].tolist(), marker="o", label="aggregate")
    speed.plot(levels, stats["per_stream_tokens_per_s"].tolist(), marker="s", label="per stream (median)")
    speed.set_title("output tokens / s")
    ttft.plot(levels, stats["ttft_p50_s"].tolist(), marker="o", label="p50")
    ttft.plot(levels, stats["ttft_p90_s"].tolist(), marker="s", label="p90")
    ttft.set_title("time to first token (s)")
    slots = stats["slots"].dropna()
    for ax in (speed, ttft):
        if len(slots):
            ax.axvline(int(slots.iloc[0]), color="grey", linestyle=":", label="parallel slots")
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_xlabel("requests at once")
        ax.set_ylim(bottom=0)
        ax.legend(loc="best", fontsize="small")
    title = stats.attrs.get("model", "")
    if title:
        fig.suptitle(f"{title} at {stats.attrs.get('endpoint', '')}", fontsize="medium")
    return fig
