"""The chat panel's fixtures: a panel on the shared fake server, and one on a server whose clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from panel_page import MODEL

from lm_notebook import ChatPanel, LMStudioClient
from lm_notebook.testing import ManualClock, MockLMStudioServer


@pytest.fixture
def panel(lmstudio_client: LMStudioClient) -> Iterator[ChatPanel]:
    chat = ChatPanel(lmstudio_client)
    yield chat
    chat.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def paced(clock: ManualClock) -> Iterator[MockLMStudioServer]:
    """A fake server whose pauses (time to first token, token rate) wait on ``clock``."""
    with MockLMStudioServer(clock=clock) as server:
        yield server


@pytest.fixture
def paced_client(paced: MockLMStudioServer) -> Iterator[LMStudioClient]:
    with LMStudioClient(paced.url, model=MODEL, timeout=30) as client:
        yield client


@pytest.fixture
def paced_panel(paced_client: LMStudioClient) -> Iterator[ChatPanel]:
    chat = ChatPanel(paced_client)
    yield chat
    chat.close()
