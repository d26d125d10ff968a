"""pytest fixtures for testing code that talks to LM Studio, with no LM Studio (entry point ``pytest11``).

- ``lmstudio_mock``: a started :class:`MockLMStudioServer` on a free port, stopped after the test. Configure it with
  ``@pytest.mark.lmstudio_mock(version="0.3", auth_token="sk-lm-test:secret", ...)`` (constructor arguments;
  ``clock=ManualClock()`` makes its pacing wait for the test, see :mod:`lm_notebook.testing.clock`).
- ``lmstudio_client``: an ``LMStudioClient`` pointed at it, with the first loaded model as current model.

>>> def test_answer(lmstudio_client):                     # doctest: +SKIP
...     assert lmstudio_client.chat("Hello").content
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from lm_notebook.testing.server import MockLMStudioServer

if TYPE_CHECKING:
    from lm_notebook.client.clients import LMStudioClient


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lmstudio_mock(**options): MockLMStudioServer arguments for the lmstudio_mock fixture"
    )


@pytest.fixture
def lmstudio_mock(request: pytest.FixtureRequest) -> Iterator[MockLMStudioServer]:
    """A fake LM Studio server on a free loopback port."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("lmstudio_mock"))):
        options.update(marker.kwargs)  # the closest marker (function over class over module) wins
    with MockLMStudioServer(**options) as server:
        yield server


@pytest.fixture
def lmstudio_client(lmstudio_mock: MockLMStudioServer) -> Iterator[LMStudioClient]:
    """An ``LMStudioClient`` for ``lmstudio_mock``; its current model is the first loaded one."""
    # imported here, not at the top: the plugin loads in every pytest run where the package is installed
    from lm_notebook.client.clients import LMStudioClient

    loaded = lmstudio_mock.loaded_models()
    client = LMStudioClient(lmstudio_mock.url, api_key=lmstudio_mock.auth_token, timeout=30,
                            model=loaded[0] if loaded else None)
    try:
        yield client
    finally:
        client.close()
