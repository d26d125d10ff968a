"""compare() on LM Studio 0.4's native route: the server's own numbers in the rows, the load's progress in the bar's
events, and summary's choice of numbers (the server's when every answer has them, and it says so)."""

from __future__ import annotations

from lm_notebook import LMStudioClient, compare, summary
from lm_notebook.comparison.progress import ProgressEvent
from lm_notebook.testing import MockLMStudioServer, ModelSpec


def test_rows_carry_the_server_stats_and_summary_uses_them() -> None:
    models = [ModelSpec("cold", load_time=0.05, ttft=0.01, tokens_per_second=500, reasoning="reasoning",
                        reasoning_tokens=6)]
    events: list[ProgressEvent] = []
    with MockLMStudioServer(models=models) as server, LMStudioClient(server.url) as client:
        df = compare(["a", "b", "c"], ["cold"], client=client, progress=events.append)
    assert (df.status == "ok").all()
    assert (df.server_tokens_per_s == 500.0).all() and (df.server_ttft_s == 0.01).all()
    assert (df.reasoning_tokens == 6).all()
    assert df.cold.tolist() == [True, False, False] and df.load_s.iloc[0] >= 0.05 and df.load_s.iloc[1:].isna().all()
    loading = [e for e in events if e.kind == "loading" and e.fraction is not None]
    assert loading and loading[0].fraction == 0.0 and loading[0].model == "cold"  # the server's load report
    by = summary(df).loc["cold"]
    assert by["timings"] == "server" and by["tokens_per_s_median"] == 500.0 and by["ttft_median_s"] == 0.01


def test_without_server_numbers_summary_says_it_used_the_clients() -> None:
    with MockLMStudioServer(models=[ModelSpec("m", loaded=True)]) as server, \
            LMStudioClient(server.url, route="openai") as client:
        df = compare(["a", "b"], ["m"], client=client, progress=False)
    assert df.server_ttft_s.isna().all() and summary(df).loc["m", "timings"] == "client"


def test_the_servers_time_to_first_token_counts_cold_answers_too() -> None:
    # one prompt a model, each model loaded for it (a first comparison): the server's TTFT leaves the load out (it
    # reports the load apart, load_s), so summary's TTFT is there; the client's would hold the load and is left out
    models = [ModelSpec(name, load_time=0.05, ttft=0.01, tokens_per_second=500) for name in ("alpha", "beta")]
    with MockLMStudioServer(models=models) as server, LMStudioClient(server.url) as client:
        df = compare(["a"], ["alpha", "beta"], client=client, progress=False)
    assert df.cold.all() and (df.server_ttft_s == 0.01).all()
    stats = summary(df)
    assert (stats["timings"] == "server").all() and (stats["ttft_median_s"] == 0.01).all()
    assert (stats["ttft_p90_s"] == 0.01).all()
    assert stats["latency_median_s"].isna().all()  # a cold answer's latency holds its load: still left out
