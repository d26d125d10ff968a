"""The pure plan behind compare(): request order, grouping by model, slots, and the bench's ideal numbers."""

from __future__ import annotations

import pytest

from lm_notebook.comparison.schedule import (
    DEFAULT_SLOTS,
    PromptItem,
    count_loads,
    ideal_seconds,
    naive_seconds,
    order_models,
    plan_requests,
    resolve_slots,
    schedule,
)


def test_requests_are_in_result_order_prompt_then_model_then_repeat() -> None:
    specs = plan_requests(["p", "q"], ["a", "b"], repeats=2)
    assert [(s.prompt, s.model, s.repeat) for s in specs] == [
        ("p", "a", 0), ("p", "a", 1), ("p", "b", 0), ("p", "b", 1),
        ("q", "a", 0), ("q", "a", 1), ("q", "b", 0), ("q", "b", 1),
    ]
    assert [s.index for s in specs] == list(range(8))
    assert {s.prompt_index for s in specs if s.prompt == "q"} == {1}


def test_named_prompts_keep_their_names() -> None:
    specs = plan_requests([PromptItem("greet", "Hi"), PromptItem(("x", 2), "Yo")], ["a"])
    assert [s.prompt_name for s in specs] == ["greet", ("x", 2)]


def test_repeats_must_be_positive() -> None:
    with pytest.raises(ValueError, match="repeats"):
        plan_requests(["p"], ["a"], repeats=0)


def test_schedule_groups_by_model_so_each_loads_once() -> None:
    specs = plan_requests([f"p{i}" for i in range(5)], ["a", "b", "c"])
    batches = schedule(specs)
    assert [b.model for b in batches] == ["a", "b", "c"]
    assert all(len(b.requests) == 5 for b in batches)
    assert all(r.model == b.model for b in batches for r in b.requests)
    executed = [r.model for b in batches for r in b.requests]
    assert count_loads(executed) == 3
    # the order the results are laid out in would load a model per request
    assert count_loads([s.model for s in specs]) == 15


def test_loaded_models_run_first_and_are_not_cold() -> None:
    specs = plan_requests(["p"], ["a", "b", "c"])
    batches = schedule(specs, loaded={"c"})
    assert [(b.model, b.cold) for b in batches] == [("c", False), ("a", True), ("b", True)]
    assert order_models(["a", "b", "c", "d"], ["d", "b"]) == ["b", "d", "a", "c"]


def test_slots_auto_uses_the_reported_parallel_else_a_default_to_correct() -> None:
    assert resolve_slots("auto", 2) == (2, True)
    assert resolve_slots("auto", None) == (DEFAULT_SLOTS, False)
    assert resolve_slots(7, None) == (7, True)
    assert resolve_slots(1, 4) == (1, True)
    specs = plan_requests(["p"], ["a", "b"])
    batches = schedule(specs, loaded={"a"}, parallel={"a": 8, "b": None})
    assert [(b.slots, b.slots_known) for b in batches] == [(8, True), (DEFAULT_SLOTS, False)]


@pytest.mark.parametrize("bad", [0, -1, "4", 2.5, True])
def test_bad_concurrency_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        resolve_slots(bad, None)  # type: ignore[arg-type]


def test_count_loads_with_a_model_already_loaded() -> None:
    assert count_loads(["a", "a", "b", "a"], loaded="a") == 2
    assert count_loads([]) == 0


def test_ideal_and_naive_times_from_the_issue_numbers() -> None:
    # 3 models × 24 prompts, 1 s load, 50 tokens/s, 4 slots, 25-token replies (0.5 s each)
    ideal = ideal_seconds(models=3, prompts=24, slots=4, load_seconds=1.0, reply_tokens=25, tokens_per_second=50)
    assert ideal == pytest.approx(3 * (1.0 + 6 * 0.5))
    naive = naive_seconds(models=3, prompts=24, load_seconds=1.0, reply_tokens=25, tokens_per_second=50)
    assert naive == pytest.approx(72 * 1.0 + 72 * 0.5)
    # with one model the naive loop loads it once
    assert naive_seconds(models=1, prompts=10, load_seconds=1.0, reply_tokens=50, tokens_per_second=50) == 11.0
    # an uneven last wave still costs a whole wave
    assert ideal_seconds(models=1, prompts=5, slots=4, load_seconds=0, reply_tokens=10,
                         tokens_per_second=10, ttft_seconds=0.5) == pytest.approx(2 * 1.5)
