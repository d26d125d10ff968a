"""The numbers compare(checks=...) shows — passed, score, pass rates — over loopback to the fake server: finished
rows scored after a Stop, unscored rows left out of pass rates, expected answers given one way (numbers too), the
checks' models checked before anything runs, a cold judge loaded by one request, each check's pass rate."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from checks_server import EXPECTED, PROMPTS, checks_server
from client_doubles import CountingTransport

import lm_notebook.comparison.run as run_module
from lm_notebook import AsyncLMStudioClient, LMStudioClient, acompare, compare, summary
from lm_notebook.checks import contains, equals, judge, max_words, similar_to
from lm_notebook.comparison import ComparisonInterrupted
from lm_notebook.comparison.check_models import CheckModelError
from lm_notebook.testing import MockLMStudioServer, ModelSpec


@pytest.fixture
def server() -> Iterator[MockLMStudioServer]:
    with checks_server() as srv:
        yield srv


def stopped_when(model: str, checks: list[Any], monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """compare(good, then slow) stopped as ``model`` gets its first request: the frame of the stopped run."""
    monkeypatch.setattr(run_module, "STOP_WAIT_SECONDS", None)
    models = [ModelSpec("good", reply_tokens=8), ModelSpec("slow", ttft=300), ModelSpec("judge-a", ttft=300)]
    with MockLMStudioServer(models=models) as srv, LMStudioClient(srv.url) as c:
        srv.answer("good", PROMPTS["capital"], "Paris.")
        srv.answer("good", PROMPTS["sum"], "4")

        def press_stop() -> None:
            srv.wait_for_requests(1, model=model, timeout=60)
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C and the notebook's Stop button send

        stopper = threading.Thread(target=press_stop)
        stopper.start()
        with pytest.raises(ComparisonInterrupted) as stopped:
            compare(PROMPTS, ["good", "slow"], client=c, progress=False, expected=EXPECTED, concurrency=1,
                    checks=checks)
        stopper.join()
    frame = stopped.value.frame
    scored = int(frame["passed"].notna().sum())
    assert stopped.value.scored == scored
    verdicts = f"{scored} of {stopped.value.finished} finished rows have a verdict (passed or failed)."
    assert verdicts in stopped.value.message
    return frame


def test_a_stop_while_candidates_run_still_scores_every_finished_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    df = stopped_when("slow", [contains("Paris"), max_words(12)], monkeypatch).set_index(["prompt_name", "model"])
    assert df.loc[("capital", "good"), "status"] == "ok" and df.loc[("capital", "slow"), "status"] == "cancelled"
    assert df.loc[("capital", "good"), "check_contains"] == 1.0 and df.loc[("capital", "good"), "passed"]
    assert df.loc[("sum", "good"), "check_contains"] == 0.0 and not df.loc[("sum", "good"), "passed"]
    assert df.loc[("capital", "good"), "score"] == 1.0
    assert pd.isna(df.loc[("capital", "slow"), "passed"])  # never run: no verdict
    stats = summary(df.reset_index())
    assert stats.loc["good", "pass_rate"] == 0.5 and stats.loc["good", "scored"] == 2
    assert pd.isna(stats.loc["slow", "pass_rate"]) and stats.loc["slow", "scored"] == 0


def test_a_stop_before_the_judge_leaves_the_finished_rows_not_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    df = stopped_when("slow", [contains("Paris"), judge("Ok?", model="judge-a")], monkeypatch)
    good = df[df["model"] == "good"]
    assert good["check_contains"].tolist() == [1.0, 0.0] and good["check_judge"].isna().all()
    assert pd.isna(good["passed"].iloc[0]) and good["passed"].iloc[1] == False  # noqa: E712  # failed by contains: no judge needed
    assert all("judge: not scored (the comparison was stopped first)" in n for n in good["check_notes"])


def test_expected_given_two_ways_must_agree(client: LMStudioClient) -> None:
    fields = {name: {"prompt": text, "expected": EXPECTED[name]} for name, text in PROMPTS.items()}
    with pytest.raises(ValueError, match=r"Prompt 'capital' has two expected answers: 'Lyon' from compare\("
                                         r"expected=\.\.\.\) and 'Paris' from its own 'expected' field"):
        compare(fields, ["good"], client=client, progress=False, expected={"capital": "Lyon"}, checks=[equals()])
    frame = pd.DataFrame({"q": list(PROMPTS.values()), "expected": ["Paris", None]}, index=list(PROMPTS))
    with pytest.raises(ValueError, match="its own 'expected' column"):
        compare(frame, ["good"], client=client, template="{q}", progress=False, expected=["Lyon", "4"],
                checks=[equals()])
    # where they agree, or only one says something, both are used
    df = compare(frame, ["good"], client=client, template="{q}", progress=False, expected=["Paris", "4"],
                 checks=[equals()])
    assert df["expected"].tolist() == ["Paris", "4"] and df["check_equals"].tolist() == [0.0, 1.0]


def test_numbers_are_expected_answers_too(server: MockLMStudioServer, client: LMStudioClient) -> None:
    fields = {"sum": {"prompt": PROMPTS["sum"], "expected": 4}}
    df = compare(fields, ["good"], client=client, progress=False,
                 checks=[equals(), similar_to(), judge("Is it correct?", model="judge-a")])
    row = df.iloc[0]
    assert row["check_equals"] == 1.0 and row["check_similar_to"] == pytest.approx(1.0)
    assert row["check_judge"] == 1.0 and row["passed"]
    (graded,) = [r.chat_body for r in server.requests if r.model == "judge-a"]
    assert "Reference answer:\n<<<\n4\n>>>" in graded["messages"][1]["content"]
    # a pandas column of integers with a gap holds floats: 4.0 is still "4"
    frame = pd.DataFrame({"q": [PROMPTS["capital"], PROMPTS["sum"]], "answer": [np.nan, 4]}, index=list(PROMPTS))
    df = compare(frame, ["good"], client=client, template="{q}", progress=False, expected="answer",
                 checks=[equals()])
    assert pd.isna(df["expected"].iloc[0]) and df["expected"].iloc[1] == "4" and df["check_equals"].iloc[1] == 1.0


def test_a_misspelt_expected_column_is_an_error_not_the_reference(client: LMStudioClient) -> None:
    frame = pd.DataFrame({"q": list(PROMPTS.values()), "answer": list(EXPECTED.values())}, index=list(PROMPTS))
    with pytest.raises(ValueError, match=r"expected=\"anwser\" names no column of the prompts' DataFrame; its "
                                         r"columns are \['q', 'answer'\]\. Did you mean \"answer\"\?"):
        compare(frame, ["good"], client=client, template="{q}", progress=False, expected="anwser", checks=[equals()])


@pytest.mark.parametrize(("checks", "words"), [
    ([judge("Ok?", model="judge-x")], 'The judge of check judge, "judge-x", is not available on LM Studio at '
                                      r'http://127\.0\.0\.1:\d+\. Available: .*Did you mean "judge-a"\? Fix the id in '
                                      r"judge\(\.\.\., model='model-id'\)"),
    ([judge("Ok?", model="embed")], 'The judge of check judge, "embed", is an embedding model'),
    ([judge("Ok?")], r"Check judge has no judge: pass judge\(\.\.\., model='model-id'\)"),
    ([similar_to(model="judge-a")], r'"judge-a", is a language model \(llm\), not an embedding model.* The '
                                    "embedding models here: embed"),
    ([similar_to(model="embbed", name="near")], 'The embedding model of check near, "embbed", is not available'),
])
def test_the_checks_models_are_checked_before_any_candidate_runs(server: MockLMStudioServer, client: LMStudioClient,
                                                                 checks: list[Any], words: str) -> None:
    with pytest.raises(CheckModelError, match=words):
        compare(PROMPTS, ["good"], client=client, progress=False, expected=EXPECTED, checks=checks)
    assert not [r for r in server.requests if r.is_chat or r.path == "/v1/embeddings"]


def test_similar_to_with_several_embedding_models_asks_which_before_running() -> None:
    models = [ModelSpec("good"), ModelSpec("embed-a", type="embeddings"), ModelSpec("embed-b", type="embeddings")]
    with MockLMStudioServer(models=models) as srv, LMStudioClient(srv.url) as c:
        with pytest.raises(CheckModelError, match=r"2 embedding models to choose from \(embed-a, embed-b\)") as err:
            compare(PROMPTS, ["good"], client=c, progress=False, expected=EXPECTED, checks=[similar_to()])
        assert not [r for r in srv.requests if r.is_chat]
    assert err.value.problem == "several" and err.value.role == "embedding" and err.value.check == "similar_to"


def test_a_cold_judge_is_loaded_by_its_first_request_alone(server: MockLMStudioServer) -> None:
    transport = CountingTransport()

    async def go() -> pd.DataFrame:
        async with AsyncLMStudioClient(server.url, transport=transport) as aclient:
            return await acompare(PROMPTS, ["good", "bad"], client=aclient, progress=False, expected=EXPECTED,
                                  checks=[judge("Ok?", model="judge-a")])

    df = asyncio.run(go())
    assert df["check_judge"].notna().all()
    judged = [(kind, i) for i, (kind, _, model) in enumerate(transport.events) if model == "judge-a"]
    sent = [i for kind, i in judged if kind == "sent"]
    first_end = next(i for kind, i in judged if kind == "ended")
    assert len(sent) == 4 and sent[0] < first_end < sent[1]  # the others waited for the load
    assert server.counters.model("judge-a").loads == 1


def test_summary_has_each_checks_pass_rate_and_the_best_models_first(client: LMStudioClient) -> None:
    df = compare(PROMPTS, ["bad", "good"], client=client, progress=False, temperature=0, expected=EXPECTED,
                 checks=[contains("Paris"), max_words(12)])
    stats = summary(df)
    assert list(stats.index) == ["good", "bad"]  # pass rate first, then the mean score
    assert stats.loc["good", "pass_rate_contains"] == 0.5 and stats.loc["good", "pass_rate_max_words"] == 1.0
    assert stats.loc["bad", "pass_rate_max_words"] == 0.0 and stats.loc["good", "scored"] == 2
    assert summary(df[df["model"] == "good"]).loc["good", "pass_rate_contains"] == 0.5  # a slice keeps them


def test_a_check_may_answer_with_numpy_values(client: LMStudioClient) -> None:
    def short(answer: str, row: Any) -> Any:
        return np.bool_(len(answer.split()) < 12)

    df = compare(PROMPTS, ["good"], client=client, progress=False, checks=[short, lambda a, r: np.float64(0.9)])
    assert df["check_short"].tolist() == [1.0, 1.0] and df["check_check"].tolist() == [0.9, 0.9]
    assert df["passed"].all() and df["check_notes"].isna().all()
