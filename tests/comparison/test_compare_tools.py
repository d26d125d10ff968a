"""compare(..., tools=[...]) against the fake server: every request an act, the rows' tool columns, and the summary's
tool-call success rate per model."""

from __future__ import annotations

import asyncio
import math
import threading

import pandas as pd
import pytest

from lm_notebook import LMStudioClient, acompare, compare, summary
from lm_notebook.client.errors import LMStudioRequestError
from lm_notebook.client.tools import tool_from_function
from lm_notebook.testing import MockLMStudioServer


def lookup(city: str) -> str:
    """Population of a city.

    Args:
        city: its name.
    """
    return "2.1 million"


PROMPTS = {"paris": "lookup Paris", "rome": "lookup Rome"}


def test_rows_count_the_calls_and_summary_ranks_the_models(server: MockLMStudioServer,
                                                           client: LMStudioClient) -> None:
    server.set_fault("tool_bad_json", model="beta")  # beta always breaks its arguments' JSON
    df = compare(PROMPTS, ["alpha", "beta"], client=client, tools=[lookup], progress=False)
    assert list(df.columns[df.columns.get_loc("finish_reason") + 1:][:3]) == ["tool_calls", "tool_errors", "rounds"]
    assert df["status"].tolist() == ["ok"] * 4
    alpha, beta = df[df["model"] == "alpha"], df[df["model"] == "beta"]
    assert alpha["tool_calls"].tolist() == [1, 1] and alpha["tool_errors"].tolist() == [0, 0]
    assert beta["tool_errors"].tolist() == [1, 1] and df["rounds"].tolist() == [2, 2, 2, 2]
    assert alpha["response"].str.startswith("From the tools: lookup returned: 2.1 million").all()
    assert beta["response"].str.contains("failed").all()
    stats = summary(df)
    assert stats.loc["alpha", "tool_call_success_rate"] == 1.0 and stats.loc["beta", "tool_call_success_rate"] == 0.0
    assert stats.loc["beta", "tool_calls"] == 2 and stats.loc["beta", "tool_errors"] == 2


def test_without_tools_there_are_no_tool_columns(client: LMStudioClient) -> None:
    df = compare(["hi"], ["alpha"], client=client, progress=False)
    assert "tool_calls" not in df and "tool_call_success_rate" not in summary(df)


def test_async_compare_with_tools_and_a_model_that_calls_none(server: MockLMStudioServer,
                                                              client: LMStudioClient) -> None:
    df = asyncio.run(acompare(["lookup it"], ["gamma"], client=client, tools=[lookup], progress=False,
                              tool_choice="none"))
    assert df["tool_calls"].tolist() == [0] and df["rounds"].tolist() == [1]
    assert math.isnan(summary(df).loc["gamma", "tool_call_success_rate"])


def test_bad_tools_are_refused_before_sending(server: MockLMStudioServer, client: LMStudioClient) -> None:
    with pytest.raises(LMStudioRequestError, match="tools is empty"):
        compare(["hi"], ["alpha"], client=client, tools=[], progress=False)
    assert not [r for r in server.requests if r.is_chat]


def test_tools_with_a_schema_constrain_only_the_final_answer(server: MockLMStudioServer,
                                                             client: LMStudioClient) -> None:
    schema = {"type": "object", "properties": {"population": {"type": "string"}}, "required": ["population"]}
    df = compare({"paris": "lookup Paris"}, ["alpha"], client=client, tools=[lookup], schema=schema, progress=False)
    assert df["valid"].tolist() == [True] and df["tool_calls"].tolist() == [1]
    sent = [r.json for r in server.requests if r.is_chat]
    assert [("response_format" in b, b.get("tool_choice")) for b in sent] == [
        (False, None), (False, None), (True, "none")]


def test_summary_ranks_by_success_and_a_model_that_never_answers_fails(server: MockLMStudioServer,
                                                                       client: LMStudioClient) -> None:
    server.set_fault("tool_bad_json", model="beta")  # beta breaks its arguments' JSON, then answers
    server.script_tool_calls("gamma", *([("lookup", {"city": f"c{i}"})] for i in range(4)))  # gamma never answers
    df = compare(PROMPTS, ["gamma", "beta", "alpha"], client=client, tools=[lookup], max_rounds=2, progress=False)
    gamma = df[df["model"] == "gamma"]
    assert gamma["error_type"].tolist() == ["ToolRoundsExceededError"] * 2
    assert gamma["tool_calls"].tolist() == [2, 2] and gamma["tool_errors"].tolist() == [0, 0]  # every call valid
    stats = summary(df)
    assert list(stats.index) == ["alpha", "beta", "gamma"]  # best first; beta and gamma tie, beta is the faster
    assert stats["tool_rank"].tolist() == [1, 2, 3] and list(stats.columns[:1]) == ["tool_rank"]
    assert stats["tool_call_success_rate"].tolist() == [1.0, 0.0, 0.0]  # valid calls, but no answer: a failure
    assert stats["tool_rounds_exceeded"].tolist() == [0, 0, 2]
    assert stats.attrs["ranked_by"].startswith("tool_call_success_rate (best first), then tokens_per_s_median")


def test_the_success_rate_counts_valid_calls_and_finished_rows() -> None:
    from lm_notebook.comparison.tool_rows import ranked_by_tools, tool_summary

    rows = pd.DataFrame({"tool_calls": pd.array([2, 2, 1, None], dtype="Int64"),
                         "tool_errors": pd.array([1, 0, 0, None], dtype="Int64"),
                         "error_type": [None, "ToolRoundsExceededError", None, "LMStudioConnectionError"]})
    # 4 of 5 calls valid; of the 3 rows whose act ran (the server failure is not the model's), 2 answered
    assert tool_summary(rows) == {"tool_calls": 5, "tool_errors": 1, "tool_rounds_exceeded": 1,
                                  "tool_call_success_rate": pytest.approx(4 / 5 * 2 / 3)}
    stats = pd.DataFrame({"tool_call_success_rate": [0.5, float("nan"), 0.5, 1.0],
                          "tokens_per_s_median": [10.0, 99.0, 30.0, float("nan")]}, index=["a", "b", "c", "d"])
    ranked = ranked_by_tools(stats)
    assert list(ranked.index) == ["d", "c", "a", "b"]  # the rate first; its ties by speed; no calls last
    assert ranked["tool_rank"].tolist() == [1, 2, 3, pd.NA]
    assert ranked_by_tools(stats.drop(columns="tool_call_success_rate")).index.tolist() == ["a", "b", "c", "d"]


def test_a_row_with_valid_calls_and_an_empty_answer_is_not_a_success(server: MockLMStudioServer,
                                                                     client: LMStudioClient) -> None:
    server.script_tool_calls("beta", [("lookup", {"city": "Paris"})])
    server.script("beta", "")  # after its valid call, its answer is empty
    df = compare({"paris": "lookup Paris"}, ["beta"], client=client, tools=[lookup], progress=False)
    assert df["error_type"].tolist() == ["EmptyAnswer"] and df["tool_calls"].tolist() == [1]
    stats = summary(df)
    assert stats.loc["beta", "tool_call_success_rate"] == 0.0  # valid calls, but no answer: a failure


def test_a_row_that_fails_mid_loop_keeps_its_calls_and_is_not_a_success(server: MockLMStudioServer,
                                                                        client: LMStudioClient) -> None:
    def cut(city: str) -> str:
        """Population of a city; the server then cuts the model's next answer."""
        server.set_fault("stream_error", model="beta", times=1)  # not worth retrying: the row fails here
        return "2.1 million"

    df = compare({"paris": "lookup Paris"}, ["beta"], client=client, tools=[cut], progress=False)
    assert df["status"].tolist() == ["error"] and df["error_type"].tolist() == ["LMStudioStreamError"]
    assert df["tool_calls"].tolist() == [1] and df["tool_errors"].tolist() == [0]  # the call that finished
    assert summary(df).loc["beta", "tool_call_success_rate"] == 0.0


def test_an_error_row_counts_as_not_answered() -> None:
    from lm_notebook.comparison.tool_rows import tool_summary

    rows = pd.DataFrame({"status": ["ok", "error", "error", "error"],
                         "tool_calls": pd.array([1, 1, 1, None], dtype="Int64"),
                         "tool_errors": pd.array([0, 0, 0, None], dtype="Int64"),
                         "error_type": [None, "EmptyAnswer", "LMStudioStreamError", "LMStudioConnectionError"]})
    # 3 valid calls of 3; of the 3 rows whose act ran, 1 answered (the row with no act is the server's)
    assert tool_summary(rows)["tool_call_success_rate"] == pytest.approx(1 / 3)


def test_a_slow_sync_tool_does_not_hold_up_the_other_rows(server: MockLMStudioServer,
                                                          client: LMStudioClient) -> None:
    """A plain function opted in with run_in_thread=True runs in a worker thread: while one row's call waits, the
    other row goes on. Each call here returns only once the other has started (on the event loop, the first would
    wait alone until its timeout)."""
    server.load_model("alpha")  # loaded, two slots: both rows at once
    arrived: list[str] = []
    both = threading.Event()
    lock = threading.Lock()

    def lookup(city: str) -> str:
        """Population of a city."""
        with lock:
            arrived.append(city)
            if len(arrived) == 2:
                both.set()
        return "together" if both.wait(30) else "alone"

    tool = tool_from_function(lookup, run_in_thread=True)
    df = compare(PROMPTS, ["alpha"], client=client, tools=[tool], concurrency=2, progress=False)
    assert len(arrived) == 2 and df["tool_calls"].tolist() == [1, 1]
    assert df["response"].str.startswith("From the tools: lookup returned: together").all(), df["response"].tolist()
