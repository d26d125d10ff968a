"""The checks as plain values: scores, notes, thresholds, names, and what a bad check or result says."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from lm_notebook.checks import (
    Check,
    CheckError,
    contains,
    equals,
    is_json,
    judge,
    matches_schema,
    max_words,
    regex,
    similar_to,
)
from lm_notebook.comparison.checks import as_check, named_checks
from lm_notebook.comparison.judge import parse_grade

ROW: dict[str, Any] = {"prompt": "Capital of France?", "expected": "Paris"}


def test_contains_regex_equals_and_max_words() -> None:
    assert contains("Paris").score("It's paris.", ROW) == (1.0, None)
    assert contains("Paris", case=True).score("It's paris.", ROW) == (0.0, "no 'Paris'")
    assert regex(r"^\d+$").score(" 42\n", ROW) == (1.0, None)
    assert regex(r"^\d+$").score("42 apples", ROW)[0] == 0.0
    assert equals().score("  PARIS ", ROW) == (1.0, None)
    assert equals("Lyon").score("Paris", ROW) == (0.0, "not 'Lyon'")
    with pytest.raises(CheckError, match="no expected answer"):
        equals().score("Paris", {"prompt": "x", "expected": None})
    assert max_words(3).score("one two three", ROW) == (1.0, None)
    assert max_words(3).score("one two three four", ROW) == (0.0, "4 words, more than 3")


def test_is_json_and_matches_schema_accept_a_fenced_block() -> None:
    assert is_json().score('{"a": 1}', ROW) == (1.0, None)
    assert is_json().score('```json\n{"a": 1}\n```', ROW) == (1.0, None)
    assert is_json().score("not json", ROW)[0] == 0.0
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    assert matches_schema(schema).score('{"city": "Paris"}', ROW) == (1.0, None)
    score, note = matches_schema(schema).score('{"city": 3}', ROW)
    assert score == 0.0 and note is not None and note.startswith("city: 3 is not of type 'string'")
    assert "'city' is a required property" in str(matches_schema(schema).score("{}", ROW)[1])
    with pytest.raises(jsonschema.SchemaError):
        matches_schema({"type": 12})


def test_plain_callables_and_their_results() -> None:
    def short(answer: str, row: Any) -> bool:
        return len(answer) < 10

    assert as_check(short).name == "short" and as_check(short).score("tiny", ROW) == (1.0, None)
    assert as_check(lambda a, r: 0.25).name == "check"
    assert as_check(lambda a, r: (0.5, "half")).score("x", ROW) == (0.5, "half")
    for bad, message in ((lambda a, r: 2.0, "a score is 0 to 1"), (lambda a, r: "yes", "returned str"),
                         (lambda a, r: (1, 2), "must be \\(score, 'note'\\)")):
        with pytest.raises(CheckError, match=message):
            as_check(bad).score("x", ROW)
    with pytest.raises(TypeError, match="checks= takes Check values or callables"):
        as_check("contains:42")  # type: ignore[arg-type]


def test_names_are_unique_and_thresholds_default_per_kind() -> None:
    names = [c.name for c in named_checks([contains("a"), contains("b"), max_words(3), contains("c", name="c")])]
    assert names == ["contains", "contains_2", "max_words", "c"]
    assert [c.name for c in named_checks(contains("a"))] == ["contains"]
    # a name given is kept, and a repeat takes the next free suffix: every check has a column of its own
    clash = named_checks([contains("a"), contains("b"), contains("c", name="contains_2"), contains("d")])
    assert [c.name for c in clash] == ["contains", "contains_3", "contains_2", "contains_4"]
    assert named_checks(None) == []
    assert contains("a").threshold == 1.0 and as_check(lambda a, r: 1.0).threshold == 0.5
    assert similar_to().threshold == 0.8 and judge("ok?").threshold == 0.75
    assert isinstance(judge("ok?"), Check)


def test_judge_scales_and_what_its_replies_mean() -> None:
    five = judge("Correct?", model="m")
    assert five.scale == (1, 5) and judge("x", scale=(0, 10)).scale == (0, 10)
    assert five.grade('{"score": 4, "reason": "Mostly right."}') == (0.75, "Mostly right.")
    assert five.grade('Sure! ```json\n{"score": 5, "reason": "ok"}\n```') == (1.0, "ok")
    assert five.grade("Score: 1 because it is wrong") == (0.0, None)
    with pytest.raises(CheckError, match="outside its scale 1-5"):
        five.grade('{"score": 9}')
    with pytest.raises(CheckError, match="has no score"):
        parse_grade("I think it is fine.")
    for bad in (0, 1, (5, 1)):
        with pytest.raises(ValueError, match=r"judge\(scale=\.\.\.\)"):
            judge("x", scale=bad)
    with pytest.raises(ValueError, match="needs the rubric"):
        judge(" ")
    with pytest.raises(ValueError, match=r"similar_to\(threshold=\.\.\.\) is a score from 0 to 1"):
        similar_to(threshold=1.5)


def test_the_judges_prompt_holds_the_rubric_question_reference_and_answer() -> None:
    system, user = judge("Is it concise?", model="m").messages(ROW, "It is Paris.")
    assert system["role"] == "system" and system["content"].startswith("You are a judge")
    text = user["content"]
    for part in ("Rubric: Is it concise?", "Question:\n<<<\nCapital of France?\n>>>", "Reference answer:\n<<<\nParis",
                 "Answer to grade:\n<<<\nIt is Paris.\n>>>", "an integer from 1 to 5"):
        assert part in text
    _, bare = judge("ok?").messages({"prompt": "Q", "expected": None}, "A")
    assert "Reference answer" not in bare["content"]


def test_a_check_named_notes_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be named 'notes'"):
        named_checks([contains("x", name="notes")])


def test_the_public_module_has_the_issues_names() -> None:
    import lm_notebook
    from lm_notebook import checks

    names = {"contains", "regex", "equals", "is_json", "matches_schema", "max_words", "similar_to", "judge"}
    assert names <= set(checks.__all__) and all(callable(getattr(checks, n)) for n in names)
    assert callable(lm_notebook.embed) and lm_notebook.Embeddings.__name__ == "Embeddings"


def test_a_threshold_outside_0_to_1_is_refused() -> None:
    with pytest.raises(ValueError, match=r"judge\(threshold=\.\.\.\) is a score from 0 to 1 \(0.75 is a grade of 4 "
                                         r"on 1-5\), not 4"):
        judge("Ok?", model="m", threshold=4)
    with pytest.raises(ValueError, match="Check 'short': threshold is a score from 0 to 1, not 50"):
        Check("short", lambda a, r: True, threshold=50)
