"""client.embed (both twins) over loopback to the fake server; answers only other servers give via MockTransport."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import numpy as np
import pytest

import lm_notebook
from lm_notebook import AsyncLMStudioClient, Embeddings, LMStudioClient, LMStudioRequestError
from lm_notebook.client.embeddings import MAX_BATCH_SIZE
from lm_notebook.testing import MockLMStudioServer, ModelSpec

NOMIC = "text-embedding-nomic-embed-text-v1.5"


def test_embed_returns_one_row_per_text_from_the_servers_one_embedding_model(server: MockLMStudioServer) -> None:
    with LMStudioClient(server.url) as client:
        result = client.embed(["the cat sat", "the cat sat on the mat", "quantum chromodynamics"])
    assert isinstance(result, Embeddings) and result.model == NOMIC
    assert result.vectors.shape == (3, 768) and result.shape == (3, 768) and len(result) == 3
    assert np.asarray(result).dtype == np.float64
    assert result.usage is None  # LM Studio reports 0 tokens: not usage
    assert result.similarity(0, 1) > 0.5 > result.similarity(0, 2)
    (request,) = [r for r in server.requests if r.path == "/v1/embeddings"]
    texts = ["the cat sat", "the cat sat on the mat", "quantum chromodynamics"]
    assert request.json == {"model": NOMIC, "input": texts}


def test_the_async_twin_embeds_the_same(server: MockLMStudioServer) -> None:
    async def run() -> Embeddings:
        async with AsyncLMStudioClient(server.url) as client:
            return await client.embed("one text", model=NOMIC)

    result = asyncio.run(run())
    with LMStudioClient(server.url) as client:
        same = client.embed(["one text"], model=NOMIC)
    assert result.shape == (1, 768) and np.array_equal(result.vectors, same.vectors)


def test_long_lists_go_in_batches_in_order(server: MockLMStudioServer) -> None:
    texts = [f"text number {i}" for i in range(5)]
    with LMStudioClient(server.url) as client:
        batched = client.embed(texts, batch_size=2)
        whole = client.embed(texts)
    inputs = [r.json["input"] for r in server.requests if r.path == "/v1/embeddings"]
    assert inputs == [texts[0:2], texts[2:4], texts[4:5], texts]
    assert np.allclose(batched.vectors, whole.vectors)


def test_empty_input_a_language_model_and_bad_batch_sizes_are_refused_before_sending(
    server: MockLMStudioServer,
) -> None:
    with LMStudioClient(server.url) as client:
        with pytest.raises(LMStudioRequestError, match="got no texts") as empty:
            client.embed([])
        with pytest.raises(LMStudioRequestError, match="is a language model") as llm:
            client.embed("hi", model="qwen2.5-7b-instruct")
        for size in (0, MAX_BATCH_SIZE + 1):
            with pytest.raises(LMStudioRequestError, match=f"batch_size={size}"):
                client.embed(["a"], batch_size=size)
        with pytest.raises(LMStudioRequestError, match="text 1 is a int"):
            client.embed(["a", 3])  # type: ignore[list-item]
    assert str(empty.value) == empty.value.message
    assert NOMIC in llm.value.message  # names the embedding model there is
    assert not [r for r in server.requests if r.path == "/v1/embeddings"]


def test_without_exactly_one_embedding_model_the_model_must_be_named() -> None:
    two = [ModelSpec("a-embed", type="embeddings"), ModelSpec("b-embed", type="embeddings"), ModelSpec("llm")]
    with MockLMStudioServer(models=two) as srv, LMStudioClient(srv.url) as client:
        with pytest.raises(LMStudioRequestError, match=r"2 embedding models to choose from \(a-embed, b-embed\)"):
            client.embed("x")
        assert client.embed("x", model="b-embed").model == "b-embed"
    with (
        MockLMStudioServer(models=[ModelSpec("llm")]) as srv,
        LMStudioClient(srv.url) as client,
        pytest.raises(LMStudioRequestError, match="lists no embedding model"),
    ):
        client.embed("x")


def test_the_current_model_is_used_when_it_embeds() -> None:
    two = [ModelSpec("a-embed", type="embeddings"), ModelSpec("b-embed", type="embeddings")]
    with MockLMStudioServer(models=two) as srv, LMStudioClient(srv.url, model="b-embed") as client:
        assert client.embed("x").model == "b-embed"


def _llama_like(per_token: bool, usage: dict[str, int] | None = None,
                sent: list[list[str]] | None = None) -> httpx.MockTransport:
    """A server like llama.cpp's: only /v1/models (no types), embeddings per token for a causal LM."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "smollm2", "object": "model"}]})
        if request.url.path == "/v1/embeddings":
            texts = json.loads(request.content)["input"]
            if sent is not None:
                sent.append(texts)
            data = []
            for i, _ in enumerate(texts):
                vector: object = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]] if per_token else [float(i), 1.0]
                data.append({"object": "embedding", "embedding": vector, "index": i})
            body: dict[str, object] = {"object": "list", "data": data, "model": "smollm2"}
            if usage:
                body["usage"] = usage
            return httpx.Response(200, json=body)
        return httpx.Response(404, json={"detail": "Not Found"})

    return httpx.MockTransport(handle)


def test_per_token_vectors_are_averaged_and_said_so_and_usage_is_kept_when_reported() -> None:
    usage = {"prompt_tokens": 6, "total_tokens": 6}
    sent: list[list[str]] = []
    with LMStudioClient("http://127.0.0.1:9", transport=_llama_like(True, usage, sent)) as c:
        result = c.embed(["a", "b", "c"], model="smollm2")
    # per-token answers to a batch are not trusted (llama-cpp-python mixes up its sequences): one text per request
    assert sent == [["a", "b", "c"], ["a"], ["b"], ["c"]]
    assert result.pooled_tokens is True and len(result) == 3
    assert np.allclose(result.vectors, [[2 / 3, 2 / 3]] * 3)
    assert result.usage is not None and result.usage.prompt_tokens == 18  # the three requests kept
    with LMStudioClient("http://127.0.0.1:9", transport=_llama_like(False)) as c:
        plain = c.embed(["a", "b"], model="smollm2")
        with pytest.raises(LMStudioRequestError, match="does not say which of its models embed"):
            c.embed(["a"])
    assert plain.pooled_tokens is False and plain.vectors.tolist() == [[0.0, 1.0], [1.0, 1.0]]


def test_the_shared_client_embeds_and_numpy_is_not_imported_by_the_core(server: MockLMStudioServer) -> None:
    previous = lm_notebook.set_client(LMStudioClient(server.url), close_previous=False)
    try:
        assert lm_notebook.embed(["hello there"]).shape == (1, 768)
    finally:
        lm_notebook.set_client(previous)
    out = subprocess.run([sys.executable, "-c", "import sys, lm_notebook.client; print('numpy' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
