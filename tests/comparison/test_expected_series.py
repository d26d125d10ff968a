"""expected= as a Series: it lines up with the prompts only when it can say which prompt each answer is for."""

from __future__ import annotations

import pandas as pd
import pytest

from lm_notebook.comparison.expected import expected_answers
from lm_notebook.comparison.inputs import prompt_inputs

PROMPTS = pd.DataFrame({"q": ["Capital of France?", "2+2?"]}, index=[7, 7])


def test_prompts_repeating_a_label_the_series_has_once_are_refused() -> None:
    """Before, both prompts labelled 7 got "Paris", and label 8's answer was dropped without a word."""
    with pytest.raises(ValueError, match=r"labels that name no prompt: \[8\]"):
        expected_answers(pd.Series(["Paris", "4"], index=[7, 8]), prompt_inputs(PROMPTS, "{q}"))
    with pytest.raises(ValueError, match="the prompts repeat 7"):
        expected_answers(pd.Series(["Paris"], index=[7]), prompt_inputs(PROMPTS, "{q}"))


def test_a_series_whose_labels_match_no_prompt_is_refused() -> None:
    """Before, every prompt silently had no reference."""
    with pytest.raises(ValueError, match=r"labels that name no prompt: \[5, 6\].*expected=list\(series\)"):
        expected_answers(pd.Series(["x", "y"], index=[5, 6]), prompt_inputs(["a?", "b?"], None))


def test_a_series_keyed_like_the_prompts_still_lines_up() -> None:
    assert expected_answers(pd.Series(["4", "Paris"], index=[7, 7]), prompt_inputs(PROMPTS, "{q}")) == ["4", "Paris"]
    assert expected_answers(pd.Series(["y", "x"], index=[1, 0]), prompt_inputs(["a?", "b?"], None)) == ["x", "y"]
