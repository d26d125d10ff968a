"""``compare(expected=...)``: one reference answer per prompt, for :func:`~lm_notebook.checks.equals`,
:func:`~lm_notebook.checks.similar_to` and :func:`~lm_notebook.checks.judge`.

The expected answers come one way: ``expected=`` (a dict keyed like the prompts, a Series, a list, a column name, or
one string for every prompt), or the prompts' own ``expected`` field (dict prompts) or column (a DataFrame). Given both
ways, they must agree where both say something; where they disagree, ``compare`` refuses, naming both values, rather
than pick one silently. Numbers are references too (``42``, or ``42.0`` from a pandas column with a gap, is ``"42"``).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from lm_notebook.comparison.checks import as_text
from lm_notebook.comparison.inputs import PromptInputs
from lm_notebook.comparison.schedule import PromptItem

EXPECTED = "expected"


def expected_answers(expected: object, inputs: PromptInputs) -> list[str | None] | None:
    """``compare(expected=...)`` as one reference per prompt (None where a prompt has none), or None when nothing was
    given (the prompts' own ``expected`` column or field, if any, is then used as it is)."""
    if expected is None:
        return None
    items = inputs.items
    given = _given(expected, inputs)
    own = [as_text((item.columns or {}).get(EXPECTED)) for item in items]
    for item, mine, theirs in zip(items, given, own, strict=True):
        if mine is not None and theirs is not None and mine != theirs:
            where = "column" if inputs.frame_columns is not None else "field"
            raise ValueError(
                f"Prompt {item.name!r} has two expected answers: {mine!r} from compare(expected=...) and {theirs!r} "
                f"from its own {EXPECTED!r} {where}. Give the expected answers one way: drop expected=, or the "
                f"prompts' {EXPECTED!r} {where}."
            )
    # where only one way says something, it is the answer (the two agree everywhere else)
    return [mine if mine is not None else theirs for mine, theirs in zip(given, own, strict=True)]


def _given(expected: object, inputs: PromptInputs) -> list[str | None]:
    """``expected=`` as one text per prompt. A dict keyed like the prompts; a Series (keyed by the DataFrame's
    index; with repeated labels, only a column of the prompts' own DataFrame, see :func:`_from_series`); a list,
    one per prompt; the name of a column of the prompts' DataFrame (or a field of dict prompts); or
    one string for every prompt (not with a DataFrame of prompts: there a string names a column)."""
    items = inputs.items
    names = [item.name for item in items]
    if isinstance(expected, str):
        return _named(expected, inputs)
    if isinstance(expected, pd.Series):
        return _from_series(expected, names)
    if isinstance(expected, Mapping):
        unknown = [k for k in expected if k not in set(names)]
        if unknown:
            raise ValueError(
                f"expected= has keys that name no prompt: {unknown[:5]}; the prompts are {names[:10]}."
            )
        return [as_text(expected.get(name)) for name in names]
    if isinstance(expected, Sequence):
        if len(expected) != len(names):
            raise ValueError(f"expected= lists {len(expected)} answers for {len(names)} prompts: give one per prompt.")
        return [as_text(v) for v in expected]
    raise TypeError(
        "expected= is a dict keyed like the prompts, a Series (a DataFrame column), a list (one per prompt), a column "
        f"name, or one string for all, not {type(expected).__name__}."
    )


def _from_series(expected: pd.Series[Any], names: Sequence[object]) -> list[str | None]:
    """A Series keyed like the prompts. Labels it repeats are allowed only when its index is the prompts' own, label
    for label in order (a column of the prompts' DataFrame): then it lines up row by row. Otherwise a repeated label
    is ambiguous (which of its answers is that prompt's?), and refused; so are labels that name no prompt (as a
    dict's keys), and prompts that repeat a label the Series has once (which prompt is its answer's?)."""
    if list(expected.index) == list(names):
        return [as_text(v) for v in expected.tolist()]
    known = set(names)
    unknown = [label for label in expected.index if label not in known]
    if unknown:
        raise ValueError(f"expected= is a Series with labels that name no prompt: {unknown[:5]}; the prompts are "
                         f"{list(names)[:10]}. Key it like the prompts, or give one answer per prompt in order: "
                         "expected=list(series).")
    twice = sorted({repr(name) for name in names if list(names).count(name) > 1})
    if expected.index.is_unique and twice:
        raise ValueError(f"expected= is a Series keyed by label, but the prompts repeat {', '.join(twice[:5])}: "
                         "which of them its answer is for is ambiguous. Give one answer per prompt in order: "
                         "expected=list(series).")
    if expected.index.is_unique:
        return [as_text(expected.get(name)) for name in names]
    repeated = expected.index[expected.index.duplicated(keep=False)]
    counts = pd.Series(repeated).value_counts(sort=False)
    shown = ", ".join(f"{label!r} ({n} answers)" for label, n in list(counts.items())[:5])
    raise ValueError(
        f"expected= is a Series whose index repeats {shown}: a label names one prompt, so which answer is its "
        "reference is ambiguous. Give it unique labels, or one answer per prompt in order: expected=list(series)."
    )


def _named(expected: str, inputs: PromptInputs) -> list[str | None]:
    """``expected="answer"``: a column of the prompts' DataFrame (a misspelt one is an error, not the reference), a
    field of dict prompts, else one answer for every prompt."""
    items = inputs.items
    columns = inputs.frame_columns
    if columns is not None:
        if expected not in columns:
            shown = list(columns)
            close = difflib.get_close_matches(expected, shown, n=1)
            hint = f' Did you mean "{close[0]}"?' if close else ""
            raise ValueError(
                f'expected="{expected}" names no column of the prompts\' DataFrame; its columns are {shown}.{hint} '
                f"To give every prompt the same expected answer, pass expected=[{expected!r}] * {len(items)}."
            )
        return [as_text((item.columns or {}).get(columns[expected])) for item in items]
    if any(_has_field(item, expected) for item in items):
        return [as_text((item.columns or {}).get(expected)) for item in items]
    fields = list(dict.fromkeys(k for item in items for k in (item.columns or {})))
    close = difflib.get_close_matches(expected, fields, n=1, cutoff=0.75)
    if close:  # a misspelt field of dict prompts is an error, not every prompt's reference
        raise ValueError(
            f'expected="{expected}" names no field of the dict prompts; their fields are {fields}. Did you mean '
            f'"{close[0]}"? To give every prompt the same expected answer, pass expected=[{expected!r}] * {len(items)}.'
        )
    return [as_text(expected)] * len(items)


def _has_field(item: PromptItem, name: str) -> bool:
    return bool(item.columns) and name in (item.columns or {})


def with_expected(frame: pd.DataFrame, expected: Sequence[str | None] | None,
                  prompt_of_row: Sequence[int]) -> pd.DataFrame:
    """``frame`` with its ``expected`` column: ``expected`` (one per prompt) written in, or as it came."""
    if expected is None:
        return frame
    values = [expected[i] for i in prompt_of_row]
    if EXPECTED in frame.columns:  # the prompts' own column: the agreed answers (gaps filled from expected=)
        frame[EXPECTED] = pd.Series(values, index=frame.index, dtype=object)
        return frame
    frame.insert(list(frame.columns).index("model"), EXPECTED, values)
    return frame
