"""Fixtures shared by the test modules: a fresh fake LM Studio server per test, and raw HTTP to it.

A module that needs other models or pacing defines its own ``server`` fixture, which takes precedence.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from lm_notebook.testing import MockLMStudioServer


@pytest.fixture
def server() -> Iterator[MockLMStudioServer]:
    with MockLMStudioServer() as s:
        yield s


@pytest.fixture
def http(server: MockLMStudioServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client
