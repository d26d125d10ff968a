"""compare(endpoints=...) over three fake servers on loopback ports (different models and one shared): models found
per endpoint, pins, the ``endpoint`` column, work shared between servers (proved on a ManualClock), and a server
killed mid-run — its rows in flight answered elsewhere, the rows only it had marked, nothing finished lost.

The servers are paced on ManualClocks, so what is in flight when is decided by the test, not by the machine's speed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest

import lm_notebook
from lm_notebook import LMStudioClient, LMStudioRequestError
from lm_notebook.comparison.api import COLUMNS, ProgressEvent, compare
from lm_notebook.comparison.endpoints import endpoint_models, endpoint_name, model_entries, named_endpoints
from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec

PROMPTS = [f"Question {i}" for i in range(6)]


def spec(model_id: str, **kw: Any) -> ModelSpec:
    return ModelSpec(model_id, **{"reply_tokens": 6, **kw})


def chats(server: MockLMStudioServer) -> list[Any]:
    return [r for r in server.requests if r.is_chat]


@pytest.fixture
def three() -> Iterator[dict[str, MockLMStudioServer]]:
    """a: alpha + shared, b: beta + shared, c: gamma + shared (none paced)."""
    servers = {
        "a": MockLMStudioServer(models=[spec("alpha"), spec("shared")]),
        "b": MockLMStudioServer(models=[spec("beta"), spec("shared")]),
        "c": MockLMStudioServer(models=[spec("gamma"), spec("shared")]),
    }
    for s in servers.values():
        s.start()
    try:
        yield servers
    finally:
        for s in servers.values():
            s.stop()


def urls(servers: dict[str, MockLMStudioServer]) -> dict[str, str]:
    return {name: s.url for name, s in servers.items()}


def drive_until(clock: ManualClock, done: threading.Event) -> None:
    """Move ``clock`` one second each time something waits on it, until ``done`` (waits on the clock's own signal;
    the short timeout only lets it notice ``done``)."""
    while not done.is_set():
        try:
            clock.wait_for_pending(1, timeout=0.2)
        except TimeoutError:
            continue
        clock.advance(1.0)


def in_thread(fn: Callable[[], None], failures: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


# --- models per endpoint, pins, the column ------------------------------------------------------------------------


def test_every_chat_model_of_every_endpoint_with_the_endpoint_column(three: dict[str, MockLMStudioServer]) -> None:
    df = compare(PROMPTS, endpoints=urls(three), temperature=0, progress=False)
    assert list(df.columns) == [*COLUMNS[:3], "endpoint", *COLUMNS[3:]]
    assert list(dict.fromkeys(df.model)) == ["alpha", "shared", "beta", "gamma"]
    assert len(df) == len(PROMPTS) * 4 and (df.status == "ok").all()
    where = df.groupby("model").endpoint.agg(set).to_dict()
    assert where["alpha"] == {"a"} and where["beta"] == {"b"} and where["gamma"] == {"c"}
    assert where["shared"] <= {"a", "b", "c"}
    for name, server in three.items():  # each row was answered by the server its endpoint names
        sent = sorted((r.chat_body["messages"][-1]["content"], r.model) for r in chats(server))
        kept = sorted(zip(df[df.endpoint == name].prompt, df[df.endpoint == name].served_model, strict=True))
        assert sent == kept, name
    assert (df.served_model == df.model).all() and (df.attempts == 1).all()


def test_pins_and_pairs_run_a_model_on_one_endpoint(three: dict[str, MockLMStudioServer]) -> None:
    df = compare(["Hi"], ["alpha", "c/shared", ("b", "shared")], endpoints=urls(three), progress=False)
    assert df.model.tolist() == ["alpha", "c/shared", "b/shared"]
    assert df.endpoint.tolist() == ["a", "c", "b"] and (df.status == "ok").all()
    assert df.served_model.tolist() == ["alpha", "shared", "shared"]
    assert [r.model for r in chats(three["c"])] == ["shared"]


def test_a_model_no_endpoint_has_fails_its_rows_naming_each_endpoint(three: dict[str, MockLMStudioServer]) -> None:
    df = compare(["Hi"], ["alpha", "gama"], endpoints=urls(three), progress=False)
    assert df.status.tolist() == ["ok", "error"] and df.error_type[1] == "ModelNotFoundError"
    assert 'Did you mean "gamma"' in df.error[1] and "a: alpha, shared" in df.error[1]


def test_a_list_of_urls_and_clients_names_endpoints_by_host_and_port(three: dict[str, MockLMStudioServer]) -> None:
    with LMStudioClient(three["b"].url, timeout=5) as client:
        df = compare(["Hi"], ["alpha", "beta"], endpoints=[three["a"].url, client], progress=False)
    assert df.endpoint.tolist() == [endpoint_name(three["a"].url), endpoint_name(three["b"].url)]
    assert df.endpoint[0] == three["a"].url.removeprefix("http://")


def test_bad_endpoints_are_refused_before_sending(three: dict[str, MockLMStudioServer]) -> None:
    a = three["a"].url
    with LMStudioClient(a) as client, pytest.raises(ValueError, match="client= or endpoints="):
        compare(["Hi"], ["alpha"], client=client, endpoints=[a], progress=False)
    for endpoints, message in (([], "empty"), ([a, a], "twice"), ({"x/y": a}, "without '/'"), (a, "a list")):
        with pytest.raises((ValueError, TypeError), match=message):
            compare(["Hi"], ["alpha"], endpoints=endpoints, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an endpoint"):
        compare(["Hi"], [("z", "alpha")], endpoints={"a": a}, progress=False)
    with pytest.raises(ValueError, match="more than once"):
        compare(["Hi"], ["a/alpha", ("a", "alpha")], endpoints={"a": a}, progress=False)
    assert not chats(three["a"])


def test_an_endpoint_down_from_the_start_fails_only_what_it_alone_serves(three: dict[str, MockLMStudioServer]) -> None:
    three["b"].stop()
    events: list[ProgressEvent] = []
    df = compare(["Hi"], ["alpha", "shared", "b/beta"], endpoints=urls(three), progress=events.append)
    assert [e.endpoint for e in events if e.kind == "down"] == ["b"]
    assert df.status.tolist() == ["ok", "ok", "error"] and df.endpoint[1] in {"a", "c"}
    assert df.error_type[2] == "LMStudioConnectionError"
    for s in three.values():
        s.stop()
    with pytest.raises(lm_notebook.LMStudioConnectionError):
        compare(["Hi"], ["alpha"], endpoints=urls(three), progress=False)


def test_models_per_endpoint_for_lm_models_all(three: dict[str, MockLMStudioServer]) -> None:
    listed = endpoint_models(urls(three))
    assert {name: [m.id for m in models] for name, models in listed.items()} == {
        "a": ["alpha", "shared"], "b": ["beta", "shared"], "c": ["gamma", "shared"],
    }


# --- sharing a model between servers ------------------------------------------------------------------------------


def test_a_model_on_two_servers_has_its_prompts_shared_and_both_run_at_once() -> None:
    clock = ManualClock()
    model = spec("m", loaded=True, parallel=2, ttft=1.0)
    failures: list[BaseException] = []
    with MockLMStudioServer(models=[model], clock=clock) as one, MockLMStudioServer(models=[model], clock=clock) as two:

        def drive() -> None:
            for _ in range(2):  # two waves: both servers' two slots busy at once, each time
                clock.wait_for_pending(4)
                assert len(chats(one)) % 2 == 0 and len(chats(two)) % 2 == 0
                clock.advance(1.0)

        driver = in_thread(drive, failures)
        df = compare([f"p{i}" for i in range(8)], ["m"], endpoints={"one": one.url, "two": two.url}, progress=False)
        driver.join()
        assert not failures, failures
        assert len(chats(one)) == 4 and len(chats(two)) == 4
        assert one.counters.max_active == 2 and two.counters.max_active == 2
    assert (df.status == "ok").all() and df.endpoint.value_counts().to_dict() == {"one": 4, "two": 4}


# --- a server killed mid-run --------------------------------------------------------------------------------------


def test_a_killed_endpoints_rows_in_flight_are_answered_by_another() -> None:
    killed, others = ManualClock(), ManualClock()
    a = MockLMStudioServer(models=[spec("alpha", loaded=True, ttft=1.0), spec("shared", ttft=1.0)], clock=others)
    b = MockLMStudioServer(models=[spec("shared", loaded=True, parallel=2, ttft=1.0)], clock=killed)
    c = MockLMStudioServer(models=[spec("gamma", loaded=True, ttft=1.0), spec("shared", ttft=1.0)], clock=others)
    events: list[ProgressEvent] = []
    failures: list[BaseException] = []
    done = threading.Event()
    with a, b, c:

        def kill_b_mid_run() -> None:
            killed.wait_for_pending(2)  # b's first two rows of shared, waiting for their first token
            killed.advance(1.0)  # ... answered
            killed.wait_for_pending(2)  # b's next two, in flight
            b.stop()
            drive_until(others, done)  # a and c were waiting on their own clock all along; now they go on

        driver = in_thread(kill_b_mid_run, failures)
        try:
            df = compare(PROMPTS, endpoints={"a": a.url, "b": b.url, "c": c.url}, temperature=0,
                         progress=events.append)
        finally:
            done.set()
            driver.join()
        assert not failures, failures
        assert len(chats(b)) == 4
    assert len(df) == len(PROMPTS) * 3 and (df.status == "ok").all(), df[["model", "endpoint", "error"]]
    shared = df[df.model == "shared"]
    assert (shared.endpoint == "b").sum() == 2  # finished on b before it died: kept
    moved = shared[shared.endpoint != "b"]
    assert len(moved) == 4 and set(moved.endpoint) <= {"a", "c"}
    # the two in flight on b: cut (1), tried again and refused (2), then answered elsewhere (3)
    assert sorted(moved.attempts.tolist()) == [1, 1, 3, 3]
    downs = [e for e in events if e.kind == "down"]
    assert [e.endpoint for e in downs] == ["b"]
    rows = [e for e in events if e.kind == "row"]
    assert len(rows) == len(df) and {e.endpoint for e in rows} == {"a", "b", "c"}


def test_rows_only_a_killed_endpoint_has_are_marked_with_its_error(three: dict[str, MockLMStudioServer]) -> None:
    clock = ManualClock()
    b = MockLMStudioServer(models=[spec("beta", loaded=True, parallel=2, ttft=1.0), spec("shared")], clock=clock)
    failures: list[BaseException] = []
    with b:

        def kill_b_mid_run() -> None:
            clock.wait_for_pending(2)
            clock.advance(1.0)
            clock.wait_for_pending(2)
            b.stop()

        driver = in_thread(kill_b_mid_run, failures)
        df = compare(PROMPTS, endpoints={"a": three["a"].url, "b": b.url, "c": three["c"].url}, progress=False)
        driver.join()
        assert not failures, failures
    beta = df[df.model == "beta"]
    assert beta.status.tolist() == ["ok", "ok", "error", "error", "error", "error"]
    assert (beta.endpoint == "b").all()
    assert beta.error_type.tolist()[2:] == ["LMStudioConnectionError"] * 4
    assert all("b (" in e and "stopped answering" in e for e in beta.error.tolist()[4:])  # never sent
    rest = df[df.model != "beta"]
    assert (rest.status == "ok").all() and not (rest.endpoint == "b").any()
    assert isinstance(df, pd.DataFrame) and lm_notebook.last_comparison() is df


def test_the_bar_shows_what_each_endpoint_does_and_its_rows() -> None:
    import io

    from lm_notebook.comparison.endpoint_progress import EndpointProgressBar

    out = io.StringIO()
    bar = EndpointProgressBar(3, ["laptop", "gpu"], file=out)

    def event(kind: str, **kw: Any) -> ProgressEvent:
        return ProgressEvent(kind, 0, 3, 0, 0, **kw)  # type: ignore[arg-type]

    bar(event("model", endpoint="laptop", model="qwen", cold=True))
    bar(event("loading", endpoint="laptop", model="qwen", elapsed_s=3.0))
    bar(event("model", endpoint="gpu", model="gemma"))
    bar(event("row", endpoint="gpu", model="gemma", status="ok"))
    bar(event("down", endpoint="laptop"))
    bar(ProgressEvent("row", 2, 3, 1, 0, endpoint="laptop", model="qwen", status="error"))
    bar.close()  # tqdm paints at most so often; closing paints the last state
    shown = out.getvalue()
    assert "laptop: qwen loading… 3 s · gpu: gemma" in shown
    assert "laptop: down · gpu: gemma" in shown and "laptop 1 · gpu 1 · 1 error" in shown


def test_checks_score_the_rows_of_every_endpoint(three: dict[str, MockLMStudioServer]) -> None:
    from lm_notebook.checks import regex

    df = compare(["Hi"], ["alpha", "beta"], endpoints=urls(three), checks=[regex(".")], progress=False)
    assert df.endpoint.tolist() == ["a", "b"] and df.check_regex.tolist() == [1.0, 1.0] and df.passed.all()


def test_stop_keeps_every_endpoints_rows_and_marks_the_rest() -> None:
    from lm_notebook.comparison import ComparisonInterrupted

    clock = ManualClock()
    fast = MockLMStudioServer(models=[spec("m1", loaded=True, parallel=1)])
    stuck = MockLMStudioServer(models=[spec("m2", loaded=True, parallel=1, ttft=1.0)], clock=clock)

    def progress(event: ProgressEvent) -> None:
        if event.kind == "row" and event.endpoint == "one" and event.done == 2:
            raise KeyboardInterrupt  # what a Stop does inside the run

    with fast, stuck, pytest.raises(ComparisonInterrupted) as stopped:
        compare(PROMPTS[:3], endpoints={"one": fast.url, "two": stuck.url}, progress=progress)
    frame = stopped.value.frame
    assert lm_notebook.last_comparison() is frame and len(frame) == 6
    m1, m2 = frame[frame.model == "m1"], frame[frame.model == "m2"]
    assert m1.status.tolist()[:2] == ["ok", "ok"] and (m1.endpoint.iloc[:2] == "one").all()
    assert (m2.status == "cancelled").all()
    assert m2.endpoint.tolist() == ["two", None, None]  # the one in flight there, then two never sent
    assert m2.error.tolist()[1:] == ["cancelled (not run)"] * 2


async def _acompare_both(urls: dict[str, str]) -> pd.DataFrame:
    from lm_notebook import AsyncLMStudioClient
    from lm_notebook.comparison.api import acompare

    async with AsyncLMStudioClient(urls["b"]) as b:
        df = await acompare(["Hi"], ["alpha", "beta"], endpoints={"a": urls["a"], "b": b}, progress=False)
        assert not b.is_closed  # an async client given is used as is, and left open
        return df


def test_acompare_takes_endpoints_too(three: dict[str, MockLMStudioServer]) -> None:
    import asyncio

    df = asyncio.run(_acompare_both(urls(three)))
    assert df.endpoint.tolist() == ["a", "b"] and (df.status == "ok").all()


def test_a_rerun_with_the_cache_sends_nothing_to_any_endpoint(three: dict[str, MockLMStudioServer],
                                                             tmp_path: Any) -> None:
    cache = tmp_path / "answers.sqlite"
    first = compare(PROMPTS[:2], ["alpha", "beta", "shared"], endpoints=urls(three), temperature=0, cache=cache,
                    progress=False)
    sent = sum(len(chats(s)) for s in three.values())
    again = compare(PROMPTS[:2], ["alpha", "beta", "shared"], endpoints=urls(three), temperature=0, cache=cache,
                    progress=False)
    assert sent == 6 and sum(len(chats(s)) for s in three.values()) == sent
    assert again.cached.all() and (again.response == first.response).all()
    assert again.endpoint.isna().all() and first.endpoint.notna().all()  # a stored answer was served by no one now


def test_pinned_copies_of_one_model_keep_their_own_cached_answers(three: dict[str, MockLMStudioServer],
                                                                   tmp_path: Any) -> None:
    # the same model on two machines: a cached re-run must not serve one machine's answer for the other
    three["a"].answer("shared", "Question 0", "from a")
    three["b"].answer("shared", "Question 0", "from b")
    cache = tmp_path / "answers.sqlite"
    pins = [("a", "shared"), ("b", "shared")]
    first = compare(PROMPTS[:1], pins, endpoints=urls(three), temperature=0, cache=cache, progress=False)
    again = compare(PROMPTS[:1], pins, endpoints=urls(three), temperature=0, cache=cache, progress=False)
    assert dict(zip(first.model, first.response, strict=True)) == {"a/shared": "from a", "b/shared": "from b"}
    assert again.cached.all()
    assert dict(zip(again.model, again.response, strict=True)) == {"a/shared": "from a", "b/shared": "from b"}


def test_a_listed_url_with_a_path_prefix_is_named_without_a_slash(three: dict[str, MockLMStudioServer]) -> None:
    a = three["a"].url
    pairs = named_endpoints(["http://gpu:1234/lmstudio/v1", "http://gpu:1234/other/lm/", "http://gpu:1234", a])
    assert [name for name, _ in pairs] == ["gpu:1234_lmstudio", "gpu:1234_other_lm", "gpu:1234",
                                           a.removeprefix("http://")]
    assert [(e.label, e.pinned) for e in model_entries(["gpu:1234_lmstudio/qwen"], [n for n, _ in pairs])] == [
        ("gpu:1234_lmstudio/qwen", "gpu:1234_lmstudio")]
    for endpoints, message in (([a, "ftp://gpu:1234"], r"endpoints\[1\] is not a server's address: base_url "
                                                       "'ftp://gpu:1234' is not an http:// or https:// address"),
                               ({"gpu": "http://"}, r"endpoints\['gpu'\] is not a server's address: base_url "
                                                    "'http://' names no host")):
        with pytest.raises(LMStudioRequestError, match=message):
            compare(["Hi"], ["alpha"], endpoints=endpoints, progress=False)
    assert not chats(three["a"])


def _killed_mid_run(b_models: list[ModelSpec], models: list[str] | None) -> pd.DataFrame:
    """compare over a (alpha loaded, shared) and b (``b_models``), b stopped with two rows in flight."""
    killed, others = ManualClock(), ManualClock()
    a = MockLMStudioServer(models=[spec("alpha", loaded=True, ttft=1.0), spec("shared", ttft=1.0)], clock=others)
    b = MockLMStudioServer(models=b_models, clock=killed)
    failures: list[BaseException] = []
    done = threading.Event()
    with a, b:

        def kill_b_mid_run() -> None:
            killed.wait_for_pending(2)  # b's first two rows, waiting for their first token
            killed.advance(1.0)
            killed.wait_for_pending(2)  # two more in flight
            b.stop()
            drive_until(others, done)

        driver = in_thread(kill_b_mid_run, failures)
        try:
            df = compare(PROMPTS, models, endpoints={"a": a.url, "b": b.url}, temperature=0, progress=False)
        finally:
            done.set()
            driver.join()
        assert not failures, failures
    return df


def test_with_retries_off_a_stream_cut_by_a_dead_endpoint_still_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    from lm_notebook.comparison import api
    from lm_notebook.comparison.retry import RetryPolicy

    monkeypatch.setattr(api, "DEFAULT_RETRY", RetryPolicy(attempts=1))
    df = _killed_mid_run([spec("shared", loaded=True, parallel=2, ttft=1.0)], None)
    assert (df.status == "ok").all(), df[["model", "endpoint", "error"]]
    shared = df[df.model == "shared"]
    assert (shared.endpoint == "b").sum() == 2  # answered on b before it died
    # the two cut on b (attempt 1, not retried there) were answered on a (attempt 2)
    assert sorted(shared[shared.endpoint == "a"].attempts.tolist()) == [1, 1, 2, 2]
    # a model only b has: its cut rows say what happened
    df = _killed_mid_run([spec("beta", loaded=True, parallel=2, ttft=1.0)], ["alpha", "beta"])
    beta = df[df.model == "beta"]
    assert beta.status.tolist() == ["ok", "ok", "error", "error", "error", "error"]
    cut = beta.error.iloc[2:4].tolist()
    assert all("broke mid-answer" in e and e.endswith("stopped answering and no other endpoint has beta.")
               for e in cut), cut


def test_the_checks_models_are_found_on_the_endpoint_that_lists_them() -> None:
    """The judge and the embedding model run on the first endpoint that lists them (``"name/model"`` pins one);
    an id no endpoint lists is refused before anything is sent, naming every endpoint checked."""
    from lm_notebook.checks import judge, similar_to
    from lm_notebook.comparison.check_models import CheckModelError

    servers = {"a": MockLMStudioServer(models=[spec("alpha"), spec("judge-a")]),
               "b": MockLMStudioServer(models=[spec("beta"), spec("judge-a"), spec("judge-b"),
                                               spec("embed", type="embeddings")])}
    for s in servers.values():
        s.start()
    try:
        a, b = servers["a"], servers["b"]
        df = compare(["What is the capital of France?"], ["alpha"], endpoints=urls(servers), progress=False,
                     temperature=0, expected=["Paris"],
                     checks=[judge("Is it right?", model="judge-b"), judge("Is it short?", model="judge-a",
                                                                           name="short"),
                             judge("Is it kind?", model="b/judge-a", name="kind"), similar_to()])
        assert df[["check_judge", "check_short", "check_kind", "check_similar_to"]].notna().all(axis=None), \
            df["check_notes"].tolist()
        assert [r.model for r in chats(a)] == ["alpha", "judge-a"]  # the first endpoint that lists judge-a
        assert [r.model for r in chats(b)] == ["judge-b", "judge-a"]  # judge-b only here; judge-a pinned here
        assert [r.path for r in b.requests if r.path == "/v1/embeddings"] and not [
            r for r in a.requests if r.path == "/v1/embeddings"]
        for s in servers.values():
            s.clear_requests()
        with pytest.raises(CheckModelError, match=r'"judge-x", is not available on any endpoint \(checked: a at '
                                                  r'http://127\.0\.0\.1:\d+: alpha, judge-a; b at http://127\.0\.0\.1:'
                                                  r'\d+: beta, embed, judge-a, judge-b\)\. Did you mean "judge-a"'):
            compare(["Hi"], ["alpha"], endpoints=urls(servers), progress=False,
                    checks=[judge("Ok?", model="judge-x")])
        assert not chats(a) and not chats(b)
    finally:
        for s in servers.values():
            s.stop()
