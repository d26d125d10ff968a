"""What a test can wait on instead of sleeping: the request log, the counters (abandoned streams among them), the
fake server's clock, and the times the server reports when that clock is a ManualClock."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from lm_notebook.testing import LoopClock, ManualClock, MockLMStudioServer

QWEN = "qwen2.5-7b-instruct"
HI = [{"role": "user", "content": "Explain quantized models briefly"}]
CHAT = "/v1/chat/completions"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def paused(clock: ManualClock) -> Iterator[MockLMStudioServer]:
    with MockLMStudioServer(clock=clock) as server:
        yield server


def test_the_default_clock_is_real_time_and_a_manual_one_is_kept() -> None:
    with MockLMStudioServer() as server:
        assert isinstance(server.clock, LoopClock)
    clock = ManualClock()
    with MockLMStudioServer(clock=clock) as server:
        assert server.clock is clock
        httpx.post(server.url + CHAT, timeout=10, json={"model": "google/gemma-3-4b", "messages": HI})
        assert clock.wait_for_pending() == [3600.0]  # the model loaded just in time unloads after an idle hour
    assert clock.pending() == []  # a stopped server leaves nothing on its clock


def test_wait_for_requests_returns_them_once_logged_and_says_what_came_when_they_do_not(
    server: MockLMStudioServer, http: httpx.Client
) -> None:
    http.get("/v1/models")
    http.post(CHAT, json={"model": QWEN, "messages": HI, "max_tokens": 1})
    (chat,) = server.wait_for_requests(1, path=CHAT, model=QWEN)
    assert chat.json["max_tokens"] == 1
    assert len(server.wait_for_requests(2)) == 2
    with pytest.raises(TimeoutError, match=r"1 of 2 requests .* GET /v1/models, POST /v1/chat/completions \(qwen"):
        server.wait_for_requests(2, path=CHAT, timeout=0.01)


def test_wait_until_wakes_on_a_change_and_times_out_with_the_state(server: MockLMStudioServer) -> None:
    asked = threading.Thread(target=httpx.get, args=(server.url + "/v1/models",))
    asked.start()
    server.wait_until(lambda: len(server.requests) == 1)
    asked.join()
    with pytest.raises(TimeoutError, match=r"still false .* 1 requests logged"):
        server.wait_until(lambda: server.counters.loads > 5, timeout=0.01)


def test_a_client_leaving_mid_stream_ends_it_at_once_and_is_counted(
    paused: MockLMStudioServer, clock: ManualClock
) -> None:
    paused.update_model(QWEN, tokens_per_second=64)
    with httpx.stream("POST", paused.url + CHAT, timeout=10,
                      json={"model": QWEN, "messages": HI, "stream": True}) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: {")  # the first token; the second waits on the clock
        assert clock.wait_for_pending() == [1 / 64]
    # the connection is closed (a Stop, an interrupt, a break): the server stops without the clock moving
    paused.wait_until(lambda: paused.counters.model(QWEN).abandoned == 1)
    assert clock.pending() == [] and paused.counters.abandoned == 1
    assert paused.errors == []


def test_a_client_giving_up_on_a_slow_answer_is_counted(paused: MockLMStudioServer, clock: ManualClock) -> None:
    paused.update_model(QWEN, tokens_per_second=4)
    with pytest.raises(httpx.ReadTimeout):  # the answer is due in seconds of a clock that stands still
        httpx.post(paused.url + CHAT, timeout=0.2, json={"model": QWEN, "messages": HI, "max_tokens": 8})
    paused.wait_until(lambda: paused.counters.abandoned == 1)
    assert clock.pending() == []


def test_a_finished_stream_is_not_abandoned(server: MockLMStudioServer, http: httpx.Client) -> None:
    with http.stream("POST", CHAT, json={"model": QWEN, "messages": HI, "stream": True}) as r:
        r.read()
    assert server.counters.requests == 1 and server.counters.abandoned == 0


def test_v0_stats_report_the_clock(paused: MockLMStudioServer, clock: ManualClock) -> None:
    paused.update_model(QWEN, ttft=0.25, tokens_per_second=64)
    answer: list[httpx.Response] = []
    asked = threading.Thread(target=lambda: answer.append(httpx.post(
        paused.url + "/api/v0/chat/completions", timeout=10, json={"model": QWEN, "messages": HI, "max_tokens": 4})))
    asked.start()
    assert clock.wait_for_pending() == [0.25 + 4 / 64]  # time to first token, then four tokens at 64 per second
    clock.advance(0.25 + 4 / 64)
    asked.join(timeout=10)
    stats = answer[0].json()["stats"]
    assert stats["time_to_first_token"] == 0.25 and stats["tokens_per_second"] == 64
    assert stats["generation_time"] == round(0.25 + 4 / 64, 3)


def test_hundred_streams_at_once(paused: MockLMStudioServer, clock: ManualClock) -> None:
    paused.update_model(QWEN, tokens_per_second=2000, parallel=100)
    paused.unload_model(QWEN)  # parallel slots are a load setting: reload to apply
    paused.load_model(QWEN)
    failures: list[BaseException] = []
    lengths: list[int] = []

    def one(i: int) -> None:
        try:
            with httpx.stream("POST", paused.url + CHAT, timeout=30,
                              json={"model": QWEN, "messages": HI, "max_tokens": 40, "seed": i, "stream": True}) as r:
                lengths.append(sum(1 for line in r.iter_lines() if line.startswith("data: ")))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    try:
        clock.wait_for_pending(100, timeout=60)  # every stream has sent its first token and waits for the next
        assert paused.counters.model(QWEN).max_active == 100
    finally:
        clock.advance(1.0)  # every token is due
        for t in threads:
            t.join(timeout=30)
    assert failures == [] and lengths == [42] * 100  # 40 tokens, the final chunk and [DONE]
    assert paused.errors == []
