"""Several servers and the benchmark on real models: the same SmolLM2 on two llama.cpp servers (two ports), one
comparison spread over both; a benchmark at concurrency 1 and 2 with sane numbers."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
from real_server import SMOLLM2, LlamaServer, serving

from lm_notebook import benchmark, benchmark_summary, compare

PROMPTS = {f"q{i}": f"What is {i} + {i}? Answer with the number." for i in range(8)}


@pytest.fixture(scope="module")
def second_server(llama_server: LlamaServer) -> Iterator[LlamaServer]:
    """A second llama.cpp server with SmolLM2 only, on another free port (the session's has both models)."""
    yield from serving(LlamaServer(only=(SMOLLM2,)))


def test_a_comparison_spreads_over_both_servers(llama_server: LlamaServer, second_server: LlamaServer) -> None:
    endpoints = {"one": llama_server.base_url, "two": second_server.base_url}
    df = compare(PROMPTS, [SMOLLM2], endpoints=endpoints, temperature=0, seed=42, max_tokens=12, progress=False,
                 timeout=120)
    assert len(df) == len(PROMPTS) and (df.status == "ok").all(), df[["endpoint", "error"]]
    assert set(df.endpoint) == {"one", "two"}, df.endpoint.tolist()  # both served some of the prompts
    assert (df.served_model == SMOLLM2).all() and all(r.strip() for r in df.response)
    assert (df.ttft_s > 0).all() and (df.latency_s >= df.ttft_s).all()


def test_a_benchmark_at_concurrency_one_and_two(llama_server: LlamaServer) -> None:
    df = benchmark(SMOLLM2, concurrency=(1, 2), requests=2, max_tokens=16, endpoint=llama_server.base_url,
                   progress=False)
    assert isinstance(df, pd.DataFrame) and len(df) == 1 + 2 + 2 and (df.status == "ok").all(), df.error
    summary = benchmark_summary(df)
    assert summary.index.tolist() == [1, 2] and summary.errors.tolist() == [0, 0]
    assert (summary.output_tokens_per_s > 0).all() and (summary.per_stream_tokens_per_s > 0).all()
    assert (summary.ttft_p50_s > 0).all() and (summary.latency_p50_s >= summary.ttft_p50_s).all()
    assert (df.output_tokens.dropna() > 0).all() and (df.output_tokens.dropna() <= 32).all()
