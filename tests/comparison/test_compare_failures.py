"""compare()'s failures on the fake server over loopback: each costs only its own rows; what is retried and what not."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import lm_notebook
import lm_notebook.comparison.api as compare_module
from lm_notebook import LMStudioClient
from lm_notebook.comparison.api import RetryPolicy, compare
from lm_notebook.testing import MockLMStudioServer


def chat_requests(server: MockLMStudioServer) -> list[Any]:
    return [r for r in server.requests if r.is_chat]


def test_unknown_model_marks_only_its_rows_and_sends_nothing(
    server: MockLMStudioServer, client: LMStudioClient
) -> None:
    df = compare(["a", "b"], ["alpha", "alpah"], client=client, progress=False)
    bad = df[df.model == "alpah"]
    assert (bad.status == "error").all() and (bad.error_type == "ModelNotFoundError").all()
    assert 'Did you mean "alpha"' in bad.error.iloc[0]
    assert (df[df.model == "alpha"].status == "ok").all()
    assert {r.json["model"] for r in chat_requests(server)} == {"alpha"}


def test_a_model_that_fails_to_load_costs_one_request(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.set_fault("load_failure", model="beta")
    df = compare([f"q{i}" for i in range(6)], ["beta", "gamma"], client=client, progress=False)
    beta = df[df.model == "beta"]
    assert (beta.status == "error").all() and (beta.error_type == "ModelLoadError").all()
    assert (df[df.model == "gamma"].status == "ok").all()
    assert sum(r.json["model"] == "beta" for r in chat_requests(server)) == 1


def test_a_model_answering_500_is_given_up_after_a_few(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.set_fault("500", model="alpha")
    df = compare([f"q{i}" for i in range(10)], ["alpha", "gamma"], client=client, progress=False)
    alpha = df[df.model == "alpha"]
    assert (alpha.status == "error").all() and (alpha.error_type == "ServerError").all()
    assert alpha.error.str.startswith("not sent: alpha failed 3 requests in a row").sum() == 7
    assert (df[df.model == "gamma"].status == "ok").all()
    # the model never answered, so it was probed one request at a time: three sent, seven spared
    assert sum(r.json["model"] == "alpha" for r in chat_requests(server)) == 3


def test_context_exceeded_marks_only_that_prompt(server: MockLMStudioServer, client: LMStudioClient) -> None:
    long_prompt = "word " * 2500  # over beta's 2048-token context, within alpha's 4096
    df = compare({"short": "Hi", "long": long_prompt}, ["beta", "alpha"], client=client, progress=False)
    by = df.set_index(["prompt_name", "model"])
    assert by.loc[("long", "beta"), "error_type"] == "ContextLengthExceededError"
    assert by.loc[("long", "alpha"), "status"] == "ok"
    assert by.loc[("short", "beta"), "status"] == "ok"


def test_an_empty_answer_is_an_error_naming_the_likely_cause(
    server: MockLMStudioServer, client: LMStudioClient, tmp_path: Path
) -> None:
    server.set_fault("empty_stream", model="alpha", times=1)  # how LM Studio ends some context overflows
    df = compare(["a", "b"], ["alpha"], client=client, temperature=0, cache=tmp_path / "c.sqlite", concurrency=1,
                 progress=False)
    empty, fine = df.iloc[0], df.iloc[1]
    assert empty.status == "error" and empty.error_type == "EmptyAnswer" and empty.response == ""
    assert empty.error.startswith("alpha sent an empty answer: the prompt")
    assert "may not fit its loaded context of 4096 tokens" in empty.error
    assert "lms load alpha --context-length N, N above 4096" in empty.error
    assert fine.status == "ok"
    # an error row is never cached: the re-run asks again
    again = compare(["a", "b"], ["alpha"], client=client, temperature=0, cache=tmp_path / "c.sqlite", progress=False)
    assert again.cached.tolist() == [False, True] and (again.status == "ok").all()


def test_a_stalled_answer_times_out_keeping_its_partial_text(
    server: MockLMStudioServer, client: LMStudioClient
) -> None:
    server.update_model("gamma", reply_tokens=12)
    # the stall outlasts the test: only the read timeout ends that answer (waiting it out would give an "ok" row)
    server.set_fault("stall", model="gamma", seconds=600, after_chunks=3, times=1)
    df = compare(["a", "b"], ["gamma"], client=client, timeout=1.0, progress=False)
    stalled = df[df.status == "error"]
    assert len(stalled) == 1 and stalled.error_type.iloc[0] == "LMStudioTimeoutError"
    assert stalled.response.iloc[0]  # the three tokens that came before the stall
    assert (df.status == "ok").sum() == 1


@dataclass(frozen=True)
class RecordingRetry(RetryPolicy):
    """The test's retry policy: records each wait it decides (attempt, the server's Retry-After, seconds)."""

    waits: list[tuple[int, float | None, float]] = field(default_factory=list)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        seconds = super().delay(attempt, retry_after)
        self.waits.append((attempt, retry_after, seconds))
        return seconds


def test_429_is_retried_after_retry_after(
    server: MockLMStudioServer, client: LMStudioClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = RecordingRetry(attempts=3, base_delay=0.05, max_delay=2.0)
    monkeypatch.setattr(compare_module, "DEFAULT_RETRY", policy)
    server.set_fault("429", model="gamma", times=1, retry_after=0.3)
    df = compare(["a"], ["gamma"], client=client, progress=False)
    assert df.status.tolist() == ["ok"] and df.attempts.tolist() == [2]
    assert policy.waits == [(1, 0.3, 0.3)]  # the server's Retry-After, not the (shorter) backoff
    refused, answered = chat_requests(server)
    assert answered.time - refused.time >= 0.3  # and it was waited out before asking again


def test_dropped_connection_is_retried(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.update_model("gamma", reply_tokens=10)
    server.set_fault("drop", model="gamma", times=1, after_chunks=4)
    df = compare(["a", "b"], ["gamma"], client=client, concurrency=1, progress=False)
    assert (df.status == "ok").all()
    assert sorted(df.attempts.tolist()) == [1, 2]
    assert (df.completion_tokens == 10).all()


def test_an_error_the_server_sent_is_not_retried(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.set_fault("malformed_chunk", model="gamma", after_chunks=2)
    df = compare(["a"], ["gamma"], client=client, progress=False)
    assert df.error_type.tolist() == ["LMStudioStreamError"] and df.attempts.tolist() == [1]
    assert df.response.tolist()[0]  # the partial text is kept


def test_retries_are_bounded(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.set_fault("429", model="gamma", retry_after=0.01)
    df = compare(["a"], ["gamma"], client=client, progress=False)
    assert df.error_type.tolist() == ["RateLimitError"] and df.attempts.tolist() == [3]


def test_server_gone_is_an_error_not_a_frame() -> None:
    with MockLMStudioServer() as srv:
        url = srv.url
    with LMStudioClient(url, timeout=2) as c, pytest.raises(lm_notebook.LMStudioConnectionError):
        compare(["a"], ["x"], client=c, progress=False)
