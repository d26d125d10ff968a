"""Comparing models: :func:`compare` / :func:`acompare` and their parts, each in its own module —
inputs → schedule → preflight (what is settled before sending) → run (with retry, cache, progress, and interrupt:
Stop raises :class:`ComparisonInterrupted` with the rows so far) → rows → views (pandas tables and plots).
:func:`benchmark` measures one model at several concurrency levels on the same executor
(:mod:`~lm_notebook.comparison.benchmark`; its views in :mod:`~lm_notebook.comparison.benchmark_views`).
"""

from __future__ import annotations

from lm_notebook.comparison.api import acompare, compare
from lm_notebook.comparison.benchmark import BenchmarkInterrupted, benchmark, last_benchmark
from lm_notebook.comparison.benchmark_views import benchmark_summary, plot_benchmark
from lm_notebook.comparison.interrupt import ComparisonInterrupted, last_comparison
from lm_notebook.comparison.views import ComparisonTable, comparison_table, plot_summary, summary

__all__ = [
    "BenchmarkInterrupted",
    "ComparisonInterrupted",
    "ComparisonTable",
    "acompare",
    "benchmark",
    "benchmark_summary",
    "compare",
    "comparison_table",
    "last_benchmark",
    "last_comparison",
    "plot_benchmark",
    "plot_summary",
    "summary",
]
