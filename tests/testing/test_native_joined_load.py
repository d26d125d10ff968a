"""A native stream that joins a model load already under way (another request started it) hears the load's real
progress and its real load time, over real loopback HTTP with the fake server on a manual clock."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from lm_notebook import LMStudioClient
from lm_notebook.client.native_types import StreamProgress
from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec

COLD = "cold/model"


def loads(server: MockLMStudioServer, out: list[Any]) -> threading.Thread:
    """A native stream of the cold model, in a thread: its load progress, then its result, into ``out``."""
    def run() -> None:
        with LMStudioClient(server.url, timeout=30, model=COLD, route="native") as client:
            with client.stream_chat("Hi", max_tokens=3) as stream:
                out.extend(p.detail for p in stream.iter_parts() if p.kind == "progress")
            out.append(stream.result())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("joined_at", [6.0, 1.0])
def test_a_stream_joining_a_load_under_way_hears_the_loads_progress_and_load_time(joined_at: float) -> None:
    clock = ManualClock()
    with MockLMStudioServer(clock=clock, models=[ModelSpec(COLD, load_time=10.0)]) as server:
        first: list[Any] = []
        joined: list[Any] = []
        a = loads(server, first)
        clock.wait_for_pending(2)  # the load's sleep and the first stream's next step
        clock.advance(joined_at)
        b = loads(server, joined)
        server.wait_for_requests(2, path="/api/v1/chat")
        clock.wait_for_pending(3)  # and the joining stream's next step
        clock.advance_to(10.0)
        for thread in (a, b):
            thread.join(30)
            assert not thread.is_alive()
    *steps, result = joined
    fractions = [p.fraction for p in steps if isinstance(p, StreamProgress) and p.stage == "model_load"]
    if joined_at >= 2.0:  # past the first step: where the load is, not 20 % from its own start
        assert fractions == [0.0, pytest.approx(joined_at / 10), 0.8, 1.0], fractions
    else:
        assert fractions == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], fractions
    assert steps[-1].done and steps[-1].load_time_seconds == pytest.approx(10.0)  # the load's time, not the wait
    assert result.server_stats.model_load_time == pytest.approx(10.0)
    *first_steps, first_result = first
    assert [p.fraction for p in first_steps] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert first_steps[-1].load_time_seconds == pytest.approx(10.0) == first_result.server_stats.model_load_time


def test_a_load_request_joining_a_load_under_way_says_the_loads_time() -> None:
    clock = ManualClock()
    with MockLMStudioServer(clock=clock, models=[ModelSpec(COLD, load_time=10.0)]) as server:
        streamed: list[Any] = []
        a = loads(server, streamed)  # a request loads the model just in time
        clock.wait_for_pending(2)
        clock.advance(6.0)
        loaded: list[Any] = []
        with LMStudioClient(server.url, timeout=30) as client:  # then %lm_load asks for it
            b = threading.Thread(target=lambda: loaded.append(client.load_model(COLD)), daemon=True)
            b.start()
            server.wait_until(lambda: server.counters.model(COLD).joins == 1)  # it waits for the load under way
            clock.advance_to(10.0)
            for thread in (a, b):
                thread.join(30)
                assert not thread.is_alive()
    assert loaded[0].load_time_seconds == pytest.approx(10.0)  # the load's, not the 4 s this request waited
