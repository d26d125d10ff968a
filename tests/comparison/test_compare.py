"""compare() on the fake LM Studio server over loopback: shapes, inputs, scheduling, the cache, the public names.

Failures and retries are in test_compare_failures, interrupts in test_compare_interrupt, progress in
test_compare_progress; the fixtures (a server with four models, a client) in conftest.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import lm_notebook
from lm_notebook import AsyncLMStudioClient, LMStudioClient, set_client
from lm_notebook.comparison.api import COLUMNS, ResponseCache, acompare, compare
from lm_notebook.testing import MockLMStudioServer


def chat_requests(server: MockLMStudioServer) -> list[Any]:
    return [r for r in server.requests if r.is_chat]


# --- shape --------------------------------------------------------------------------------------------------------


def test_tidy_rows_with_answers_timings_metadata_and_parameters(
    server: MockLMStudioServer, client: LMStudioClient
) -> None:
    df = compare(["Say hi", "Name a colour"], ["alpha", "beta"], client=client, temperature=0, max_tokens=20,
                 seed=7, top_p=0.5, progress=False)
    assert list(df.columns) == [*COLUMNS, "top_p"]
    assert len(df) == 4
    assert list(zip(df.prompt_name, df.model, strict=True)) == [(0, "alpha"), (0, "beta"), (1, "alpha"), (1, "beta")]
    assert (df.status == "ok").all() and df.error.map(lambda e: e is None).all()
    assert (df.response.str.len() > 0).all() and (df.finish_reason == "stop").all()
    assert (df.completion_tokens == 8).all() and (df.prompt_tokens > 0).all()
    assert (df.ttft_s > 0).all() and (df.latency_s >= df.ttft_s).all() and (df.tokens_per_s > 0).all()
    assert df.set_index("model").loc["beta", "quantization"].tolist() == ["Q8_0", "Q8_0"]
    assert df.set_index("model").loc["beta", "format"].tolist() == ["mlx", "mlx"]
    assert df.set_index("model").loc["alpha", "arch"].tolist() == ["llama", "llama"]
    assert df.set_index("model").loc["alpha", "context_length"].tolist() == [4096, 4096]  # loaded, not max
    assert (df.temperature == 0).all() and (df.max_tokens == 20).all() and (df.seed == 7).all()
    assert (df.top_p == 0.5).all()
    assert (df.served_model == df.model).all()
    assert str(df.started_at.dtype).startswith("datetime64") and df.started_at.notna().all()
    assert not df.cached.any() and (df.attempts == 1).all()
    body = chat_requests(server)[0].json
    assert body["temperature"] == 0 and body["max_tokens"] == 20 and body["seed"] == 7 and body["top_p"] == 0.5
    assert body["stream"] is True


def test_dict_prompts_system_prompt_and_repeats(server: MockLMStudioServer, client: LMStudioClient) -> None:
    df = compare({"greet": "Hello", "math": "2+2?"}, "gamma", client=client, system="Be brief.", repeats=2,
                 progress=False)
    assert list(zip(df.prompt_name, df.repeat, strict=True)) == [("greet", 0), ("greet", 1), ("math", 0), ("math", 1)]
    assert (df.system == "Be brief.").all()
    for request in chat_requests(server):
        assert request.chat_body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert "temperature" not in request.json  # None is not sent: the server's default applies


def test_dataframe_with_template_keeps_the_rows_columns(server: MockLMStudioServer, client: LMStudioClient) -> None:
    inputs = pd.DataFrame({"text": ["cats purr", "dogs bark"], "label": ["c", "d"], "model": ["x", "y"]},
                          index=["r1", "r2"])
    df = compare(inputs, ["alpha"], client=client, template="Summarize: {text}", progress=False)
    assert list(df.columns[:5]) == ["prompt_name", "prompt", "text", "label", "model_input"]
    assert df.prompt.tolist() == ["Summarize: cats purr", "Summarize: dogs bark"]
    assert df.label.tolist() == ["c", "d"] and df.model_input.tolist() == ["x", "y"]
    assert df.prompt_name.tolist() == ["r1", "r2"] and (df.model == "alpha").all()
    same = compare((inputs, "Summarize: {text}"), ["alpha"], client=client, progress=False)
    assert same.prompt.tolist() == df.prompt.tolist()
    with_prompt = compare(pd.DataFrame({"prompt": ["Hi"], "k": [1]}), ["alpha"], client=client, progress=False)
    assert with_prompt.prompt.tolist() == ["Hi"] and with_prompt.k.tolist() == [1]


def test_bad_inputs_fail_before_anything_is_sent(server: MockLMStudioServer, client: LMStudioClient) -> None:
    with pytest.raises(ValueError, match="not a column"):
        compare(pd.DataFrame({"text": ["a"]}), ["alpha"], client=client, template="{nope}", progress=False)
    with pytest.raises(ValueError, match="template"):
        compare(pd.DataFrame({"text": ["a"]}), ["alpha"], client=client, progress=False)
    with pytest.raises(ValueError, match="No prompts"):
        compare([], ["alpha"], client=client, progress=False)
    with pytest.raises(ValueError, match="concurrency"):
        compare(["a"], ["alpha"], client=client, concurrency=0, progress=False)
    with pytest.raises(lm_notebook.LMStudioRequestError, match="max_tokens"):
        compare(["a"], ["alpha"], client=client, max_tokens=0, progress=False)
    with pytest.raises(lm_notebook.NoCurrentModelError):
        compare(["a"], client=client, progress=False)
    assert chat_requests(server) == []


def test_a_model_given_twice_is_refused(server: MockLMStudioServer, client: LMStudioClient) -> None:
    for models in (["alpha", "beta", "alpha"], "alpha,alpha"):
        with pytest.raises(ValueError, match="models lists 'alpha' more than once") as refused:
            compare(["a"], models, client=client, progress=False)
        assert "repeats=N" in str(refused.value)
    assert chat_requests(server) == []


def test_advice_names_the_models_parameter(server: MockLMStudioServer, client: LMStudioClient) -> None:
    with pytest.raises(lm_notebook.NoCurrentModelError) as no_model:
        compare(["a"], client=client, progress=False)
    assert "models=['model-a', 'model-b']" in no_model.value.message and "model=" not in no_model.value.message
    df = compare(["a"], ["alpah"], client=client, progress=False)
    assert "Fix the id in models" in df.error[0] and "set_current_model" not in df.error[0]


def test_reasoning_is_kept_apart(server: MockLMStudioServer, client: LMStudioClient) -> None:
    df = compare(["Why is the sky blue?"], ["thinker"], client=client, progress=False)
    assert df.reasoning[0] and df.response[0] and df.reasoning[0] not in df.response[0]


def test_default_client_and_model_are_the_kernels(server: MockLMStudioServer) -> None:
    shared = LMStudioClient(server.url, model="beta")
    previous = set_client(shared)
    try:
        df = lm_notebook.compare(["Hi"], progress=False)
        assert df.model.tolist() == ["beta"] and df.status.tolist() == ["ok"]
    finally:
        set_client(previous)
        shared.close()


# --- scheduling -----------------------------------------------------------------------------------------------


def test_each_model_loads_once_and_slots_are_filled(server: MockLMStudioServer, client: LMStudioClient) -> None:
    # answers long enough (0.4 s) that a client slowed by busy CPUs still has every slot's request in flight at once
    server.update_model("alpha", tokens_per_second=200, reply_tokens=80)
    server.update_model("beta", tokens_per_second=200, reply_tokens=80)
    prompts = [f"question {i}" for i in range(8)]
    df = compare(prompts, ["alpha", "beta"], client=client, progress=False)
    assert (df.status == "ok").all() and len(df) == 16
    counters = server.counters
    assert counters.model("alpha").loads == 1 and counters.model("beta").loads == 1
    # "auto": alpha's loaded instance reports 2 parallel slots, beta the default 4
    assert counters.model("alpha").max_active == 2
    assert counters.model("beta").max_active == 4
    assert counters.model("alpha").max_queued == 0 and counters.model("beta").max_queued == 0
    # exactly one cold row per model, and it is the first one sent
    cold = df[df.cold]
    assert sorted(cold.model) == ["alpha", "beta"]
    for model, rows in df.groupby("model"):
        assert rows.sort_values("started_at").cold.iloc[0], model


def test_explicit_concurrency(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.update_model("beta", tokens_per_second=300, reply_tokens=6)
    compare([f"q{i}" for i in range(4)], ["beta"], client=client, concurrency=1, progress=False)
    assert server.counters.model("beta").max_active == 1


def test_loaded_models_go_first_and_are_not_cold(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.load_model("beta")
    server.reset_counters()
    df = compare(["a", "b"], ["alpha", "beta"], client=client, progress=False)
    first = df.sort_values("started_at").model.iloc[0]
    assert first == "beta"
    assert not df[df.model == "beta"].cold.any()
    assert server.counters.model("beta").loads == 0 and server.counters.model("alpha").loads == 1


def test_cold_request_carries_the_load_time_apart(server: MockLMStudioServer, client: LMStudioClient) -> None:
    server.update_model("gamma", load_time=0.4, ttft=0.01, tokens_per_second=400)
    df = compare([f"q{i}" for i in range(5)], ["gamma"], client=client, progress=False)
    cold, warm = df[df.cold], df[~df.cold]
    assert len(cold) == 1 and len(warm) == 4
    assert cold.ttft_s.iloc[0] >= 0.4  # its first token came after the load (the server waited load_time first)
    # load_s is the load the server reports (LM Studio 0.4's stats; the fake waited load_time); the warm rows have none
    assert cold.load_s.iloc[0] >= 0.399 and cold.server_ttft_s.iloc[0] == 0.01
    assert warm.load_s.isna().all()
    # the warm requests were sent once the first token showed the model was up: none of them waited for the load
    first, *rest = chat_requests(server)
    assert len(rest) == 4 and all(r.time - first.time >= 0.4 for r in rest)


# --- cache -----------------------------------------------------------------------------------------------------


def test_cache_skips_done_requests_and_says_so(
    server: MockLMStudioServer, client: LMStudioClient, tmp_path: Path
) -> None:
    path = tmp_path / "answers.sqlite"
    first = compare(["a", "b"], ["alpha", "beta"], client=client, temperature=0, cache=path, progress=False)
    assert not first.cached.any()
    sent = len(chat_requests(server))
    again = compare(["a", "b"], ["alpha", "beta"], client=client, temperature=0, cache=path, progress=False)
    assert again.cached.all() and len(chat_requests(server)) == sent
    pd.testing.assert_series_equal(first.response, again.response)
    pd.testing.assert_series_equal(first.ttft_s, again.ttft_s)  # the timings measured when it ran
    # a changed parameter is a different request
    changed = compare(["a"], ["alpha"], client=client, temperature=0, max_tokens=5, cache=path, progress=False)
    assert not changed.cached.any()


def test_cached_rows_are_never_cold(server: MockLMStudioServer, client: LMStudioClient, tmp_path: Path) -> None:
    first = compare(["a", "b"], ["gamma"], client=client, temperature=0, cache=tmp_path / "c.sqlite", progress=False)
    assert first.cold.tolist() == [True, False] and first.load_s.notna().tolist() == [True, False]
    again = compare(["a", "b"], ["gamma"], client=client, temperature=0, cache=tmp_path / "c.sqlite", progress=False)
    assert again.cached.all() and not again.cold.any() and again.load_s.isna().all()


def test_a_cache_that_is_not_ours_is_refused_before_anything_is_sent(
    server: MockLMStudioServer, client: LMStudioClient, tmp_path: Path
) -> None:
    path = tmp_path / "people.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE people (name TEXT)")
    db.close()
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"is an SQLite database that is not an answer cache \(its tables: people\)"):
        compare(["a"], ["alpha"], client=client, temperature=0, cache=path, progress=False)
    assert path.read_bytes() == before and chat_requests(server) == []


def test_the_not_cached_warning_points_at_the_callers_line(
    server: MockLMStudioServer, client: LMStudioClient, tmp_path: Path
) -> None:
    async def in_a_coroutine() -> None:
        async with AsyncLMStudioClient(server.url) as c:
            await acompare(["a"], ["gamma"], client=c, temperature=0.7, cache=tmp_path / "c.sqlite", progress=False)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compare(["a"], ["gamma"], client=client, temperature=0.7, cache=tmp_path / "c.sqlite", progress=False)
        asyncio.run(in_a_coroutine())
    assert [(w.filename, "not deterministic" in str(w.message)) for w in caught] == [(__file__, True)] * 2


def test_compare_inside_a_running_event_loop(tmp_path: Path) -> None:
    # in a child process: nest_asyncio patches asyncio for the whole process, as it does in a Jupyter kernel
    code = textwrap.dedent(
        f"""
        import asyncio, warnings
        from lm_notebook import LMStudioClient
        from lm_notebook.comparison.api import compare
        from lm_notebook.testing import MockLMStudioServer, ModelSpec

        async def cell():  # what a notebook cell is: code running inside the kernel's loop
            return compare(["a", "b"], ["m"], client=client, progress=False)

        with MockLMStudioServer(models=[ModelSpec("m", reply_tokens=5)]) as srv, LMStudioClient(srv.url) as client:
            df = asyncio.run(cell())
            again = asyncio.run(cell())  # twice: the kernel's loop stays usable
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                async def sampled():
                    return compare(["a"], ["m"], client=client, temperature=0.7, cache={str(tmp_path / "c.sqlite")!r},
                                   progress=False)
                asyncio.run(sampled())
        print(df.status.tolist(), again.status.tolist(), [w.filename for w in caught])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    # the "not cached" warning points at the cell's line (this script is "<string>"), not into nest_asyncio
    assert out.stdout.strip() == "['ok', 'ok'] ['ok', 'ok'] ['<string>']", out.stderr


def test_a_cache_that_would_take_nothing_creates_nothing(
    server: MockLMStudioServer, client: LMStudioClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sampled requests are not cached: no SQLite file, and no folder for it, is made for them
    path = tmp_path / "answers" / "c.sqlite"
    monkeypatch.setenv("LM_NOTEBOOK_CACHE_DIR", str(tmp_path / "default"))
    for cache in (path, str(path), True):
        with pytest.warns(UserWarning, match="not deterministic"):
            df = compare(["a"], ["gamma"], client=client, temperature=0.7, cache=cache, progress=False)
        assert (df.status == "ok").all() and not df.cached.any()
    assert list(tmp_path.iterdir()) == []


def test_sampled_requests_are_not_cached_unless_asked(
    server: MockLMStudioServer, client: LMStudioClient, tmp_path: Path
) -> None:
    path = tmp_path / "c.sqlite"
    with pytest.warns(UserWarning, match="not deterministic"):
        compare(["a"], ["gamma"], client=client, temperature=0.7, cache=path, progress=False)
    with ResponseCache(path) as cache:
        assert len(cache) == 0
    anyway = ResponseCache(path, deterministic_only=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compare(["a"], ["gamma"], client=client, temperature=0.7, cache=anyway, progress=False)
        df = compare(["a"], ["gamma"], client=client, temperature=0.7, cache=anyway, progress=False)
    assert df.cached.all()
    anyway.close()


COMPARE_MODULES = (
    "comparison", "comparison.api", "comparison.run", "comparison.rows", "comparison.inputs", "comparison.progress",
    "comparison.retry", "comparison.views", "magics.compare", "comparison.cache", "comparison.schedule",
    "comparison.preflight", "comparison.interrupt", "comparison.user_warnings",
)


@pytest.mark.parametrize(
    "prelude",
    [
        "",
        "import lm_notebook\nlm_notebook.compare\n",
        "import lm_notebook.comparison.api\n",
        "from lm_notebook.comparison.api import summary\n",
        "import lm_notebook.comparison.views, lm_notebook.magics.compare\n",
        "import lm_notebook.comparison.run\n",
        "import lm_notebook.magics.lm\n",
    ],
)
def test_the_public_names_are_the_functions_in_every_import_order(prelude: str) -> None:
    # no submodule is called ``compare``, so importing one can never put a module where the function should be
    code = textwrap.dedent(
        f"""
        import importlib, inspect, types
        from lm_notebook import compare, acompare, comparison_table, summary, plot_summary
        import lm_notebook
        import lm_notebook.comparison.api as module
        import lm_notebook.comparison.views as views
        for name in {COMPARE_MODULES!r}:
            importlib.import_module("lm_notebook." + name)
        assert isinstance(compare, types.FunctionType) and compare is module.compare
        assert lm_notebook.compare is module.compare
        assert inspect.iscoroutinefunction(acompare) and acompare is module.acompare
        assert summary is views.summary and comparison_table is views.comparison_table
        assert plot_summary is views.plot_summary and module.summary is views.summary
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_without_server_stats_load_s_is_estimated_from_the_ttfts(server: MockLMStudioServer) -> None:
    server.update_model("gamma", load_time=0.4, ttft=0.01, tokens_per_second=400)
    with LMStudioClient(server.url, route="openai") as openai_client:  # /v1 reports no load time
        df = compare([f"q{i}" for i in range(5)], ["gamma"], client=openai_client, progress=False)
    cold, warm = df[df.cold], df[~df.cold]
    assert len(cold) == 1 and cold.server_ttft_s.isna().all()
    # load_s is that wait: the cold TTFT less the model's usual one; the warm rows have none
    assert cold.load_s.iloc[0] == pytest.approx(cold.ttft_s.iloc[0] - warm.ttft_s.median())
    assert warm.load_s.isna().all()
