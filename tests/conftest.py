"""Fixtures shared by the test modules: a fresh fake LM Studio server per test, raw HTTP to it, and the user's
Ctrl-C (``sigint``).

A module that needs other models or pacing defines its own ``server`` fixture, which takes precedence.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator

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


@pytest.fixture
def sigint() -> Iterator[Callable[[], None]]:
    """The user's Ctrl-C: calling it sends a real SIGINT to the main thread (where pytest runs the test; POSIX only:
    skip on Windows), raising KeyboardInterrupt as in a cell; the test's handler is restored after."""
    main = threading.main_thread().ident
    assert main == threading.get_ident() and main is not None
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield lambda: signal.pthread_kill(main, signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
