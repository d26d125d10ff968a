"""compare(endpoints=...)'s judges and embedding models over fake servers on loopback ports, when endpoints are few
or down: a check's model pinned ``"name/model"`` runs on its endpoint whatever the number of endpoints given or up;
a pin that cannot work says which endpoint was pinned, whether it is up, what it lists and where the model is; and a
judge whose endpoint goes down during the candidates moves to another endpoint that lists it (a pinned one stays,
its cells saying why they have no grade).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from lm_notebook.checks import judge, similar_to
from lm_notebook.comparison.api import compare
from lm_notebook.comparison.check_models import CheckModelError
from lm_notebook.testing import MockLMStudioServer, ModelSpec


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
