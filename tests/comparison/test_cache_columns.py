"""A compare row's record is stored one field a column (no JSON to parse on a cached re-run); records stored as JSON
by earlier versions still hit, and are moved to the columns when read."""

from __future__ import annotations

import gc
import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from lm_notebook import LMStudioClient, compare
from lm_notebook.comparison.cache import ANSWER_FIELDS, APPLICATION_ID, ResponseCache
from lm_notebook.comparison.collector import gc_paused
from lm_notebook.comparison.rows import Outcome
from lm_notebook.testing import MockLMStudioServer

PROMPTS = [f"question {i}" for i in range(12)]


def _tables(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: db.execute(f"SELECT COUNT(*) FROM {n}").fetchone()[0] for n in names}
    finally:
        db.close()


def test_the_stored_fields_are_a_rows_record() -> None:
    assert list(Outcome(status="ok").record()) == list(ANSWER_FIELDS)


def test_a_rows_record_comes_back_as_it_was_stored(tmp_path: Path) -> None:
    record = Outcome(
        status="ok", response="é ✓ \"quoted\"\n", finish_reason="stop", ttft_s=1.0, latency_s=0.25, tokens_per_s=None,
        prompt_tokens=12, completion_tokens=0, started_at="2026-12-02T12:00:00.5+00:00", served_model="m",
        attempts=2, cold=True, reasoning_tokens=3,
    ).record()
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        cache.put("k", record, model="m")
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        got = cache.get("k")
        assert got == record and cache.get_many(["k", "other"]) == {"k": record}
        assert got is not None and type(got["ttft_s"]) is float and type(got["attempts"]) is int
        assert got["cold"] is True and got["tokens_per_s"] is None
        assert len(cache) == 1
    assert _tables(tmp_path / "c.sqlite") == {"responses": 0, "answers_1": 1}  # in the columns, not as JSON


def test_a_record_sqlite_cannot_hold_in_columns_is_stored_as_json(tmp_path: Path) -> None:
    record = {**Outcome(status="ok").record(), "response": ["not", "text"]}
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        cache.put("k", record)
        assert cache.get("k") == record
        cache.clear()
        assert len(cache) == 0 and cache.get("k") is None


def test_a_cache_of_json_records_still_hits_and_is_moved_to_the_columns(
    client: LMStudioClient, server: MockLMStudioServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.sqlite"
    first = compare(PROMPTS, ["alpha"], client=client, temperature=0, cache=path, progress=False)
    assert (first.status == "ok").all()
    # the file as the version before wrote it: each row's record as JSON in `responses`, no columns table
    db = sqlite3.connect(path)
    rows = db.execute(f"SELECT key, model, created, {', '.join(ANSWER_FIELDS)} FROM answers_1").fetchall()
    db.execute("DROP TABLE answers_1")
    db.executemany("INSERT INTO responses (key, model, created, record) VALUES (?, ?, ?, ?)", [
        (key, model, created, json.dumps(dict(zip(ANSWER_FIELDS, values, strict=True)), ensure_ascii=False))
        for key, model, created, *values in rows
    ])
    db.commit()
    db.close()
    assert _tables(path) == {"responses": len(PROMPTS)}

    sent = len(server.requests)
    again = compare(PROMPTS, ["alpha"], client=client, temperature=0, cache=path, progress=False)
    assert not [r for r in server.requests[sent:] if r.is_chat]  # every row a hit
    assert again.cached.all()
    fresh = ["cached", "cold", "load_s"]  # a stored answer is never cold: nothing was loaded for it
    pd.testing.assert_frame_equal(again.drop(columns=fresh), first.drop(columns=fresh))
    assert _tables(path) == {"responses": 0, "answers_1": len(PROMPTS)}  # moved, once

    with ResponseCache(path) as cache:
        statements: list[str] = []
        cache._db.set_trace_callback(statements.append)
        third = compare(PROMPTS, ["alpha"], client=client, temperature=0, cache=cache, progress=False)
        cache._db.set_trace_callback(None)
        assert len(cache) == len(PROMPTS)
    pd.testing.assert_frame_equal(third, again)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "MAX(rowid)" not in s]
    assert len(reads) == 1 and "answers_1" in reads[0], reads  # the columns alone: nothing left as JSON to read
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_paused_restores_the_collector_as_it_was(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        with pytest.raises(RuntimeError), gc_paused():
            assert not gc.isenabled()
            raise RuntimeError("a failure inside")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
