"""A cached re-run's frame is the uncached run's: the same rows, values and dtypes (less what says it was cached)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lm_notebook import LMStudioClient, compare
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
