"""compare(checks=...) on the edges a review found: the judge in a core install (no jsonschema), a failed check
that decides a row another check could not score, input columns named like check columns, bad check arguments."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from checks_server import EXPECTED, PROMPTS, checks_server

from lm_notebook import LMStudioClient, compare, summary
from lm_notebook.checks import contains, equals, judge, max_words, similar_to
from lm_notebook.comparison.checks import CheckError
from lm_notebook.comparison.judge import parse_grade
from lm_notebook.testing import MockLMStudioServer


@pytest.fixture
def server() -> Iterator[MockLMStudioServer]:
    with checks_server() as srv:
        yield srv


def test_the_judge_works_without_jsonschema_installed(server: MockLMStudioServer, client: LMStudioClient,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema", None)  # `import jsonschema` raises ImportError, as uninstalled
    df = compare(PROMPTS, ["good"], client=client, progress=False, temperature=0, expected=EXPECTED,
                 checks=[judge("Is it correct?", model="judge-a")])
    assert df["check_judge"].notna().all(), df["check_notes"].tolist()
    sent = [r.json for r in server.requests if r.model == "judge-a" and isinstance(r.json, dict)]
    assert sent and all(body["response_format"]["type"] == "json_schema" for body in sent)  # still constrained


def test_a_failed_check_fails_the_row_even_when_another_check_errs(client: LMStudioClient) -> None:
    def boom(answer: str, row: Any) -> bool:
        raise RuntimeError("boom")

    df = compare(PROMPTS, ["good", "bad"], client=client, progress=False, checks=[contains("Paris"), boom])
    df = df.set_index(["prompt_name", "model"])
    assert df.loc[("sum", "good"), "check_contains"] == 0.0 and df["check_boom"].isna().all()
    failed = df.loc[("sum", "good"), "passed"]
    assert not pd.isna(failed) and not failed  # "4" has no "Paris": failed, whatever boom says
    assert pd.isna(df.loc[("capital", "good"), "passed"])  # contains passed, boom could not tell: no verdict
    assert df["score"].isna().all()  # a check is missing on every row
    assert summary(df.reset_index()).loc["good", "scored"] == 1


def test_input_columns_named_like_check_columns_are_renamed(client: LMStudioClient) -> None:
    df = pd.DataFrame({"q": ["What is the capital of France?", "What is 2 + 2? Answer with a number."],
                       "check_contains": ["x", "y"], "check_tag": ["a", "b"]})
    out = compare(df, ["good"], client=client, progress=False, template="{q}", checks=[contains("Paris")])
    assert list(out.columns).count("check_contains") == 1 and out["check_contains"].tolist() == [1.0, 0.0]
    assert out["check_contains_input"].tolist() == ["x", "y"] and out["check_tag_input"].tolist() == ["a", "b"]
    stats = summary(out)  # the check columns are the ones compare() made, not every check_* name
    assert stats.loc["good", "pass_rate"] == 0.5 and "pass_rate_tag_input" not in stats.columns
    dicts = {"capital": {"prompt": PROMPTS["capital"], "check_tag": "geo"}}
    assert compare(dicts, ["good"], client=client, progress=False, checks=[contains("Paris")])[
        "check_tag_input"].tolist() == ["geo"]


def test_the_judge_reply_parser_keeps_signs_and_reasons_with_braces() -> None:
    assert parse_grade("Score: -1") == (-1.0, None)  # out of any scale: judge().grade refuses it
    with pytest.raises(CheckError, match="outside its scale 1-5"):
        judge("Ok?").grade("Score: -1")
    assert parse_grade('{"score": 4, "reason": "it sets {x} right"}') == (4.0, "it sets {x} right")
    assert parse_grade('Here: {"note": 1} then {"score": 2, "reason": "r"}') == (2.0, "r")


def test_a_misspelt_field_of_dict_prompts_is_an_error_not_the_reference(client: LMStudioClient) -> None:
    prompts = {name: {"prompt": text, "answer": EXPECTED[name]} for name, text in PROMPTS.items()}
    with pytest.raises(ValueError, match=r'names no field of the dict prompts.*Did you mean "answer"'):
        compare(prompts, ["good"], client=client, progress=False, expected="anwser", checks=[contains("Paris")])
    df = compare(prompts, ["good"], client=client, progress=False, expected="Paris", checks=[contains("Paris")])
    assert df["expected"].tolist() == ["Paris", "Paris"]  # a text unlike any field is still the reference


@pytest.mark.parametrize(("make", "words"), [
    (lambda: contains(None), "contains(text) takes a text (or a number), not None"),
    (lambda: contains(["Paris"]), "contains(text) takes a text (or a number), not ['Paris'] (list)"),
    (lambda: contains(""), "contains(text) needs the text to look for"),
    (lambda: max_words("5"), "max_words(n) takes a whole number, not '5' (str)"),
    (lambda: similar_to(threshold="0.8"), "similar_to(threshold=...) is a score from 0 to 1, not '0.8'"),
    (lambda: similar_to(model=3), "similar_to(model=...) is a model id (text), not 3"),
    (lambda: judge("ok?", model=3), "judge(model=...) is a model id (text), not 3"),
    (lambda: equals(["a"]), "equals(expected) takes a text (or a number), not ['a']"),
])
def test_bad_check_arguments_are_refused_when_the_check_is_made(make: Any, words: str) -> None:
    # before: accepted, then every row's cell erred (AttributeError: 'int' object has no attribute 'casefold') or a
    # bare TypeError ('<' not supported) came from inside
    with pytest.raises((TypeError, ValueError)) as info:
        make()
    assert words in str(info.value)


def test_numbers_given_to_the_checks_are_their_text(server: MockLMStudioServer, client: LMStudioClient) -> None:
    # the issue's "numbers are references too", for the checks' own arguments as for expected=
    server.answer("good", "What is 2+2?", "4")
    df = compare({"sum": "What is 2+2?"}, ["good"], client=client, progress=False, temperature=0,
                 checks=[contains(4), equals(4.0), similar_to(reference=4)])
    row = df.iloc[0]
    assert (row["check_contains"], row["check_equals"]) == (1.0, 1.0), row["check_notes"]
    assert row["check_similar_to"] == pytest.approx(1.0), row["check_notes"]


def test_a_similarity_that_is_not_a_number_is_an_error_not_a_pass(server: MockLMStudioServer, client: LMStudioClient,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # a server that returns broken (NaN) vectors: max(0, min(1, nan)) read as 1.0, a pass
    monkeypatch.setattr("lm_notebook.comparison.scoring.cosine", lambda a, b: float("nan"))
    df = compare(PROMPTS, ["good"], client=client, progress=False, temperature=0, expected=EXPECTED,
                 checks=[similar_to()])
    assert df["check_similar_to"].isna().all()
    assert df["check_notes"].str.contains("gave no similarity").all(), df["check_notes"].tolist()
    assert not df["passed"].eq(True).any()


def test_an_expected_series_with_repeated_labels(server: MockLMStudioServer, client: LMStudioClient) -> None:
    """A Series keyed by labels it repeats: a column of the prompts' own DataFrame (the same labels, in the same
    order) lines up row by row; any other is ambiguous, and refused before anything is sent."""
    prompts = pd.DataFrame({"q": [PROMPTS["capital"], PROMPTS["sum"]], "answer": ["Paris", "4"]}, index=[7, 7])
    def says_expected(answer: str, row: Any) -> bool:
        return str(row["expected"]) in answer

    df = compare(prompts, ["good"], client=client, progress=False, template="{q}", expected=prompts["answer"],
                 checks=[says_expected])
    assert df["expected"].tolist() == ["Paris", "4"] and df["check_says_expected"].tolist() == [1.0, 1.0]
    sent = len(server.requests)
    ambiguous = pd.Series(["Paris", "Lyon", "4"], index=["capital", "capital", "sum"])
    with pytest.raises(ValueError, match=r"expected= is a Series whose index repeats 'capital' \(2 answers\)"):
        compare(PROMPTS, ["good"], client=client, progress=False, expected=ambiguous, checks=[equals()])
    other_rows = prompts.set_axis([7, 8])  # labels that differ from the Series' [7, 7]: which answer is 7's?
    with pytest.raises(ValueError, match=r"repeats 7 \(2 answers\).*expected=list\(series\)"):
        compare(other_rows, ["good"], client=client, progress=False, template="{q}", expected=prompts["answer"],
                checks=[equals()])
    assert len(server.requests) == sent


def test_a_judge_reply_with_no_score_is_asked_again_on_the_next_run(server: MockLMStudioServer,
                                                                   client: LMStudioClient, tmp_path: Any) -> None:
    """An unparseable reply is not cached (a re-run asks for it again); the good ones are."""
    from lm_notebook.comparison.cache import ResponseCache

    cache = ResponseCache(tmp_path / "answers.sqlite")
    server.script("judge-a", "I refuse to grade.")  # the first grading request gets this
    kw: dict[str, Any] = dict(client=client, progress=False, temperature=0, expected=EXPECTED, cache=cache,
                              checks=[judge("Is it correct?", model="judge-a")])
    first = compare(PROMPTS, ["good"], **kw)
    assert first["check_judge"].isna().sum() == 1 and "has no score" in " ".join(map(str, first["check_notes"]))
    server.clear_requests()
    second = compare(PROMPTS, ["good"], **kw)
    assert [r.model for r in server.requests if r.is_chat] == ["judge-a"]  # only the unparsed one, asked again
    assert second["check_judge"].notna().all() and second["cached"].all()
    server.clear_requests()
    compare(PROMPTS, ["good"], **kw)
    assert [r.model for r in server.requests if r.is_chat] == []


def test_identical_judge_requests_in_one_run_are_sent_once(server: MockLMStudioServer,
                                                           client: LMStudioClient) -> None:
    """Two rows with the same prompt and answer (repeats at temperature 0), and two checks with the same rubric:
    one grading request per distinct (judge, prompt, answer, rubric), its verdict shared."""
    df = compare(PROMPTS, ["good"], client=client, progress=False, temperature=0, expected=EXPECTED, repeats=2,
                 checks=[judge("Is it correct?", model="judge-a"),
                         judge("Is it correct?", model="judge-a", name="again"),
                         judge("Is it short?", model="judge-a", name="short")])
    judged = [r.chat_body["messages"][1]["content"] for r in server.requests if r.is_chat and r.model == "judge-a"]
    assert len(judged) == len(set(judged)) == 4  # 2 prompts × 2 rubrics, for 4 rows × 3 checks
    assert df["check_judge"].notna().all() and df["check_judge"].tolist() == df["check_again"].tolist()
    assert df["check_short"].notna().all()
