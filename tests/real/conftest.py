"""The real tier: every test here talks to llama.cpp's server running two real models (see ``real_server.py``).

Without the real extra the tests skip, except under CI (``CI=true``), where a missing extra fails the run: CI must
prove the real tier, not quietly skip it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from real_server import LlamaServer, RealTierMissing, serving

from lm_notebook import LMStudioClient

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.real)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"real tier required under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """llama.cpp's server with both models on a free 127.0.0.1 port, for the whole session."""
    try:
        server = LlamaServer()
    except RealTierMissing as exc:
        _unavailable(str(exc))
    yield from serving(server)


@pytest.fixture(scope="session")
def real_base_url(llama_server: LlamaServer) -> str:
    return llama_server.base_url


@pytest.fixture
def real_client(llama_server: LlamaServer) -> Iterator[LMStudioClient]:
    with LMStudioClient(llama_server.base_url, timeout=120) as client:
        yield client
