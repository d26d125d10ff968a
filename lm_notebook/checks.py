"""Checks for ``compare(..., checks=[...])``: each scores every answer in 0–1.

>>> from lm_notebook import compare, summary
>>> from lm_notebook.checks import contains, judge
>>> df = compare({"capital": "What is the capital of France?"}, ["qwen2.5-7b-instruct", "google/gemma-3-4b"],
...              temperature=0, cache=True, expected={"capital": "Paris"},
...              checks=[contains("Paris"), judge("Is it correct and concise?", model="qwen2.5-7b-instruct")])
...                                                                              # doctest: +SKIP
>>> summary(df)[["pass_rate", "score_mean", "tokens_per_s_median"]]              # doctest: +SKIP

Plain callables ``fn(answer, row) -> bool | float | (float, "note")`` are checks too. The judge's prompt is in
:mod:`lm_notebook.comparison.judge`; scoring (judges after the candidates, cached) in
:mod:`lm_notebook.comparison.scoring`.
"""

from __future__ import annotations

from lm_notebook.comparison.checks import (
    Check,
    CheckError,
    contains,
    equals,
    is_json,
    matches_schema,
    max_words,
    regex,
)
from lm_notebook.comparison.judge import JudgeCheck, SimilarityCheck, judge, similar_to

__all__ = [
    "Check",
    "CheckError",
    "JudgeCheck",
    "SimilarityCheck",
    "contains",
    "equals",
    "is_json",
    "judge",
    "matches_schema",
    "max_words",
    "regex",
    "similar_to",
]
