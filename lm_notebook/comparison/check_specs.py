"""Checks written as text, for ``%%lm_compare --check 'contains:42' --check 'regex:^\\d+$'``.

>>> [c.name for c in checks_from_specs(["contains:42", "regex:^\\d+$", "max_words:20", "is_json"])]
['contains', 'regex', 'max_words', 'is_json']

``KIND`` or ``KIND:ARGUMENT``: ``contains:TEXT``, ``regex:PATTERN``, ``equals`` or ``equals:TEXT``, ``is_json``,
``max_words:N``, ``similar_to`` or ``similar_to:REFERENCE``, ``judge:RUBRIC`` (graded by the current model).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from lm_notebook.comparison.checks import Check, contains, equals, is_json, max_words, regex
from lm_notebook.comparison.judge import judge, similar_to


def _needs(kind: str, argument: str | None, example: str) -> str:
    if not argument:
        raise ValueError(f"--check {kind} needs an argument: --check '{kind}:{example}'.")
    return argument


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


_KINDS: dict[str, Callable[[str | None], Check]] = {
    "contains": lambda a: contains(_needs("contains", a, "Paris")),
    "regex": _regex,
    "equals": lambda a: equals(a or None),
    "is_json": lambda a: is_json(),
    "max_words": _max_words,
    "similar_to": lambda a: similar_to(a or None),
    "judge": lambda a: judge(_needs("judge", a, "Is it correct and concise?")),
}


def check_from_spec(spec: str) -> Check:
    """One check from its text form (``ValueError`` naming the kinds there are)."""
    kind, sep, argument = spec.partition(":")
    kind = kind.strip()
    make = _KINDS.get(kind)
    if make is None:
        raise ValueError(f"--check {spec!r}: unknown check {kind!r}; the checks are {', '.join(_KINDS)} "
                         "(e.g. --check 'contains:42').")
    return make(argument if sep else None)


def checks_from_specs(specs: Sequence[str]) -> list[Check]:
    return [check_from_spec(s) for s in specs]
