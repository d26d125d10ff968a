"""Fixtures of the comparison tests: a fake server with four models over loopback, a client to it, quick retries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import lm_notebook.comparison.api as compare_module
from lm_notebook import LMStudioClient
from lm_notebook.comparison.api import RetryPolicy
from lm_notebook.testing import MockLMStudioServer, ModelSpec

FAST = {"reply_tokens": 8}


def spec(model_id: str, **kw: Any) -> ModelSpec:
    return ModelSpec(model_id, **{**FAST, **kw})


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compare_module, "DEFAULT_RETRY", RetryPolicy(attempts=3, base_delay=0.05, max_delay=2.0))


@pytest.fixture
def server() -> Iterator[MockLMStudioServer]:
    """alpha (2 parallel slots, 4096 context), beta (mlx, 2048 context), gamma (loads in 0.05 s), thinker (reasons);
    none loaded."""
    models = [
        spec("alpha", arch="llama", quantization="Q4_K_M", context_length=4096, parallel=2),
        spec("beta", arch="qwen2", quantization="Q8_0", format="mlx", context_length=2048),
        spec("gamma", load_time=0.05),
        spec("thinker", reasoning="reasoning_content", reasoning_tokens=5),
    ]
    with MockLMStudioServer(models=models) as srv:
        yield srv


@pytest.fixture
def client(server: MockLMStudioServer) -> Iterator[LMStudioClient]:
    with LMStudioClient(server.url, timeout=10) as c:
        yield c
