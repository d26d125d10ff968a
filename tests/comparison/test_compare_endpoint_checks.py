"""compare(endpoints=...)'s judges and embedding models over fake servers on loopback ports, when endpoints are few
or down: a check's model pinned ``"name/model"`` runs on its endpoint whatever the number of endpoints given or up;
a pin that cannot work says which endpoint was pinned, whether it is up, what it lists and where the model is; and a
judge whose endpoint goes down during the candidates moves to another endpoint that lists it (a pinned one stays,
its cells saying why they have no grade).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import pytest

from lm_notebook.checks import judge, similar_to
from lm_notebook.comparison import api
from lm_notebook.comparison.api import compare
from lm_notebook.comparison.check_models import CheckModelError
from lm_notebook.comparison.retry import RetryPolicy
from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec

PROMPTS = [f"Question {i}" for i in range(4)]


def spec(model_id: str, **kw: Any) -> ModelSpec:
    return ModelSpec(model_id, **{"reply_tokens": 6, **kw})


def chats(server: MockLMStudioServer, model: str | None = None) -> list[Any]:
    return [r for r in server.requests if r.is_chat and (model is None or r.model == model)]


@pytest.fixture
def two() -> Iterator[dict[str, MockLMStudioServer]]:
    """a: alpha + judge-a; b: beta + judge-a + embed (the judge on both)."""
    servers = {"a": MockLMStudioServer(models=[spec("alpha"), spec("judge-a")]),
               "b": MockLMStudioServer(models=[spec("beta"), spec("judge-a"), spec("embed", type="embeddings")])}
    with ExitStack() as running:
        for server in servers.values():
            running.enter_context(server)
        yield servers


def dead_url() -> str:
    """The URL of a server that was there and is no more (its port refuses connections)."""
    with MockLMStudioServer(models=[spec("judge-a")]) as gone:
        return gone.url


# --- a pin with one endpoint given, or one up ---------------------------------------------------------------------


def test_a_pinned_judge_runs_when_its_endpoint_is_the_only_one_given(two: dict[str, MockLMStudioServer]) -> None:
    b = two["b"]
    df = compare(["Hi"], ["b/beta"], endpoints={"b": b.url}, progress=False, temperature=0,
                 checks=[judge("Ok?", model="b/judge-a"), similar_to("Hello", model="b/embed")])
    assert df[["check_judge", "check_similar_to"]].notna().all(axis=None), df["check_notes"].tolist()
    assert [r.model for r in chats(b)] == ["beta", "judge-a"]


def test_a_pinned_judge_runs_when_the_other_endpoint_is_down(two: dict[str, MockLMStudioServer]) -> None:
    b = two["b"]
    df = compare(["Hi"], ["b/beta"], endpoints={"a": dead_url(), "b": b.url}, progress=False, temperature=0,
                 checks=[judge("Ok?", model="b/judge-a")])
    assert df["check_judge"].notna().all(), df["check_notes"].tolist()
    assert [r.model for r in chats(b)] == ["beta", "judge-a"]


def test_a_judge_pinned_to_an_endpoint_that_is_down_says_so(two: dict[str, MockLMStudioServer]) -> None:
    a_url, b = dead_url(), two["b"]
    with pytest.raises(CheckModelError) as err:
        compare(["Hi"], ["b/beta"], endpoints={"a": a_url, "b": b.url}, progress=False,
                checks=[judge("Ok?", model="a/judge-a")])
    message = err.value.message
    assert f'"a/judge-a", is pinned to endpoint a at {a_url}, which is down' in message, message
    assert "judge-a is on b: pin it as b/judge-a or leave the pin out" in message, message
    assert b.url not in message and "not available" not in message, message
    assert err.value.problem == "down" and err.value.endpoint == "a"
    assert not chats(b)


# --- what a pin that cannot work says -----------------------------------------------------------------------------


def test_a_judge_pinned_where_the_model_is_not_says_where_it_is(two: dict[str, MockLMStudioServer]) -> None:
    a, b = two["a"], two["b"]
    with pytest.raises(CheckModelError) as err:
        compare(["Hi"], ["alpha"], endpoints={"a": a.url, "b": b.url}, progress=False,
                checks=[judge("Ok?", model="b/alpha")])
    message = err.value.message
    assert message.startswith(f'The judge of check judge, "b/alpha", is pinned to endpoint b at {b.url}, which does '
                              "not list alpha (it lists: beta, embed, judge-a). alpha is on a: pin it as a/alpha or "
                              "leave the pin out."), message
    assert "Did you mean" not in message and "any endpoint" not in message, message
    assert err.value.problem == "not_listed" and err.value.endpoint == "b"
    with pytest.raises(CheckModelError) as err:
        compare(["Hi"], ["alpha"], endpoints={"a": a.url, "b": b.url}, progress=False,
                checks=[judge("Ok?", model="b/judge-x")])
    assert 'which does not list judge-x (it lists: beta, embed, judge-a). Did you mean "b/judge-a"?' in \
        err.value.message, err.value.message
    assert not chats(a) and not chats(b)


def test_an_unpinned_judge_no_endpoint_up_lists_names_the_endpoint_down(two: dict[str, MockLMStudioServer]) -> None:
    a_url, b = dead_url(), two["b"]
    with pytest.raises(CheckModelError) as err:
        compare(["Hi"], ["beta"], endpoints={"a": a_url, "b": b.url}, progress=False,
                checks=[judge("Ok?", model="judge-x")])
    assert f"(checked: a at {a_url}: down (not reachable); b at {b.url}: beta, embed, judge-a)" in \
        err.value.message, err.value.message


# --- a judge whose endpoint goes down -----------------------------------------------------------------------------


def judged_while(kill: Any, *args: Any, **kw: Any) -> tuple[Any, list[warnings.WarningMessage]]:
    """``compare(*args, **kw)`` with ``kill`` run in a thread beside it; the frame and the warnings it gave."""
    with ThreadPoolExecutor(1) as pool, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        killing = pool.submit(kill)
        df = compare(*args, **kw)
        killing.result()  # (raises what went wrong in it)
    return df, list(caught)


def killed_mid_run(judge_model: str, **compare_kw: Any) -> tuple[Any, MockLMStudioServer, MockLMStudioServer,
                                                                  list[warnings.WarningMessage]]:
    """alpha (only on a) and beta (only on b) compared, judged by ``judge_model``; judge-a is on both, found first
    on a. a is stopped after answering two of alpha's rows, with two more in flight (paced on a ManualClock)."""
    clock = ManualClock()
    a = MockLMStudioServer(models=[spec("alpha", loaded=True, parallel=2, ttft=1.0), spec("judge-a")], clock=clock)
    b = MockLMStudioServer(models=[spec("beta"), spec("judge-a")])
    with a, b:

        def kill_a() -> None:
            clock.wait_for_pending(2)
            clock.advance(1.0)
            clock.wait_for_pending(2)
            a.stop()

        df, caught = judged_while(kill_a, PROMPTS, ["alpha", "beta"], endpoints={"a": a.url, "b": b.url},
                                  progress=False, temperature=0, checks=[judge("Ok?", model=judge_model)], **compare_kw)
    return df, a, b, caught


def test_a_judge_whose_endpoint_went_down_during_the_candidates_moves_to_another_that_lists_it() -> None:
    df, a, b, caught = killed_mid_run("judge-a")
    answered = df[df.status == "ok"]
    assert answered.model.tolist() == ["alpha", "beta", "alpha", "beta", "beta", "beta"], df[["model", "status"]]
    assert answered["check_judge"].notna().all(), answered["check_notes"].tolist()
    conversations = answered[["prompt", "response"]].drop_duplicates()  # one grading request each
    assert len(chats(b, "judge-a")) == len(conversations) and not chats(a, "judge-a")
    moved = [str(w.message) for w in caught if "judge" in str(w.message)]
    assert moved == [f"compare(): endpoint a ({a.url}) stopped answering: the judge judge-a (check judge) runs on b "
                     "instead."], moved


def test_a_judge_pinned_to_an_endpoint_that_went_down_keeps_it_and_its_cells_say_why() -> None:
    df, a, b, caught = killed_mid_run("a/judge-a")
    answered = df[df.status == "ok"]
    assert len(answered) == 6 and answered["check_judge"].isna().all()
    notes = answered["check_notes"].tolist()
    assert all(n == f'judge: error: The judge of check judge, "a/judge-a", is pinned to endpoint a at {a.url}, which '
               f"is down (it stopped answering during the run). judge-a is on b: pin it as b/judge-a or leave the "
               f"pin out, or start the server at {a.url}." for n in notes), notes
    assert answered["passed"].isna().all()  # no verdict: the judge could not grade, the answer did not fail
    assert not chats(b, "judge-a") and not [w for w in caught if "judge" in str(w.message)]


def stopping_a(a: MockLMStudioServer, b: MockLMStudioServer, *checks: Any) -> tuple[Any, list[str]]:
    """beta compared on b, scored by ``checks``; a stops as b's first row comes in. The frame and the warnings that
    something moved."""

    def stop_a(event: Any) -> None:
        if event.kind == "row":
            a.stop()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = compare(PROMPTS, ["b/beta"], endpoints={"a": a.url, "b": b.url}, progress=stop_a, temperature=0,
                     checks=list(checks))
    return df, [str(w.message) for w in caught if "instead" in str(w.message)]


def test_a_judge_whose_endpoint_went_down_after_the_candidates_moves_too(
        two: dict[str, MockLMStudioServer]) -> None:
    """a answers nothing (the candidate is pinned to b) and stops while b answers: the judge, placed on a, is found
    down when judging starts and moves to b."""
    a, b = two["a"], two["b"]
    df, moved = stopping_a(a, b, judge("Ok?", model="judge-a"))
    assert (df.status == "ok").all() and df["check_judge"].notna().all(), df["check_notes"].tolist()
    assert len(chats(b, "judge-a")) == len(df[["prompt", "response"]].drop_duplicates()) and not chats(a, "judge-a")
    assert len(moved) == 1 and "runs on b instead" in moved[0]


def stopped_while_grading(**compare_kw: Any) -> tuple[Any, MockLMStudioServer, MockLMStudioServer,
                                                     list[warnings.WarningMessage]]:
    """beta compared on b and judged by judge-a, found first on a (one slot, paced on a ManualClock): a grades one
    answer, then stops with the next in flight."""
    clock = ManualClock()
    a = MockLMStudioServer(models=[spec("judge-a", loaded=True, parallel=1, ttft=1.0)], clock=clock)
    b = MockLMStudioServer(models=[spec("beta"), spec("judge-a")])
    with a, b:

        def kill_a() -> None:
            clock.wait_for_pending(1)  # the first grade (one slot: alone in flight)
            clock.advance(1.0)
            clock.wait_for_pending(1)  # the next one
            a.stop()

        df, caught = judged_while(kill_a, PROMPTS, ["b/beta"], endpoints={"a": a.url, "b": b.url}, temperature=0,
                                  checks=[judge("Ok?", model="judge-a")], **{"progress": False, **compare_kw})
    return df, a, b, caught


class NotedBackoffs(RetryPolicy):
    """A retry policy that notes each backoff asked for (and waits none)."""

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        BACKOFFS.append(attempt)
        return 0.0


BACKOFFS: list[int] = []


def test_a_judge_whose_endpoint_goes_down_while_it_grades_moves_its_grades_left_with_no_backoff(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The grades left (the one in flight too) are asked on b; the one cut is not retried on a after a backoff: a
    no longer runs, so it moves at once (as a candidate's row does)."""
    BACKOFFS.clear()
    monkeypatch.setattr(api, "DEFAULT_RETRY", NotedBackoffs())
    df, a, b, caught = stopped_while_grading()
    assert (df.status == "ok").all() and df["check_judge"].notna().all(), df["check_notes"].tolist()
    assert len(chats(a, "judge-a")) == 2 and len(chats(b, "judge-a")) == len(PROMPTS) - 1
    assert len([w for w in caught if "runs on b instead" in str(w.message)]) == 1
    assert BACKOFFS == []


def test_the_judging_progress_goes_on_across_a_move() -> None:
    events: list[tuple[str, int, int]] = []

    def record(event: Any) -> None:
        if event.kind == "judging":
            events.append((event.model, event.judged, event.to_judge))

    df, *_ = stopped_while_grading(progress=record)
    assert df["check_judge"].notna().all(), df["check_notes"].tolist()
    assert [judged for _, judged, _ in events] == sorted(judged for _, judged, _ in events), events
    assert {(model, total) for model, _, total in events} == {("judge-a", len(PROMPTS))}, events
    assert events[-1] == ("judge-a", len(PROMPTS), len(PROMPTS)), events


@pytest.mark.parametrize("pinned", [False, True])
def test_an_embedding_model_whose_endpoint_went_down_moves_unless_pinned(pinned: bool) -> None:
    """similar_to's embedding model, found first on a, which stops while b answers the candidates: it embeds on b
    (said once), or, pinned to a, its cells say a is down and where the model is."""
    a = MockLMStudioServer(models=[spec("alpha"), spec("embed", type="embeddings")])
    b = MockLMStudioServer(models=[spec("beta"), spec("embed", type="embeddings")])
    with a, b:
        df, moved = stopping_a(a, b, similar_to("Hello", model="a/embed" if pinned else "embed"))
        embedded_on_b = [r for r in b.requests if r.path == "/v1/embeddings"]
        if pinned:
            assert df["check_similar_to"].isna().all() and not embedded_on_b and not moved
            assert set(df["check_notes"]) == {
                f'similar_to: error: The embedding model of check similar_to, "a/embed", is pinned to endpoint a at '
                f"{a.url}, which is down (it stopped answering during the run). embed is on b: pin it as b/embed or "
                f"leave the pin out, or start the server at {a.url}."}
        else:
            assert df["check_similar_to"].notna().all(), df["check_notes"].tolist()
            assert embedded_on_b and moved == [f"compare(): endpoint a ({a.url}) stopped answering: the embedding "
                                               "model embed (check similar_to) runs on b instead."]


# --- when every endpoint listing a check's model is down ----------------------------------------------------------


def stopped_after_rows(server: MockLMStudioServer, rows: int, *args: Any, **kw: Any) -> tuple[Any, list[str]]:
    """``compare(*args, **kw)`` with ``server`` stopped as the run's ``rows``-th row comes in (after the last, before
    the checks); the frame and the warnings that something moved."""
    seen: list[int] = []

    def stop(event: Any) -> None:
        if event.kind == "row":
            seen.append(1)
            if len(seen) == rows:
                server.stop()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = compare(*args, progress=stop, temperature=0, **kw)
    return df, [str(w.message) for w in caught if "instead" in str(w.message)]


def test_every_judge_cell_says_so_when_the_only_endpoint_stopped_before_judging() -> None:
    a = MockLMStudioServer(models=[spec("beta"), spec("judge-a")])
    with a:
        df, _ = stopped_after_rows(a, 3, PROMPTS[:3], ["beta"], endpoints={"a": a.url},
                                   checks=[judge("Ok?", model="judge-a")])
    assert (df.status == "ok").all() and df["check_judge"].isna().all() and df["passed"].isna().all()
    assert df["check_notes"].tolist() == [
        f'judge: error: The judge of check judge, "judge-a", is on endpoint a at {a.url}, which is down (it stopped '
        f"answering during the run). Start the server at {a.url}."] * 3
    assert not chats(a, "judge-a")


def test_the_cells_name_the_endpoint_that_stopped_not_one_down_from_the_start() -> None:
    """a is down from the start; b runs beta and stops after its last row: the checks' cells name b (and its
    URL), not a."""
    a_url = dead_url()
    b = MockLMStudioServer(models=[spec("beta"), spec("embed", type="embeddings"), spec("judge-a")])
    with b:
        df, moved = stopped_after_rows(b, 2, PROMPTS[:2], ["beta"], endpoints={"a": a_url, "b": b.url},
                                       checks=[similar_to("Hello", model="embed"), judge("Ok?", model="judge-a")])
    tail = (f"endpoint b at {b.url}, which is down (it stopped answering during the run), and no other endpoint is "
            f"up. Start the server at {b.url}.")
    assert df["check_notes"].tolist() == [
        f'similar_to: error: The embedding model of check similar_to, "embed", is on {tail}; '
        f'judge: error: The judge of check judge, "judge-a", is on {tail}'] * 2
    assert a_url not in "".join(df["check_notes"]) and not moved


def test_after_similar_to_finds_the_endpoint_down_both_checks_name_it_and_guess_no_id() -> None:
    """embed and judge-a only on a, which stops while b answers: each check's cells name a, stopped during the run
    (not a wrong id), whichever check found it down first."""
    a = MockLMStudioServer(models=[spec("alpha"), spec("embed", type="embeddings"), spec("judge-a")])
    b = MockLMStudioServer(models=[spec("beta")])
    with a, b:
        df, moved = stopping_a(a, b, similar_to("Hello", model="embed"), judge("Ok?", model="judge-a"))

    def tail(model: str) -> str:
        return (f"endpoint a at {a.url}, which is down (it stopped answering during the run), and no other endpoint "
                f"up lists {model}. Start the server at {a.url}, or download {model} on an endpoint that is up.")

    assert set(df["check_notes"]) == {
        f'similar_to: error: The embedding model of check similar_to, "embed", is on {tail("embed")}; '
        f'judge: error: The judge of check judge, "judge-a", is on {tail("judge-a")}'}, set(df["check_notes"])
    assert not moved


def test_a_judge_that_moves_after_similar_to_found_its_endpoint_down_says_so() -> None:
    a = MockLMStudioServer(models=[spec("alpha"), spec("embed", type="embeddings"), spec("judge-a")])
    b = MockLMStudioServer(models=[spec("beta"), spec("embed", type="embeddings"), spec("judge-a")])
    with a, b:
        df, moved = stopping_a(a, b, similar_to("Hello", model="embed"), judge("Ok?", model="judge-a"))
    assert df[["check_similar_to", "check_judge"]].notna().all(axis=None), df["check_notes"].tolist()
    assert chats(b, "judge-a") and not chats(a, "judge-a")
    said = [("embedding model embed", "similar_to"), ("judge judge-a", "judge")]
    assert moved == [f"compare(): endpoint a ({a.url}) stopped answering: the {what} (check {check}) runs on b "
                     "instead." for what, check in said], moved
