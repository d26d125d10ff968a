"""compare(checks=..., expected=...) over loopback to the fake server: check columns, pass rates, judges scheduled
after the candidates and grouped by judge model, similarity from embeddings, re-scoring from the cache."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from checks_server import EXPECTED, PROMPTS, checks_server

import lm_notebook.comparison.run as run_module
from lm_notebook import AsyncLMStudioClient, LMStudioClient, acompare, compare, comparison_table, plot_summary, summary
from lm_notebook.checks import contains, equals, judge, max_words, regex, similar_to
from lm_notebook.comparison import ComparisonInterrupted
from lm_notebook.comparison.cache import ResponseCache
from lm_notebook.testing import MockLMStudioServer, ModelSpec

MODELS = ["good", "bad"]


@pytest.fixture
def server() -> Iterator[MockLMStudioServer]:
    """good answers right, bad answers at length; judge grades; embed embeds."""
    with checks_server() as srv:
        yield srv


def run(client: LMStudioClient, checks: list[Any], **kw: Any) -> pd.DataFrame:
    kw.setdefault("expected", EXPECTED)
    return compare(PROMPTS, MODELS, client=client, progress=False, temperature=0, checks=checks, **kw)


def test_each_check_scores_each_answer_and_rows_pass_when_every_check_does(client: LMStudioClient) -> None:
    df = run(client, [contains("Paris"), max_words(12), lambda answer, row: len(answer) > 0])
    assert list(df.columns[-6:]) == ["check_contains", "check_max_words", "check_check", "score", "passed",
                                     "check_notes"]
    assert df["expected"].tolist() == ["Paris"] * 2 + ["4"] * 2
    by = df.set_index(["prompt_name", "model"])
    assert by.loc[("capital", "good"), "passed"] and by.loc[("capital", "good"), "score"] == 1.0
    bad = by.loc[("capital", "bad")]
    assert not bad["passed"] and bad["check_max_words"] == 0.0 and "max_words: 48 words, more than 12" in bad[
        "check_notes"]
    assert by.loc[("sum", "good"), "check_contains"] == 0.0 and not by.loc[("sum", "good"), "passed"]
    assert by.loc[("sum", "good"), "score"] == pytest.approx(2 / 3)


def test_a_check_that_raises_marks_only_its_own_cell(client: LMStudioClient) -> None:
    def broken(answer: str, row: Any) -> bool:
        if row["prompt_name"] == "sum":
            raise RuntimeError("boom")
        return True

    frame = run(client, [broken, regex(r"\w")])
    df = frame.set_index(["prompt_name", "model"])
    assert pd.isna(df.loc[("sum", "good"), "check_broken"]) and df.loc[("sum", "good"), "check_regex"] == 1.0
    assert df.loc[("sum", "good"), "check_notes"] == "broken: error: RuntimeError: boom"
    # a row a check could not score has no verdict: neither passed nor failed, and no score (not the others' mean)
    assert pd.isna(df.loc[("sum", "good"), "passed"]) and pd.isna(df.loc[("sum", "good"), "score"])
    assert df.loc[("capital", "good"), "passed"] and df.loc[("capital", "good"), "check_broken"] == 1.0
    stats = summary(frame)
    assert stats.loc["good", "scored"] == 1 and stats.loc["good", "pass_rate"] == 1.0  # 1 of the 1 scored
    assert stats.loc["good", "pass_rate_regex"] == 1.0 and stats.loc["good", "pass_rate_broken"] == 1.0
    assert "? not scored — broken: error: RuntimeError: boom" in comparison_table(frame).frame.loc["sum", "good"]


def test_an_error_row_is_not_scored_and_counts_as_failed(server: MockLMStudioServer, client: LMStudioClient) -> None:
    df = compare(PROMPTS, ["good", "missing"], client=client, progress=False, checks=[contains("Paris")])
    missing = df[df["model"] == "missing"]
    assert (missing["status"] == "error").all() and missing["check_contains"].isna().all()
    assert not missing["passed"].any() and missing["check_notes"].isna().all()
    stats = summary(df)
    assert stats.loc["missing", "pass_rate"] == 0.0 and stats.loc["good", "pass_rate"] == 0.5
    assert stats.loc["missing", "scored"] == 2 and stats.loc["missing", "pass_rate_contains"] == 0.0
    # unanswered rows fail, so they score 0 in the means too (not NaN: the model was asked and gave nothing)
    assert stats.loc["missing", "score_mean"] == 0.0 and stats.loc["missing", "check_contains_mean"] == 0.0
    assert stats.loc["good", "score_mean"] == 0.5
    assert list(stats.index) == ["good", "missing"]


def test_equals_and_expected_given_every_way(client: LMStudioClient) -> None:
    as_dict = run(client, [equals()])
    assert as_dict.set_index(["prompt_name", "model"]).loc[("sum", "good"), "check_equals"] == 1.0
    frame = pd.DataFrame({"q": list(PROMPTS.values()), "answer": list(EXPECTED.values())}, index=list(PROMPTS))
    by_column = compare(frame, ["good"], client=client, template="{q}", progress=False, expected="answer",
                        checks=[equals()])
    by_series = compare(frame, ["good"], client=client, template="{q}", progress=False, expected=frame["answer"],
                        checks=[equals()])
    fields = {name: {"prompt": text, "expected": EXPECTED[name]} for name, text in PROMPTS.items()}
    in_prompts = compare(fields, ["good"], client=client, progress=False, checks=[equals()])
    as_list = compare(list(PROMPTS.values()), ["good"], client=client, progress=False,
                      expected=list(EXPECTED.values()), checks=[equals()])
    for df in (by_column, by_series, in_prompts, as_list):
        assert df["expected"].tolist() == list(EXPECTED.values()) and df["check_equals"].tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="keys that name no prompt"):
        run(client, [equals()], expected={"nope": "x"})
    with pytest.raises(ValueError, match="lists 1 answers for 2 prompts"):
        run(client, [equals()], expected=["x"])


def test_similar_to_passes_and_fails_for_the_right_reasons(server: MockLMStudioServer, client: LMStudioClient) -> None:
    df = run(client, [similar_to(threshold=0.8)]).set_index(["prompt_name", "model"])
    assert df.loc[("capital", "good"), "check_similar_to"] == pytest.approx(1.0)  # the same words
    assert df.loc[("capital", "bad"), "check_similar_to"] < 0.5
    assert "similarity" in df.loc[("capital", "bad"), "check_notes"]
    (request,) = [r for r in server.requests if r.path == "/v1/embeddings"]  # one batch for every text
    assert request.json["model"] == "embed" and "Paris" in request.json["input"]


def test_judges_run_after_every_candidate_one_judge_model_at_a_time(server: MockLMStudioServer,
                                                                    client: LMStudioClient) -> None:
    df = run(client, [judge("Is it correct?", model="judge-a"), judge("Is it short?", model="judge-b")])
    chats = [r.model for r in server.requests if r.is_chat]
    assert sorted(chats[:4]) == ["bad", "bad", "good", "good"]
    assert chats[4:] == ["judge-a"] * 4 + ["judge-b"] * 4  # after the candidates, grouped by judge
    by = df.set_index(["prompt_name", "model"])
    assert by.loc[("capital", "good"), "check_judge"] == 1.0  # the reference's word is in the answer
    assert by.loc[("capital", "good"), "passed"] and not by.loc[("capital", "bad"), "passed"]
    assert "of the reference answer's 1 word" in by.loc[("capital", "bad"), "check_notes"]
    judged = [r.chat_body for r in server.requests if r.model == "judge-a"]
    assert all(body["temperature"] == 0 and body["messages"][0]["content"].startswith("You are a judge")
               and body["response_format"]["type"] == "json_schema" for body in judged)


def test_a_judge_that_fails_marks_its_cells_and_the_rest_stands(server: MockLMStudioServer,
                                                                client: LMStudioClient) -> None:
    server.script("judge-a", "I refuse to grade.", *(['{"score": 5, "reason": "fine"}'] * 3))
    df = run(client, [judge("Ok?", model="judge-a"), contains("a")])
    notes = " | ".join(str(n) for n in df["check_notes"])
    assert "judge: error: the judge's reply has no score (it said: 'I refuse to grade.')" in notes
    assert df["check_judge"].notna().sum() == 3
    assert df["check_contains"].notna().all()
    assert df["passed"].isna().sum() == 1 and df["score"].isna().sum() == 1  # the row the judge did not grade
    assert summary(df)["scored"].sum() == 3


def test_a_re_run_with_a_changed_check_re_scores_from_the_cache(server: MockLMStudioServer, client: LMStudioClient,
                                                                tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "answers.sqlite")
    checks = [contains("Paris"), judge("Is it correct?", model="judge-a"), similar_to()]
    first = run(client, checks, cache=cache)
    assert len([r for r in server.requests if r.is_chat]) == 8
    server.clear_requests()
    second = run(client, [*checks, max_words(5)], cache=cache)
    asked = [r for r in server.requests if r.is_chat or r.path == "/v1/embeddings"]
    assert asked == []  # neither candidates, judges nor embeddings were asked again
    assert second["cached"].all() and second["check_judge"].tolist() == first["check_judge"].tolist()
    assert second["check_similar_to"].tolist() == pytest.approx(first["check_similar_to"].tolist())
    assert second["check_max_words"].notna().all()
    server.clear_requests()
    run(client, [judge("Is it concise?", model="judge-a")], cache=cache)  # a new rubric: judges only
    assert [r.model for r in server.requests if r.is_chat] == ["judge-a"] * 4


def test_summary_table_and_plot_show_the_checks(client: LMStudioClient) -> None:
    pytest.importorskip("matplotlib")
    df = run(client, [contains("Paris"), max_words(12)])
    stats = summary(df)
    assert stats.loc["good", "pass_rate"] == 0.5 and stats.loc["bad", "pass_rate"] == 0.0
    assert stats.loc["good", "score_mean"] == pytest.approx(0.75)
    assert stats.loc["good", "check_contains_mean"] == 0.5 and stats.loc["bad", "check_max_words_mean"] == 0.0
    table = comparison_table(df).frame
    assert table.loc["capital", "good"].endswith("✓ passed · score 1.00")
    assert "✗ failed · score 0.50 — contains: no 'Paris'" in table.loc["sum", "good"]
    fig = plot_summary(df)
    assert len(fig.axes) == 4 and fig.axes[3].get_title() == "quality vs speed"
    assert "pass_rate" not in summary(compare(PROMPTS, ["good"], client=client, progress=False)).columns
    assert len(plot_summary(compare(PROMPTS, ["good"], client=client, progress=False)).axes) == 3


def test_stop_while_the_judge_grades_keeps_every_answer_and_the_scores_so_far(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_module, "STOP_WAIT_SECONDS", None)  # a judge ignoring its cancellation would hang
    models = [ModelSpec("good", reply_tokens=8), ModelSpec("slow-judge", ttft=300)]  # grades after 5 minutes
    with MockLMStudioServer(models=models) as srv, LMStudioClient(srv.url) as c:
        def press_stop() -> None:
            srv.wait_for_requests(1, model="slow-judge", timeout=60)
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C and the notebook's Stop button send

        stopper = threading.Thread(target=press_stop)
        stopper.start()
        with pytest.raises(ComparisonInterrupted) as stopped:
            compare(PROMPTS, ["good"], client=c, progress=False, expected=EXPECTED,
                    checks=[max_words(100), judge("Ok?", model="slow-judge")])
        stopper.join()
    df = stopped.value.frame
    assert (df["status"] == "ok").all()  # every candidate's answer is kept
    assert (df["check_max_words"] == 1.0).all() and df["check_judge"].isna().all()
    # the judge did not get to grade and no other check failed them: the rows are not judged, not failed
    assert df["passed"].isna().all() and df["score"].isna().all()
    assert all("judge: not scored (the comparison was stopped first)" in n for n in df["check_notes"])
    assert pd.isna(summary(df).loc["good", "pass_rate"]) and summary(df).loc["good", "scored"] == 0


def test_progress_hears_each_judge_after_the_rows(client: LMStudioClient) -> None:
    events: list[Any] = []
    compare(PROMPTS, MODELS, client=client, temperature=0, expected=EXPECTED, progress=events.append,
            checks=[judge("Ok?", model="judge-a"), judge("Short?", model="judge-b")])
    kinds = [e.kind for e in events]
    assert kinds.index("judging") > max(i for i, k in enumerate(kinds) if k == "row") and kinds[-1] == "end"
    judging = [(e.model, e.judged, e.to_judge) for e in events if e.kind == "judging"]
    assert judging[0] == ("judge-a", 0, 4) and judging[4] == ("judge-a", 4, 4)
    assert judging[5] == ("judge-b", 0, 4) and judging[-1] == ("judge-b", 4, 4) and len(judging) == 10


def test_acompare_scores_the_same_and_input_columns_named_like_ours_are_renamed(server: MockLMStudioServer) -> None:
    frame = pd.DataFrame({"q": [PROMPTS["capital"]], "score": [3], "expected": ["Paris"]}, index=["capital"])

    async def run_async() -> pd.DataFrame:
        async with AsyncLMStudioClient(server.url) as aclient:
            return await acompare(frame, ["good"], client=aclient, template="{q}", progress=False,
                                  checks=[equals(), judge("Ok?", model="judge-a")])

    df = asyncio.run(run_async())
    assert df.loc[0, "score_input"] == 3 and df.loc[0, "score"] == 0.5  # equals fails ("Paris."), the judge passes
    assert df.loc[0, "check_judge"] == 1.0 and df.loc[0, "expected"] == "Paris"
    assert list(df.columns).count("score") == 1


def test_a_judge_already_loaded_grades_first() -> None:
    models = [ModelSpec("good", reply_tokens=8), ModelSpec("judge-a", loaded=True), ModelSpec("judge-b")]
    with MockLMStudioServer(models=models) as srv, LMStudioClient(srv.url) as c:
        compare(PROMPTS, ["good"], client=c, progress=False, expected=EXPECTED,
                checks=[judge("Ok?", model="judge-b"), judge("Short?", model="judge-a")])
        judged = [r.model for r in srv.requests if r.is_chat and r.model != "good"]
    assert judged == ["judge-a"] * 2 + ["judge-b"] * 2
