"""LM Studio's scheduling in the fake: JIT loading, auto-evict, parallel slots and queueing, ttl, load/unload.

Pacing is checked on a :class:`ManualClock`: the server's pauses end only when the test advances it, so each
assertion about time is exact, and none depends on how busy the machine is. Times are binary fractions (0.25, 1/64),
so the clock's sums are exact too.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import httpx
import pytest

from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec

FAST = "fast/model"
SLOW = "slow/model"
HI = [{"role": "user", "content": "Hello there"}]
LOAD = 0.25  # each JIT model's load time, in clock seconds
CHAT = "/v1/chat/completions"


def models(load_time: float = LOAD) -> list[ModelSpec]:
    return [ModelSpec(FAST, loaded=True, parallel=2), ModelSpec("a/one", load_time=load_time),
            ModelSpec("b/two", load_time=load_time), ModelSpec(SLOW, load_time=load_time, tokens_per_second=200)]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """Threads for requests that wait on the clock while the test moves it."""
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


@pytest.fixture
def server(clock: ManualClock, pool: ThreadPoolExecutor) -> Iterator[MockLMStudioServer]:
    # set up after the pool, so stopped before it: a failed test's waiting requests end at once
    with MockLMStudioServer(models=models(), clock=clock) as s:
        yield s


def chat(server: MockLMStudioServer, model: str, **extra: Any) -> httpx.Response:
    return httpx.post(server.url + CHAT, timeout=10, json={"model": model, "messages": HI, "max_tokens": 5, **extra})


def state(server: MockLMStudioServer, model: str) -> str:
    return str(httpx.get(f"{server.url}/api/v0/models/{model}").json()["state"])


def wait_until_done(futures: list[Future[Any]], count: int, timeout: float = 10.0) -> int:
    """Wait until at least ``count`` of ``futures`` are done; returns how many are."""
    deadline = time.monotonic() + timeout
    while (done := sum(f.done() for f in futures)) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{done} of {count} requests answered after {timeout:g} s")
        wait([f for f in futures if not f.done()], timeout=remaining, return_when=FIRST_COMPLETED)
    return done


def test_jit_load_waits_for_the_load_then_answers_at_once(
    server: MockLMStudioServer, clock: ManualClock, pool: ThreadPoolExecutor
) -> None:
    assert state(server, "a/one") == "not-loaded"
    start = clock.now()
    first = pool.submit(chat, server, "a/one")
    assert clock.wait_for_pending() == [start + LOAD]  # the load, due after the model's load time
    assert state(server, "a/one") == "loading"
    assert not first.done()  # the answer waits for the load
    clock.advance(LOAD)
    assert first.result(timeout=10).status_code == 200
    assert state(server, "a/one") == "loaded"
    assert chat(server, "a/one").status_code == 200  # loaded now: answered while the clock stands still
    assert clock.now() == start + LOAD
    assert server.counters.model("a/one").loads == 1


def test_loading_state_visible_and_shared_by_concurrent_requests(
    server: MockLMStudioServer, clock: ManualClock, pool: ThreadPoolExecutor
) -> None:
    answers = [pool.submit(chat, server, "a/one") for _ in range(3)]
    server.wait_for_requests(3, path=CHAT)  # once logged, a request is waiting for the model
    assert clock.wait_for_pending() == [clock.now() + LOAD]  # one load for all three
    assert state(server, "a/one") == "loading"
    clock.advance(LOAD)
    assert [a.result(timeout=10).status_code for a in answers] == [200] * 3
    assert server.counters.model("a/one").loads == 1


def test_auto_evict_keeps_one_jit_model() -> None:
    with MockLMStudioServer(models=models(0.0)) as server:
        for model in ("a/one", "b/two", "a/one", "b/two"):
            assert chat(server, model).status_code == 200
        counters = server.counters
        assert counters.loads == 4 and counters.evictions == 3  # alternating models reloads every time
        assert counters.model("a/one").evictions == 2 and counters.model("b/two").evictions == 1
        assert sorted(server.loaded_models()) == ["b/two", FAST]  # a model loaded by hand is never evicted
        server.reset_counters()
        assert server.counters.loads == 0


def test_auto_evict_off_keeps_all() -> None:
    with MockLMStudioServer(models=models(0.0), auto_evict=False) as server:
        for model in ("a/one", "b/two", "a/one"):
            chat(server, model)
        assert server.counters.loads == 2 and server.counters.evictions == 0
        assert sorted(server.loaded_models()) == ["a/one", "b/two", FAST]


def test_jit_off_lists_only_loaded_and_refuses_others() -> None:
    with MockLMStudioServer(models=models(0.0), jit_loading=False) as server:
        ids = [m["id"] for m in httpx.get(server.url + "/v1/models").json()["data"]]
        assert ids == [FAST]
        r = chat(server, "a/one")
        assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_found"
        server.load_model("a/one")
        assert chat(server, "a/one").status_code == 200


def test_parallel_slots_queue_beyond(
    server: MockLMStudioServer, clock: ManualClock, pool: ThreadPoolExecutor
) -> None:
    server.update_model(FAST, tokens_per_second=40)  # 5 tokens: each answer takes 0.125 s
    answers = [pool.submit(chat, server, FAST) for _ in range(6)]
    server.wait_for_requests(6, path=CHAT)
    for round_ in range(1, 4):  # three rounds of two, not one round of six
        due = clock.wait_for_pending(2)
        assert due == [clock.now() + 0.125] * 2  # two answers at a time: the model's two slots
        clock.advance(0.125)
        assert wait_until_done(answers, 2 * round_) == 2 * round_  # the others still wait for a slot
    assert all(a.result(timeout=10).status_code == 200 for a in answers)
    counters = server.counters.model(FAST)
    assert counters.max_active == 2 and counters.requests == 6
    assert counters.max_queued == 4  # all six arrived before the first two were answered


def test_ttl_unloads_idle_model(server: MockLMStudioServer, clock: ManualClock) -> None:
    server.update_model("a/one", load_time=0)
    start = clock.now()
    assert chat(server, "a/one", ttl=0.5).status_code == 200
    assert clock.wait_for_pending() == [start + 0.5]  # unloaded 0.5 s after its last use
    clock.advance(0.25)
    assert chat(server, "a/one").status_code == 200  # a use starts the idle time again
    assert clock.wait_for_pending() == [start + 0.75]
    clock.advance(0.25)  # 0.5 s after the first use: still loaded
    assert "a/one" in server.loaded_models()
    clock.advance(0.25)  # 0.5 s after the last use
    assert "a/one" not in server.loaded_models()
    assert server.counters.model("a/one").expirations == 1
    assert clock.pending() == []


def test_load_and_unload_api(server: MockLMStudioServer, clock: ManualClock, pool: ThreadPoolExecutor) -> None:
    start = clock.now()
    loading = pool.submit(httpx.post, server.url + "/api/v1/models/load",
                          json={"model": "b/two", "context_length": 8192}, timeout=10)
    assert clock.wait_for_pending() == [start + LOAD]
    clock.advance(LOAD)
    body = loading.result(timeout=10).json()
    assert body["type"] == "llm" and body["instance_id"] == "b/two" and body["status"] == "loaded"
    assert body["load_time_seconds"] == LOAD
    listed = {m["key"]: m for m in httpx.get(server.url + "/api/v1/models").json()["models"]}
    assert listed["b/two"]["loaded_instances"][0]["config"] == {"context_length": 8192, "parallel": 4}
    r = httpx.post(server.url + "/api/v1/models/unload", json={"instance_id": "b/two"})
    assert r.json() == {"instance_id": "b/two"}
    assert state(server, "b/two") == "not-loaded"
    assert httpx.post(server.url + "/api/v1/models/unload", json={"instance_id": "b/two"}).status_code == 400
    assert server.counters.model("b/two").unloads == 1


def test_load_failure(server: MockLMStudioServer) -> None:
    server.update_model("a/one", load_time=0)
    server.set_fault("load_failure", model="a/one", times=1)
    r = chat(server, "a/one")
    assert r.status_code == 400 and r.json() == {"error": 'Failed to load model "a/one". Error: Error loading model.'}
    assert state(server, "a/one") == "not-loaded"
    assert chat(server, "a/one").status_code == 200  # the next try loads


def test_pacing_ttft_and_rate(server: MockLMStudioServer, clock: ManualClock, pool: ThreadPoolExecutor) -> None:
    server.update_model(FAST, ttft=0.25, tokens_per_second=64)
    chunks: queue.Queue[str] = queue.Queue()

    def read() -> None:
        with httpx.stream("POST", server.url + CHAT, timeout=10,
                          json={"model": FAST, "messages": HI, "max_tokens": 6, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    chunks.put(line)

    start = clock.now()
    reader = pool.submit(read)
    for i in range(6):
        # token i is due after the time to first token, then one every 1/64 s
        assert clock.wait_for_pending() == [start + 0.25 + i / 64]
        assert chunks.empty()  # nothing before its time
        clock.advance_to(start + 0.25 + i / 64)
        assert '"content":' in chunks.get(timeout=10)
    reader.result(timeout=10)
    assert '"finish_reason":"length"' in chunks.get_nowait() and chunks.empty()
    assert clock.now() == start + 0.25 + 5 / 64
