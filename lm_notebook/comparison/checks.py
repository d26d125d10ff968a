"""Checks: small values that score one answer in 0–1, for ``compare(..., checks=[...])``.

>>> from lm_notebook.checks import contains, max_words
>>> contains("Paris").score("The capital is paris.", {})
(1.0, None)
>>> max_words(3).score("one two three four", {})
(0.0, '4 words, more than 3')

A check is a :class:`Check` or any callable ``fn(answer: str, row: Mapping) -> bool | float | tuple[float, str]``
(``row`` is the comparison's row: ``prompt``, ``model``, ``expected``…). ``True``/``False`` score 1/0; a float is a
score in 0–1; a tuple adds a one-line note. A row passes a check when its score is at or above the check's
``threshold``. The checks that need the server — :func:`similar_to` (embeddings) and :func:`judge` (a local model
grades) — are :class:`SimilarityCheck` and :class:`JudgeCheck` (in :mod:`lm_notebook.comparison.judge`), scored after
every candidate has answered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from lm_notebook.comparison.scoring_columns import RESERVED_CHECK_NAMES

CheckResult: TypeAlias = "bool | float | tuple[float, str] | tuple[bool, str]"
CheckFunction: TypeAlias = "Callable[[str, Mapping[str, object]], CheckResult]"
# what a plain callable must reach to pass: True (1.0) passes, False (0.0) fails, a float passes from one half
DEFAULT_THRESHOLD = 0.5
_NAME = re.compile(r"[^0-9a-zA-Z_]+")


class CheckError(ValueError):
    """A check could not score an answer (its cell says why); raised by checks, caught by the scoring."""


@dataclass(frozen=True)
class Check:
    """One named check: ``fn(answer, row)`` gives its result; the row passes at ``score >= threshold``."""

    name: str
    fn: CheckFunction | None = field(default=None, compare=False, repr=False)
    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            # scores are 0-1: a threshold outside would pass everything or nothing, and read as a real pass rate
            raise ValueError(f"Check {self.name!r}: threshold is a score from 0 to 1, not {threshold!r}.")

    def score(self, answer: str, row: Mapping[str, Any]) -> tuple[float, str | None]:
        """The answer's score in 0–1 and a note (None when there is nothing to say)."""
        if self.fn is None:
            raise CheckError(f"{self.name} is scored by the comparison (it asks the server), not on its own")
        return normalised(self.fn(answer, row), self.name)


def _plain(value: object) -> object:
    """A numpy scalar (``numpy.bool_``, ``numpy.float64``: what pandas and numpy code returns) as its Python value."""
    item = getattr(value, "item", None)
    return item() if callable(item) and type(value).__module__ == "numpy" else value


def normalised(result: object, name: str) -> tuple[float, str | None]:
    """A check's result as (score in 0–1, note)."""
    note: str | None = None
    if isinstance(result, tuple):
        if len(result) != 2 or not isinstance(result[1], str):
            raise CheckError(f"check {name} returned {result!r}: a tuple must be (score, 'note')")
        result, note = result
    result = _plain(result)
    if isinstance(result, bool):
        return (1.0 if result else 0.0), note
    if isinstance(result, (int, float)):
        value = float(result)
        if not 0.0 <= value <= 1.0:  # NaN too: a check that cannot say gives an error, not a silent blank
            raise CheckError(f"check {name} returned {value:g}: a score is 0 to 1 (or True/False)")
        return value, note
    raise CheckError(f"check {name} returned {type(result).__name__}: return True/False, a score in 0-1, "
                     "or (score, 'note')")


def as_check(item: Check | CheckFunction) -> Check:
    """A :class:`Check` from a check or a plain callable (named after the function)."""
    if isinstance(item, Check):
        return item
    if not callable(item):
        raise TypeError(f"checks= takes Check values or callables fn(answer, row), not {type(item).__name__}.")
    raw = getattr(item, "__name__", "") or type(item).__name__
    name = _NAME.sub("_", raw).strip("_") or "check"
    return Check("check" if name == "lambda" else name, item)


def named_checks(checks: Sequence[Check | CheckFunction] | Check | CheckFunction | None) -> list[Check]:
    """The checks of ``compare(checks=...)``, each named uniquely: a second ``contains`` is ``contains_2`` (or
    ``contains_3`` when a check is already named ``contains_2``), so every check has a column of its own."""
    if checks is None:
        return []
    items = [checks] if isinstance(checks, Check) or callable(checks) else list(checks)
    given = [as_check(item) for item in items]
    for check in given:
        if check.name in RESERVED_CHECK_NAMES:
            raise ValueError(f"A check cannot be named {check.name!r} (its column would be check_{check.name}, which "
                             "holds every check's notes): pass another name=.")
    taken = {check.name for check in given}  # a name given is kept; a repeat takes the next free suffix
    out: list[Check] = []
    used: set[str] = set()
    for check in given:
        if check.name in used:
            n = 2
            while f"{check.name}_{n}" in taken or f"{check.name}_{n}" in used:
                n += 1
            check = _renamed(check, f"{check.name}_{n}")
        used.add(check.name)
        out.append(check)
    return out


def _renamed(check: Check, name: str) -> Check:
    from dataclasses import replace

    return replace(check, name=name)


def as_text(value: object) -> str | None:
    """An expected answer as text (None for none: None, NaN, ""): a number is written as a person would (42, not
    42.0: a column of integers with a gap is floats in pandas), a dict or list as JSON."""
    value = _plain(value)
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def expected_text(row: Mapping[str, Any]) -> str | None:
    """The row's expected answer as text (None when it has none)."""
    return as_text(row.get("expected"))


def _expected_of(row: Mapping[str, Any], given: str | None, who: str) -> str:
    if given is not None:
        return given
    value = expected_text(row)
    if value is None:
        raise CheckError(
            f"{who} has no expected answer for this prompt: pass one to {who}(...) or compare(expected=...)"
        )
    return value


# --- the common checks -------------------------------------------------------------------------------------------


def text_argument(value: object, who: str, *, optional: bool = False) -> str | None:
    """A check's text argument: a string as given, a number as its text (``42``, ``4.0`` → ``"4"``); anything else
    (or None where one is needed) is refused now, naming the value, rather than erring in every row's cell."""
    if value is None and optional:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return as_text(value)
    raise TypeError(f"{who} takes a text (or a number), not {value!r} ({type(value).__name__}).")


def count_argument(value: object, who: str) -> int:
    """A check's whole-number argument (not a bool, not a string); refused now, naming the value."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{who} takes a whole number, not {value!r} ({type(value).__name__}).")
    return value


def score_argument(value: object, who: str) -> float:
    """A threshold: a number from 0 to 1; refused now, naming the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{who} is a score from 0 to 1, not {value!r}.")
    return float(value)


def model_argument(value: object, who: str) -> str | None:
    """A model id (or None: the default); refused now, naming the value."""
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise TypeError(f"{who} is a model id (text), not {value!r}.")
    return value


def contains(text: str, case: bool = False, *, name: str = "contains") -> Check:
    """The answer contains ``text`` (ignoring case unless ``case=True``; a number is looked for as its text)."""
    wanted = text_argument(text, "contains(text)")
    assert wanted is not None
    if not wanted:
        raise ValueError("contains(text) needs the text to look for, not ''.")
    text = wanted

    def fn(answer: str, row: Mapping[str, Any]) -> tuple[float, str]:
        found = text in answer if case else text.casefold() in answer.casefold()
        return (1.0, "") if found else (0.0, f"no {text!r}")

    return Check(name, _quiet(fn), threshold=1.0)


def regex(pattern: str, flags: int = 0, *, name: str = "regex") -> Check:
    """The answer matches ``pattern`` somewhere (``re.search``; anchor it with ``^…$`` for the whole answer)."""
    if not isinstance(pattern, str):
        raise TypeError(f"regex(pattern) takes a regular expression (text), not {pattern!r}.")
    compiled = re.compile(pattern, flags)

    def fn(answer: str, row: Mapping[str, Any]) -> tuple[float, str]:
        return (1.0, "") if compiled.search(answer.strip()) else (0.0, f"does not match {pattern!r}")

    return Check(name, _quiet(fn), threshold=1.0)


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def equals(expected: str | None = None, *, name: str = "equals") -> Check:
    """The answer equals ``expected`` (default: the row's expected answer), whitespace and case normalised; a number
    is compared as its text."""
    expected = text_argument(expected, "equals(expected)", optional=True)

    def fn(answer: str, row: Mapping[str, Any]) -> tuple[float, str]:
        want = _expected_of(row, expected, "equals")
        return (1.0, "") if _normal(answer) == _normal(want) else (0.0, f"not {want!r}")

    return Check(name, _quiet(fn), threshold=1.0)


_FENCE = re.compile(r"^```[\w-]*\s*\n(.*?)\n?```$", re.DOTALL)


def json_value(answer: str) -> Any:
    """The JSON an answer holds: the whole answer, or one fenced code block (models often wrap JSON in one)."""
    text = answer.strip()
    fenced = _FENCE.match(text)
    return json.loads(fenced.group(1) if fenced else text)


def is_json(*, name: str = "is_json") -> Check:
    """The answer is JSON (alone, or as the one fenced code block)."""

    def fn(answer: str, row: Mapping[str, Any]) -> tuple[float, str]:
        try:
            json_value(answer)
        except ValueError as exc:
            return 0.0, f"not JSON ({exc})"
        return 1.0, ""

    return Check(name, _quiet(fn), threshold=1.0)


def matches_schema(schema: Mapping[str, Any], *, name: str = "matches_schema") -> Check:
    """The answer is JSON valid against ``schema`` (a JSON Schema; checked with the ``jsonschema`` library)."""
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        raise ImportError(
            "matches_schema() validates with jsonschema, which is not installed: pip install jsonschema"
        ) from None
    plain = dict(schema)
    validator_type = jsonschema.validators.validator_for(plain)
    validator_type.check_schema(plain)  # a broken schema is the caller's error, said now
    validator = validator_type(plain)

    def fn(answer: str, row: Mapping[str, Any]) -> tuple[float, str]:
        try:
            value = json_value(answer)
        except ValueError as exc:
            return 0.0, f"not JSON ({exc})"
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is None:
            return 1.0, ""
        where = "/".join(str(p) for p in error.absolute_path)
        return 0.0, f"{where + ': ' if where else ''}{error.message}"

    return Check(name, _quiet(fn), threshold=1.0)


def max_words(n: int, *, name: str = "max_words") -> Check:
    """The answer has at most ``n`` words."""
    n = count_argument(n, "max_words(n)")
    if n < 0:
        raise ValueError(f"max_words(n) takes a count of words, not {n}.")

    def fn(answer: str, row: Mapping[str, Any]) -> tuple[float, str]:
        count = len(answer.split())
        return (1.0, "") if count <= n else (0.0, f"{count} words, more than {n}")

    return Check(name, _quiet(fn), threshold=1.0)


def _quiet(fn: Callable[[str, Mapping[str, Any]], tuple[float, str]]) -> CheckFunction:
    """A built-in check's function, with its empty note (nothing to say) turned into no note."""

    def wrapped(answer: str, row: Mapping[str, Any]) -> CheckResult:
        score, note = fn(answer, row)
        return (score, note) if note else score

    return wrapped
