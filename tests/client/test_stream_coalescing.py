"""Coalesced reads (issue 17): after the first token a stream reads its connection at most once an interval, so a
fast model wakes the reader a few times a second instead of once per packet; the first token is never held back.

The pacing on its own with a clock and a wait that tests move; then over real loopback HTTP with the fake server,
its clock and wait injected (a clock that stands still, a wait that only records): nothing here depends on how fast
the machine is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from lm_notebook import LMStudioClient
from lm_notebook.client.accumulator import ChatAccumulator
from lm_notebook.client.stream import ReadPacing
from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec

TOKENS = 300


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def server(clock: ManualClock) -> Iterator[MockLMStudioServer]:
    with MockLMStudioServer(models=[ModelSpec("m", loaded=True, reply_tokens=TOKENS)], clock=clock) as fake:
        yield fake


def test_a_read_after_the_first_token_waits_out_the_interval_from_the_last_read() -> None:
    now = [100.0]
    waits: list[float] = []
    acc = ChatAccumulator(streaming=True)
    pacing = ReadPacing(0.05, acc, lambda: now[0], waits.append)
    pacing.start()
    assert pacing.read(lambda n, t: b"headers and a role chunk", 65536, None) and waits == []  # no token yet
    acc.first_token_at = 1.0  # the first token came: from here on reads are held back
    now[0] += 0.01
    pacing.read(lambda n, t: b"token", 65536, None)
    assert waits == [pytest.approx(0.04)]  # the rest of the interval since the last read
    now[0] += 0.2  # the reader was busy for longer than the interval: no wait
    pacing.read(lambda n, t: b"token", 65536, None)
    assert waits == [pytest.approx(0.04)] and pacing.waits == 1


def test_a_coalesced_stream_reads_the_whole_answer_and_never_holds_the_first_token(
    server: MockLMStudioServer,
) -> None:
    waits: list[float] = []
    with LMStudioClient(server.url) as client, client.stream_chat("Hi", model="m") as stream:
        stream.coalesce_reads(0.05, clock=lambda: 100.0, wait=waits.append)  # a clock that stands still
        parts = stream.iter_parts()
        first = next(parts)
        assert first.text and waits == [], "the first token is read the moment it arrives"
        first_reads = stream.reads
        rest = list(parts)
    assert first.text + "".join(p.text for p in rest) == stream.result().content
    assert stream.result().completion_tokens == TOKENS
    # every read after the first token's waited for the interval first (the clock standing still: all of it)
    assert len(waits) == stream.reads - first_reads
    assert all(w == pytest.approx(0.05) for w in waits)


def test_a_stop_from_another_thread_ends_a_wait_at_once(server: MockLMStudioServer) -> None:
    waiting = threading.Event()
    with LMStudioClient(server.url, route="openai") as client:
        stream = client.stream_chat("Hi", model="m")
        real_wait = stream._stop_requested.wait

        def wait(seconds: float) -> object:
            waiting.set()
            return real_wait(600)  # as long as it takes: only the stop can end it

        stream.coalesce_reads(0.05, clock=lambda: 100.0, wait=wait)
        parts = stream.iter_parts()
        next(parts)
        stopper = threading.Thread(target=lambda: (waiting.wait(30), stream.close()))  # a Stop button's thread
        stopper.start()
        list(parts)  # returns: the stop woke the wait
        stopper.join()
    assert stream.result().stopped and waiting.is_set()


def test_without_coalescing_reads_are_counted_and_nothing_waits(server: MockLMStudioServer) -> None:
    # the OpenAI route: the fake's native stream of a loaded model may come whole with the headers (no body read)
    with LMStudioClient(server.url, route="openai") as client, client.stream_chat("Hi", model="m") as stream:
        text = "".join(stream)
    assert text and stream.reads >= 1 and stream.result().completion_tokens == TOKENS
