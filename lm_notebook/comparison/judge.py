"""The checks that ask the server: :func:`judge` (a local model grades each answer) and :func:`similar_to`
(cosine similarity of embeddings). They are scored after every candidate has answered (see
:mod:`lm_notebook.comparison.scoring`).

The judge's prompt (``{expected}`` and its section only when the row has an expected answer; ``low``–``high`` is
``scale``, 1–5 by default)::

    system: You are a judge: you grade one answer to one question against a rubric. You reply with one line of
            JSON and nothing else.
    user:   Grade the answer below against the rubric (and the reference answer).

            Rubric: {rubric}

            Question:
            <<<
            {prompt}
            >>>

            Reference answer:
            <<<
            {expected}
            >>>

            Answer to grade:
            <<<
            {answer}
            >>>

            Reply with one line of JSON: {"score": <an integer from {low} to {high}>, "reason": "<one short
            sentence>"}. {low} means the answer fails the rubric, {high} that it meets it fully.

The reply is also asked to follow a JSON schema (``score`` an integer on the scale, ``reason`` a string), which a
server that constrains its output (LM Studio, llama.cpp) then keeps to. The grade becomes a score in 0–1
(``(grade - low) / (high - low)``) and the reason the row's note. It is sent with ``temperature=0``, so ``cache=``
keeps it: re-running a comparison with the same judge asks nothing again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lm_notebook.comparison.checks import (
    Check,
    CheckError,
    expected_text,
    model_argument,
    score_argument,
    text_argument,
)

JUDGE_SYSTEM = (
    "You are a judge: you grade one answer to one question against a rubric. You reply with one line of JSON and "
    "nothing else."
)
JUDGE_PARAMS: dict[str, Any] = {"temperature": 0, "max_tokens": 160}
DEFAULT_SCALE = (1, 5)


@dataclass(frozen=True)
class JudgeCheck(Check):
    """:func:`judge`'s check: ``model`` grades each answer against ``rubric`` on ``scale``."""

    rubric: str = ""
    model: str | None = None
    scale: tuple[int, int] = DEFAULT_SCALE

    def messages(self, row: Mapping[str, Any], answer: str) -> list[dict[str, str]]:
        """The judge's conversation for one answer."""
        low, high = self.scale
        expected = expected_text(row)  # a number (42) is a reference too
        has_expected = expected is not None
        parts = [
            "Grade the answer below against the rubric" + (" and the reference answer." if has_expected else "."),
            f"Rubric: {self.rubric}",
            f"Question:\n<<<\n{row.get('prompt', '')}\n>>>",
        ]
        if has_expected:
            parts.append(f"Reference answer:\n<<<\n{expected}\n>>>")
        parts.append(f"Answer to grade:\n<<<\n{answer}\n>>>")
        parts.append(
            f'Reply with one line of JSON: {{"score": <an integer from {low} to {high}>, "reason": "<one short '
            f'sentence>"}}. {low} means the answer fails the rubric, {high} that it meets it fully.'
        )
        return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]

    def reply_schema(self) -> dict[str, Any]:
        """The JSON schema the judge's reply is asked to follow (``schema=``: a server that constrains its output
        to it, as LM Studio and llama.cpp do, cannot answer in another shape)."""
        low, high = self.scale
        return {
            "type": "object",
            "properties": {"score": {"type": "integer", "minimum": low, "maximum": high}, "reason": {"type": "string"}},
            "required": ["score", "reason"],
        }

    def grade(self, reply: str) -> tuple[float, str | None]:
        """The judge's reply as (score in 0–1, reason)."""
        low, high = self.scale
        grade, reason = parse_grade(reply)
        if not low <= grade <= high:
            raise CheckError(f"the judge gave {grade:g}, outside its scale {low}-{high} (it said: {_short(reply)})")
        return (grade - low) / (high - low), reason


_OBJECT_START = re.compile(r"\{")
# "Score: -1" is a grade of -1 (out of scale), not 1: the sign is read after the separator
_SCORE_WORD = re.compile(r"score[^\w-]{0,4}(-?\d+(?:\.\d+)?)", re.IGNORECASE)


def _short(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def parse_grade(reply: str) -> tuple[float, str | None]:
    """The grade and reason in a judge's reply: its JSON object, else a "score: N" it wrote."""
    decoder = json.JSONDecoder()
    for match in _OBJECT_START.finditer(reply):
        try:
            data, _ = decoder.raw_decode(reply, match.start())  # the whole object: a reason may hold braces
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("score"), (int, float)) and not isinstance(
            data.get("score"), bool
        ):
            reason = data.get("reason")
            return float(data["score"]), (" ".join(str(reason).split()) if reason else None)
    word = _SCORE_WORD.search(reply)
    if word:
        return float(word.group(1)), None
    raise CheckError(f"the judge's reply has no score (it said: {_short(reply)})")


def judge(
    rubric: str,
    model: str | None = None,
    scale: int | tuple[int, int] = 5,
    *,
    threshold: float = 0.75,
    name: str = "judge",
) -> JudgeCheck:
    """A local model grades each answer against ``rubric`` (and the row's expected answer, when it has one).

    ``model``: the judge (default: the client's current model; with ``compare(endpoints=...)``, it runs on the first
    endpoint that lists it, and ``"name/model"`` pins it to one); ``scale``: grades 1 to ``scale``, or ``(low,
    high)``; ``threshold``: the score (0–1) that passes — 0.75 is 4 of 5. The prompt it sends is in the
    documentation of :mod:`lm_notebook.comparison.judge` (``help(lm_notebook.comparison.judge)``), and
    ``judge(...).messages(row, answer)`` builds it for one answer.

    >>> judge("Is it correct and concise?", model="qwen2.5-7b-instruct")   # doctest: +ELLIPSIS
    JudgeCheck(name='judge', threshold=0.75, rubric='Is it correct and concise?', model='qwen2.5-7b-instruct', ...)
    """
    if not isinstance(rubric, str) or not rubric.strip():
        raise ValueError("judge(rubric) needs the rubric the answers are graded on, e.g. 'Is it correct?'.")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        # a grade given as the threshold (4 of 5) would pass nothing, and every pass rate would read 0
        raise ValueError(f"judge(threshold=...) is a score from 0 to 1 (0.75 is a grade of 4 on 1-5), not "
                         f"{threshold!r}.")
    bounds = (1, scale) if isinstance(scale, int) else tuple(scale)
    if len(bounds) != 2 or not all(isinstance(b, int) for b in bounds) or bounds[0] >= bounds[1]:
        raise ValueError(f"judge(scale=...) is a top grade (5: grades 1-5) or (low, high), not {scale!r}.")
    return JudgeCheck(name, None, threshold, rubric=rubric, model=model_argument(model, "judge(model=...)"),
                      scale=(bounds[0], bounds[1]))


@dataclass(frozen=True)
class SimilarityCheck(Check):
    """:func:`similar_to`'s check: cosine similarity of the answer's and the reference's embeddings."""

    reference: str | None = None
    model: str | None = None

    def reference_for(self, row: Mapping[str, Any]) -> str:
        if self.reference is not None:
            return self.reference
        value = expected_text(row)
        if value is None:
            raise CheckError(
                f"{self.name} has no reference for this prompt: pass similar_to(reference=...) or compare(expected=...)"
            )
        return value


def similar_to(
    reference: str | None = None, threshold: float = 0.8, model: str | None = None, *, name: str = "similar_to"
) -> SimilarityCheck:
    """The answer means about the same as ``reference`` (default: the row's expected answer): the cosine similarity
    of their embeddings (0–1), passing from ``threshold``. ``model``: the embedding model (default: the server's
    one embedding model; with ``compare(endpoints=...)``, the first endpoint that lists it runs it)."""
    return SimilarityCheck(name, None, score_argument(threshold, "similar_to(threshold=...)"),
                           reference=text_argument(reference, "similar_to(reference)", optional=True),
                           model=model_argument(model, "similar_to(model=...)"))
