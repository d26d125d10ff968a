"""Checks written as text, for ``%%lm_compare --check 'contains:42' --check 'regex:^\\d+$'``.

>>> [c.name for c in checks_from_specs(["contains:42", "regex:^\\d+$", "max_words:20", "is_json"])]
['contains', 'regex', 'max_words', 'is_json']

``KIND`` or ``KIND:ARGUMENT``: ``contains:TEXT``, ``regex:PATTERN``, ``equals:TEXT``, ``is_json``,
``max_words:N``, ``similar_to:REFERENCE``, ``judge:RUBRIC``. ``equals`` and ``similar_to`` need their reference
written here: a cell's prompts carry no expected answers (from Python, ``compare(expected=...)`` gives them).
The judge is ``judge_model`` (``%%lm_compare --judge-model``, default the current model); ``similar_to`` embeds
with ``embedding_model`` (``--embedding-model``, default the server's one embedding model).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from lm_notebook.comparison.checks import Check, contains, equals, is_json, max_words, regex
from lm_notebook.comparison.judge import judge, similar_to


def _needs(kind: str, argument: str | None, example: str, why: str = "") -> str:
    if not argument:
        raise ValueError(f"--check {kind} needs an argument: --check '{kind}:{example}'{why}.")
    return argument


# a cell's prompts are lines of text: no expected answer comes with them, so a reference must be written in the check
_NO_EXPECTED = " (the cell's prompts have no expected answers to compare with)"


def _max_words(argument: str | None) -> Check:
    text = _needs("max_words", argument, "50")
    if not text.isdigit():
        raise ValueError(f"--check max_words takes a number of words, not {text!r}: --check 'max_words:50'.")
    return max_words(int(text))


def _regex(argument: str | None) -> Check:
    pattern = _needs("regex", argument, "^\\d+$")
    try:
        return regex(pattern)
    except re.error as exc:
        raise ValueError(f"--check regex:{pattern} is not a regular expression ({exc}).") from None


def _kinds(judge_model: str | None, embedding_model: str | None) -> dict[str, Callable[[str | None], Check]]:
    return {
        "contains": lambda a: contains(_needs("contains", a, "Paris")),
        "regex": _regex,
        "equals": lambda a: equals(_needs("equals", a, "Paris", _NO_EXPECTED)),
        "is_json": lambda a: is_json(),
        "max_words": _max_words,
        "similar_to": lambda a: similar_to(_needs("similar_to", a, "Paris is the capital", _NO_EXPECTED),
                                           model=embedding_model),
        "judge": lambda a: judge(_needs("judge", a, "Is it correct and concise?"), model=judge_model),
    }


def check_from_spec(spec: str, *, judge_model: str | None = None, embedding_model: str | None = None) -> Check:
    """One check from its text form (``ValueError`` naming the kinds there are)."""
    kind, sep, argument = spec.partition(":")
    kind = kind.strip()
    kinds = _kinds(judge_model, embedding_model)
    make = kinds.get(kind)
    if make is None:
        raise ValueError(f"--check {spec!r}: unknown check {kind!r}; the checks are {', '.join(kinds)} "
                         "(e.g. --check 'contains:42').")
    return make(argument if sep else None)


def checks_from_specs(specs: Sequence[str], *, judge_model: str | None = None,
                      embedding_model: str | None = None) -> list[Check]:
    return [check_from_spec(s, judge_model=judge_model, embedding_model=embedding_model) for s in specs]
