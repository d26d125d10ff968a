"""A cached re-run's frame is the uncached run's: the same rows, values and dtypes (less what says it was cached)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lm_notebook import LMStudioClient, compare
from lm_notebook.comparison.rows import _column
from lm_notebook.comparison.schedule import PromptItem, RequestSpec, plan_requests
from lm_notebook.testing import MockLMStudioServer

# a stored answer is never cold (nothing was loaded for it), and says it was cached; context_length is the model's
# as listed at the run (its loaded context when it is loaded, else its largest), not stored with the answer
FRESH = ["cached", "cold", "load_s", "context_length"]
MODELS = ["alpha", "beta", "thinker"]  # two quantizations and formats, and one that reasons


def _inputs() -> pd.DataFrame:
    return pd.DataFrame({
        "topic": ["mutexes", "primes", "é ✓ \"quoted\"", "tabs\tand\nlines"],
        "level": [1, 2, 3, 4],
        "model": ["a", "b", "c", "d"],  # clashes with a column of the result: model_input
        "server_load_s": [0.5, None, 1.5, 2.5],  # not one of the result's columns: kept as given
    }, index=["w", "x", "y", "z"])


def _run(client: LMStudioClient, path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    return compare(frame, MODELS, client=client, template="Explain {topic} at level {level}.", system="Be brief.",
                   repeats=2, temperature=0, max_tokens=40, top_p=0.9, cache=path, progress=False)


def test_a_cached_rerun_has_the_uncached_runs_values_and_dtypes(
    client: LMStudioClient, server: MockLMStudioServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.sqlite"
    first = _run(client, path, _inputs())
    assert (first.status == "ok").all() and not first.cached.any() and first.cold.any()
    sent = len(server.requests)
    again = _run(client, path, _inputs())
    assert not [r for r in server.requests[sent:] if r.is_chat]  # every row a hit
    assert again.cached.all() and not again.cold.any() and again.load_s.isna().all()
    assert list(again.columns) == list(first.columns)
    assert dict(again.dtypes) == dict(first.dtypes)
    pd.testing.assert_frame_equal(again.drop(columns=FRESH), first.drop(columns=FRESH))
    given = pd.Series([0.5] * 6 + [None] * 6 + [1.5] * 6 + [2.5] * 6, dtype="float64", name="server_load_s")
    pd.testing.assert_series_equal(again["server_load_s"].reset_index(drop=True), given)


def test_a_run_half_cached_has_the_dtypes_of_one_not_cached(
    client: LMStudioClient, server: MockLMStudioServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.sqlite"
    half = _run(client, path, _inputs().iloc[:2])
    mixed = _run(client, path, _inputs())
    uncached = _run(client, tmp_path / "other.sqlite", _inputs())
    assert list(mixed.cached) == [True] * len(half) + [False] * (len(mixed) - len(half))
    assert dict(mixed.dtypes) == dict(uncached.dtypes)
    # the cached rows are the first run's, the others as asked now
    pd.testing.assert_frame_equal(mixed.iloc[:len(half)].drop(columns=FRESH), half.drop(columns=FRESH))
    assert list(mixed.response) == list(uncached.response) and list(mixed.reasoning) == list(uncached.reasoning)


@pytest.mark.parametrize("values", [
    [1, 2, None], [None, None], [], [3, 4], [True, 1], [1.0, None], [np.int64(3), None], [None, -5], [2**70, None],
])
def test_an_integer_column_is_what_pandas_makes_of_its_values(values: list[Any]) -> None:
    try:
        expected = pd.array(values, dtype="Int64")
    except OverflowError as exc:
        with pytest.raises(OverflowError, match=str(exc)):
            _column("prompt_tokens", values)
        return
    got = _column("prompt_tokens", values)
    assert type(got) is type(expected) and got.dtype == expected.dtype and got.equals(expected)


@pytest.mark.parametrize(("name", "values"), [
    ("ttft_s", [None, 1.5, 2, True, "0.5"]), ("ttft_s", ["fast", None, 1.0]), ("cold", [True, False]),
    ("cold", [1, None, "x"]),
])
def test_float_and_flag_columns_are_as_before(name: str, values: list[Any]) -> None:
    if name == "cold":
        expected = np.array([bool(v) for v in values], dtype=bool)
    else:
        expected = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").astype("float64").to_numpy()
    np.testing.assert_array_equal(_column(name, values), expected)


def test_a_planned_row_is_the_dataclass_it_names() -> None:
    made_spec = plan_requests([PromptItem("p", "text")], ["m"], repeats=2)[1]
    spec = RequestSpec(1, 0, "p", "text", "m", 1)
    assert made_spec == spec and hash(made_spec) == hash(spec) and repr(made_spec) == repr(spec)
    assert dataclasses.replace(made_spec, model="n") == RequestSpec(1, 0, "p", "text", "n", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made_spec.model = "other"  # type: ignore[misc]
