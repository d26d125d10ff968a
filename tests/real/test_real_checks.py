"""Checks on real models: embeddings from llama.cpp's server (SmolLM2 served in embedding mode, on a server of its
own: PyPI has no small GGUF embedding model), and one judge check with SmolLM2 as the judge. These assert the
pipeline — requests made, answers read, scores in range or a clear note, re-scoring from the cache — not the wisdom
of a 135M model."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from client_doubles import CountingTransport
from real_server import GEMMA3, SMOLLM2, LlamaServer, RealTierMissing, serving

from lm_notebook import AsyncLMStudioClient, LMStudioClient, acompare, compare
from lm_notebook.checks import contains, judge, similar_to
from lm_notebook.comparison.cache import ResponseCache

CHAT_PATH = "/v1/chat/completions"


@pytest.fixture(scope="module")
def embedding_url() -> Iterator[str]:
    """A second llama.cpp server: SmolLM2 loaded with embedding=True (answers /v1/embeddings)."""
    try:
        server = LlamaServer(only=(SMOLLM2,), embedding=True)
    except RealTierMissing as exc:
        if os.environ.get("CI") == "true":  # as conftest.py: CI must prove the real tier, not skip it
            pytest.fail(f"real tier required under CI=true: {exc}", pytrace=False)
        pytest.skip(str(exc))
    for running in serving(server):
        yield running.base_url


def test_smollm2_embeds_texts_pooling_its_per_token_vectors(embedding_url: str) -> None:
    texts = ["The cat sat on the mat.", "The cat sat on the mat.", "Quarterly revenue grew by ten percent."]
    with LMStudioClient(embedding_url, timeout=120) as client:
        result = client.embed(texts, model=SMOLLM2, batch_size=2)
    assert result.vectors.shape[0] == 3 and result.vectors.shape[1] >= 64
    assert result.pooled_tokens is True  # a causal LM: one vector per token, averaged per text
    assert np.isfinite(result.vectors).all()
    assert result.similarity(0, 1) == pytest.approx(1.0, abs=1e-6)  # the same text, the same vector
    assert result.similarity(0, 2) < result.similarity(0, 1)


def test_similar_to_scores_with_the_real_embedding_server(embedding_url: str) -> None:
    # the candidates answer on the chat server; their answers are embedded on the embedding server
    with LMStudioClient(embedding_url, timeout=120) as client:
        df = compare({"cat": "Say: The cat sat on the mat."}, [SMOLLM2], client=client, temperature=0, seed=1,
                     max_tokens=16, progress=False, checks=[similar_to("The cat sat on the mat.", model=SMOLLM2,
                                                                       threshold=0.5)])
    row = df.iloc[0]
    assert row["status"] == "ok", row["error"]
    assert 0.0 <= row["check_similar_to"] <= 1.0 and row["score"] == row["check_similar_to"]


def test_a_judge_check_with_smollm2_as_judge_runs_and_re_scores_from_the_cache(real_base_url: str,
                                                                               tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "real.sqlite")
    prompts = {"capital": "What is the capital of France?\nAnswer in one word."}
    checks = [contains("Paris"), judge("Is the answer correct?", model=SMOLLM2)]
    # llama.cpp's server keeps no request log: the client's transport counts what was sent
    transport = CountingTransport()

    async def run() -> pd.DataFrame:
        async with AsyncLMStudioClient(real_base_url, timeout=120, transport=transport) as client:
            return await acompare(prompts, [GEMMA3, SMOLLM2], client=client, temperature=0, seed=42, max_tokens=16,
                                  progress=False, expected={"capital": "Paris"}, checks=checks, cache=cache)

    first = asyncio.run(run())
    assert (first["status"] == "ok").all(), first[["model", "error"]]
    # two answers, then two grades: the judge was asked once per answer (llama-cpp-python refuses the first grade's
    # JSON-schema form, and the client sends it again in the json_object form it takes: one request more)
    chats = [e for e in transport.events if e[1] == CHAT_PATH]
    assert transport.sent(CHAT_PATH) == [GEMMA3, SMOLLM2] + [SMOLLM2] * 3, chats
    notes = " | ".join(str(n) for n in first["check_notes"])
    assert first["check_judge"].notna().all() and "error" not in notes, first[["model", "check_notes"]]
    assert first["check_judge"].between(0.0, 1.0).all() and first["passed"].notna().all()
    transport.events.clear()
    again = asyncio.run(run())
    assert transport.sent(CHAT_PATH) == []  # re-scored from the cache: neither candidates nor the judge asked
    assert again["cached"].all()
    assert again["check_judge"].tolist() == first["check_judge"].tolist()
    assert again["check_contains"].tolist() == first["check_contains"].tolist()
    assert again["passed"].tolist() == first["passed"].tolist()
