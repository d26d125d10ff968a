"""The SQLite answer cache: what the key covers, what is cached, and that it survives reopening."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from lm_notebook import LMStudioClient, compare
from lm_notebook.comparison.cache import (
    APPLICATION_ID,
    ResponseCache,
    cache_key,
    default_cache_path,
    is_deterministic,
    open_cache,
)
from lm_notebook.comparison.rows import Outcome
from lm_notebook.testing import MockLMStudioServer

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
BASE: dict[str, Any] = {
    "model": "m",
    "quantization": "Q4_K_M",
    "format": "gguf",
    "messages": MESSAGES,
    "params": {"temperature": 0, "max_tokens": 50, "top_p": 0.9},
    "repeat": 0,
}


def key(**changes: Any) -> str:
    return cache_key(**{**BASE, **changes})


def test_key_is_stable_and_ignores_param_order_and_unsent_nones() -> None:
    assert key() == key()
    assert key(params={"top_p": 0.9, "max_tokens": 50, "temperature": 0}) == key()
    assert key(params={**BASE["params"], "seed": None}) == key()


@pytest.mark.parametrize(
    "change",
    [
        {"model": "m2"},
        {"quantization": "Q8_0"},
        {"format": "mlx"},
        {"messages": [{"role": "user", "content": "Hi"}]},
        {"messages": [{"role": "system", "content": "Be long."}, {"role": "user", "content": "Hi"}]},
        {"params": {"temperature": 0, "max_tokens": 51, "top_p": 0.9}},
        {"params": {"temperature": 0, "max_tokens": 50, "top_p": 0.9, "seed": 1}},
        {"params": {"temperature": 0, "max_tokens": 50, "top_p": 0.9, "stop": ["\n"]}},
        {"repeat": 1},
    ],
)
def test_every_part_of_the_request_changes_the_key(change: dict[str, Any]) -> None:
    assert key(**change) != key()


def test_only_deterministic_requests_by_default() -> None:
    assert is_deterministic({"temperature": 0})
    assert is_deterministic({"temperature": 0.0, "seed": None})
    assert is_deterministic({"temperature": 0.8, "seed": 3})
    assert not is_deterministic({"temperature": 0.8})
    assert not is_deterministic({})  # the server's default temperature is not 0
    cache = ResponseCache(":memory:")
    assert cache.accepts({"seed": 1}) and not cache.accepts({"temperature": 0.7})
    assert ResponseCache(":memory:", deterministic_only=False).accepts({"temperature": 0.7})


def test_put_get_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "cache.sqlite"
    with ResponseCache(path) as cache:
        cache.put(key(), {"response": "hello", "ttft_s": 0.1}, model="m")
        cache.put(key(model="m2"), {"response": "other"}, model="m2")
        assert len(cache) == 2
    with ResponseCache(path) as cache:
        assert cache.get(key()) == {"response": "hello", "ttft_s": 0.1}
        assert cache.get(key(repeat=3)) is None
        cache.clear("m2")
        assert len(cache) == 1
        cache.clear()
        assert len(cache) == 0


def test_a_damaged_record_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        cache.put(key(), {"response": "x"})
    db = sqlite3.connect(path)
    db.execute("UPDATE responses SET record = '{not json'")
    db.commit()
    db.close()
    with ResponseCache(path) as cache:
        assert cache.get(key()) is None
        assert cache.get_many([key()]) == {}


def test_open_cache_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert open_cache(None) == (None, False)
    assert open_cache(False) == (None, False)
    mine = ResponseCache(":memory:")
    assert open_cache(mine) == (mine, False)
    made, owned = open_cache(tmp_path / "x.sqlite")
    assert owned and made is not None and made.path == tmp_path / "x.sqlite"
    made.close()
    monkeypatch.setenv("LM_NOTEBOOK_CACHE_DIR", str(tmp_path / "cachedir"))
    assert default_cache_path() == tmp_path / "cachedir" / "compare.sqlite"
    made, owned = open_cache(True)
    assert owned and made is not None and Path(made.path).parent.is_dir()
    made.close()
    monkeypatch.delenv("LM_NOTEBOOK_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "lm_notebook" / "compare.sqlite"
    with pytest.raises(TypeError, match="cache must be"):
        open_cache(3)  # type: ignore[arg-type]


def test_zero_and_zero_point_zero_are_one_request() -> None:
    from lm_notebook.comparison.cache import cache_key

    as_int = cache_key(model="m", messages=[{"role": "user", "content": "a"}], params={"temperature": 0}, repeat=0)
    as_float = cache_key(model="m", messages=[{"role": "user", "content": "a"}], params={"temperature": 0.0},
                         repeat=0)
    assert as_int == as_float
    assert as_int != cache_key(model="m", messages=[{"role": "user", "content": "a"}], params={"temperature": 0.1},
                               repeat=0)


def _make(path: Path, kind: str) -> None:
    if kind == "directory":
        path.mkdir()
    elif kind == "other bytes":
        path.write_text("my notes, not a database\n")
    else:
        table = "people (name TEXT)" if kind == "another database" else "responses (id INTEGER, body BLOB)"
        with sqlite3.connect(path) as db:
            db.execute(f"CREATE TABLE {table}")
        db.close()


def _snapshot(folder: Path) -> list[tuple[str, bytes]]:
    return sorted((str(p), p.read_bytes() if p.is_file() else b"") for p in folder.rglob("*"))


@pytest.mark.parametrize("kind", ["directory", "other bytes", "another database", "a table of the same name"])
def test_a_path_that_is_not_a_cache_is_refused_in_one_line_and_left_alone(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "answers.sqlite"
    _make(path, kind)
    before = _snapshot(tmp_path)
    for opening in (lambda: ResponseCache(path), lambda: open_cache(path), lambda: open_cache(str(path))):
        with pytest.raises(ValueError) as refused:
            opening()
        message = str(refused.value)
        assert message.startswith(f"cache={str(path)!r} is ") and "\n" not in message
        assert "cache=True" in message  # what to pass instead
        assert _snapshot(tmp_path) == before  # not a byte written, no journal left


def test_a_cache_is_marked_as_ours_and_an_unmarked_one_of_ours_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        cache.put(key(), {"response": "hello"})
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
    db.execute("PRAGMA application_id = 0")  # as a cache made before the mark was
    db.commit()
    db.close()
    with ResponseCache(path) as cache:
        assert cache.get(key()) == {"response": "hello"}
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
    db.close()


def test_an_existing_cache_file_is_opened_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 17: a cached re-run opened the file twice, once read-only to look at its tables, then to use it
    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        cache.put(key(), {"response": "hello"})
    opened: list[str] = []
    connect = sqlite3.connect

    def counting(database: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(database)
        return connect(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", counting)
    with ResponseCache(path) as cache:
        assert cache.get(key()) == {"response": "hello"}
    assert opened == [str(path)]


def test_a_cache_file_commits_without_waiting_for_the_disk(tmp_path: Path) -> None:
    # write-ahead log, synchronous=NORMAL: a commit per answer is atomic but does not fsync (issue 17: each one held
    # compare's event loop ~15 ms, every stream in flight with it)
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        assert cache._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert cache._db.execute("PRAGMA synchronous").fetchone() == (1,)
        cache.put("k", {"response": "hello"})
    assert ResponseCache(tmp_path / "c.sqlite").get("k") == {"response": "hello"}


def test_a_row_record_is_its_fields_less_cached() -> None:
    outcome = Outcome(status="ok", response="hi", ttft_s=0.1, cached=True)
    record = outcome.record()
    assert "cached" not in record and record["response"] == "hi" and Outcome.from_record(record).cached


def _key_as_made_before(*, model: str, messages: Any, params: dict[str, Any], repeat: int,
                        quantization: str | None = None, format: str | None = None) -> str:
    """The key as compare made it before keys were laid out piece by piece (a cache made then must still hit)."""
    same = {k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
            for k, v in sorted(params.items()) if v is not None}
    material = {"v": 1, "model": model, "quantization": quantization, "format": format,
                "messages": [dict(m) for m in messages], "params": same, "repeat": repeat}
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=repr)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("change", [
    {},
    {"model": 'qwen/"quoted" é', "quantization": None, "format": None, "repeat": 12},
    {"messages": [{"role": "user", "name": "ann", "content": 'a "q" \\ \n\t\x01 é ✓ 😀'}, {}, {"role": "assistant",
                  "content": ""}]},  # text only: laid out by hand
    {"messages": [{"role": "user", "content": "hi", "n": 1}]},  # not text only: by the encoder
    {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "ß ✓"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
    ]}]},
    {"params": {"temperature": 0, "seed": None, "response_format": {"type": "json_schema", "z": [1, 2.5, True]},
                "stop": ["\n"], "top_k": 40}},
])
def test_keys_are_the_ones_made_before(change: dict[str, Any]) -> None:
    assert key(**change) == _key_as_made_before(**{**BASE, **change})


def test_a_cached_rerun_reads_the_cache_in_one_query_not_one_per_row(
    client: LMStudioClient, server: MockLMStudioServer, tmp_path: Path
) -> None:
    prompts = [f"question {i}" for i in range(30)]
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        first = compare(prompts, ["alpha"], client=client, temperature=0, cache=cache, progress=False)
        assert (first.status == "ok").all()
        statements: list[str] = []
        cache._db.set_trace_callback(statements.append)
        sent = len(server.requests)
        again = compare(prompts, ["alpha"], client=client, temperature=0, cache=cache, progress=False)
        cache._db.set_trace_callback(None)
    assert again.cached.all() and list(again.response) == list(first.response)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "MAX(rowid)" not in s]
    assert len(reads) == 1, reads  # one query for the 30 keys (it was one per row)
    assert not [s for s in statements if "INSERT" in s.upper()]
    assert not [r for r in server.requests[sent:] if r.is_chat]  # nothing asked of the model


def test_the_model_listing_goes_out_once_the_call_is_checked_and_before_the_rows_are_planned(
    client: LMStudioClient, server: MockLMStudioServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 17: a cached re-run's one round trip (the listing its keys and model columns need) overlaps its set-up
    import lm_notebook.comparison.preflight as preflight
    import lm_notebook.comparison.run as run_module
    import lm_notebook.comparison.start as start_module

    events: list[str] = []
    listing, planning = preflight.model_infos, start_module.plan_requests

    async def listed(*args: Any, **kwargs: Any) -> Any:
        events.append("listing")
        return await listing(*args, **kwargs)

    def planned(*args: Any, **kwargs: Any) -> Any:
        events.append("planning")
        return planning(*args, **kwargs)

    for module in (preflight, run_module):
        monkeypatch.setattr(module, "model_infos", listed)
    monkeypatch.setattr(start_module, "plan_requests", planned)
    prompts = [f"question {i}" for i in range(5)]
    path = tmp_path / "c.sqlite"
    first = compare(prompts, ["alpha"], client=client, temperature=0, cache=path, progress=False)
    assert events == ["listing", "planning"] and (first.status == "ok").all()
    events.clear()
    again = compare(prompts, ["alpha"], client=client, temperature=0, cache=path, progress=False)
    assert events == ["listing", "planning"] and again.cached.all()
    # what is given wrong is still refused before anything is sent
    sent = len(server.requests)
    with pytest.raises(ValueError, match="repeats"):
        compare(prompts, ["alpha"], client=client, temperature=0, cache=path, progress=False, repeats=0)
    with pytest.raises(ValueError, match="is a directory"):
        compare(prompts, ["alpha"], client=client, temperature=0, cache=tmp_path, progress=False)
    assert len(server.requests) == sent and "listing" not in events[2:]


def test_a_fully_cached_rerun_keeps_the_collector_off_to_its_frame_and_a_run_that_sends_does_not(
    client: LMStudioClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 17: a collection between the bulk-made phases walked a cached re-run's rows for nothing
    import gc

    import lm_notebook.comparison.run as run_module

    collecting: list[bool] = []
    execute = run_module.ComparisonRun.execute

    async def executing(self: Any) -> Any:
        collecting.append(gc.isenabled())
        return await execute(self)

    monkeypatch.setattr(run_module.ComparisonRun, "execute", executing)
    assert gc.isenabled()
    path = tmp_path / "c.sqlite"
    first = compare(["a", "b"], ["alpha"], client=client, temperature=0, cache=path, progress=False)
    again = compare(["a", "b"], ["alpha"], client=client, temperature=0, cache=path, progress=False)
    more = compare(["a", "b", "c"], ["alpha"], client=client, temperature=0, cache=path, progress=False)
    assert not first.cached.any() and again.cached.all() and list(more.cached) == [True, True, False]
    assert collecting == [True, False, True]  # on while rows stream; off when every row was settled
    assert gc.isenabled()  # and back on after each


def test_a_cache_about_the_runs_size_is_read_in_one_pass_and_a_larger_one_key_by_key(tmp_path: Path) -> None:
    # issue 17: a re-run of what filled the cache reads its table in one pass (half the time of a look-up a key)
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        rows = {f"k{i}": _row_record(f"answer {i}") for i in range(30)}
        for k, r in rows.items():
            cache.put(k, r, model="m")
        statements: list[str] = []
        cache._db.set_trace_callback(statements.append)
        wanted = [f"k{i}" for i in range(20)] + ["missing"]
        assert cache.get_many(wanted) == {k: rows[k] for k in wanted[:20]}
        answers = [s for s in statements if "FROM answers_1" in s and "MAX(rowid)" not in s]
        assert len(answers) == 1 and "WHERE" not in answers[0], answers  # 30 stored, 21 asked: one pass
        statements.clear()
        assert cache.get_many(["k3", "k4", "nope"]) == {"k3": rows["k3"], "k4": rows["k4"]}
        answers = [s for s in statements if "FROM answers_1" in s and "MAX(rowid)" not in s]
        assert len(answers) == 1 and "WHERE key IN" in answers[0], answers  # 30 stored, 3 asked: by key
        cache._db.set_trace_callback(None)


def _row_record(response: str) -> dict[str, Any]:
    from lm_notebook.comparison.cache import ANSWER_FIELDS

    record: dict[str, Any] = dict.fromkeys(ANSWER_FIELDS)
    record.update(status="ok", response=response, cold=False, attempts=1, ttft_s=0.25, prompt_tokens=3)
    return record


def test_a_fully_cached_rerun_still_refuses_a_model_the_server_no_longer_serves(
    client: LMStudioClient, tmp_path: Path
) -> None:
    # the README's promise: a re-run asks the server for its models first, so the cache never hides a model gone
    from lm_notebook.testing import ModelSpec

    path = tmp_path / "c.sqlite"
    first = compare(["a", "b"], ["alpha", "beta"], client=client, temperature=0, cache=path, progress=False)
    assert (first.status == "ok").all()
    alpha = ModelSpec("alpha", arch="llama", quantization="Q4_K_M", context_length=4096, parallel=2)
    with MockLMStudioServer(models=[alpha]) as without_beta, LMStudioClient(without_beta.url, timeout=10) as other:
        again = compare(["a", "b"], ["alpha", "beta"], client=other, temperature=0, cache=path, progress=False)
        assert not [r for r in without_beta.requests if r.is_chat]  # alpha's rows from the cache
    assert list(again.cached) == [True, False, True, False]
    assert list(again.response[again.model == "alpha"]) == list(first.response[first.model == "alpha"])
    refused = again[again.model == "beta"]
    assert (refused.error_type == "ModelNotFoundError").all() and refused.error.str.contains('"beta"').all()


def test_a_cached_compare_call_does_not_scan_a_large_cache_table(
    client: LMStudioClient, server: MockLMStudioServer, tmp_path: Path
) -> None:
    # a COUNT(*) of the whole table ran on every call (to choose one pass or a look-up a key): with a cache of many
    # notebooks' answers, a call of two rows walked all of them. Each statement the call runs is asked for its plan.
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        record = _row_record("another notebook's answer")
        for i in range(300):
            cache.put(f"other{i}", record, model="m")
        first = compare(["a", "b"], ["alpha"], client=client, temperature=0, cache=cache, progress=False)
        statements: list[str] = []
        cache._db.set_trace_callback(statements.append)
        sent = len(server.requests)
        again = compare(["a", "b"], ["alpha"], client=client, temperature=0, cache=cache, progress=False)
        cache._db.set_trace_callback(None)
        assert again.cached.all() and list(again.response) == list(first.response)
        assert not [r for r in server.requests[sent:] if r.is_chat]
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert reads  # the rows were read from it
        plans = {s: [row[-1] for row in cache._db.execute(f"EXPLAIN QUERY PLAN {s}")] for s in reads}
    scans = {s: plan for s, plan in plans.items() if any(step.startswith("SCAN") for step in plan)}
    assert not scans, scans  # every read a search by key (or the rowid's end), none a walk of the table
