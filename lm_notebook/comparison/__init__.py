"""Comparing models: :func:`compare` / :func:`acompare` and their parts, each in its own module —
inputs → schedule → preflight (what is settled before sending) → run (with retry, cache, progress, and interrupt:
Stop raises :class:`ComparisonInterrupted` with the rows so far) → rows → views (pandas tables and plots).
"""

from __future__ import annotations

from lm_notebook.comparison.api import acompare, compare
from lm_notebook.comparison.interrupt import ComparisonInterrupted, last_comparison
from lm_notebook.comparison.views import ComparisonTable, comparison_table, plot_summary, summary

__all__ = [
    "ComparisonInterrupted",
    "ComparisonTable",
    "acompare",
    "compare",
    "comparison_table",
    "last_comparison",
    "plot_summary",
    "summary",
]
