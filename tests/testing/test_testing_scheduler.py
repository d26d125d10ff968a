"""LM Studio's scheduling in the fake: JIT loading, auto-evict, parallel slots and queueing, ttl, load/unload."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from lm_notebook.testing import MockLMStudioServer, ModelSpec

FAST = "fast/model"
SLOW = "slow/model"
HI = [{"role": "user", "content": "Hello there"}]


def models(load_time: float = 0.2) -> list[ModelSpec]:
    return [ModelSpec(FAST, loaded=True, parallel=2), ModelSpec("a/one", load_time=load_time),
            ModelSpec("b/two", load_time=load_time), ModelSpec(SLOW, load_time=load_time, tokens_per_second=200)]


@pytest.fixture
def server() -> Iterator[MockLMStudioServer]:
    with MockLMStudioServer(models=models()) as s:
        yield s


def chat(server: MockLMStudioServer, model: str, **extra: Any) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", timeout=10,
                      json={"model": model, "messages": HI, "max_tokens": 5, **extra})


def state(server: MockLMStudioServer, model: str) -> str:
    return str(httpx.get(f"{server.url}/api/v0/models/{model}").json()["state"])


def test_jit_load_waits_and_changes_state(server: MockLMStudioServer) -> None:
    assert state(server, "a/one") == "not-loaded"
    started = time.perf_counter()
    assert chat(server, "a/one").status_code == 200
    assert time.perf_counter() - started >= 0.19  # waited for the load
    assert state(server, "a/one") == "loaded"
    started = time.perf_counter()
    chat(server, "a/one")
    assert time.perf_counter() - started < 0.15  # loaded now: no wait
    assert server.counters.model("a/one").loads == 1


def test_loading_state_visible_and_shared_by_concurrent_requests(server: MockLMStudioServer) -> None:
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(chat(server, "a/one").status_code)) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.08)
    assert state(server, "a/one") == "loading"
    for t in threads:
        t.join()
    assert results == [200] * 3 and server.counters.model("a/one").loads == 1  # one load served all three


def test_auto_evict_keeps_one_jit_model(server: MockLMStudioServer) -> None:
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
    with MockLMStudioServer(models=models(), jit_loading=False) as server:
        ids = [m["id"] for m in httpx.get(server.url + "/v1/models").json()["data"]]
        assert ids == [FAST]
        r = chat(server, "a/one")
        assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_found"
        server.load_model("a/one")
        assert chat(server, "a/one").status_code == 200


def test_parallel_slots_queue_beyond(server: MockLMStudioServer) -> None:
    server.update_model(FAST, tokens_per_second=50)  # 5 tokens: ~100 ms per request
    barrier = threading.Barrier(6)

    def one() -> None:
        barrier.wait()
        chat(server, FAST)

    threads = [threading.Thread(target=one) for _ in range(6)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    counters = server.counters.model(FAST)
    assert counters.max_active == 2 and counters.requests == 6  # never more than the two slots
    assert counters.max_queued >= 1
    assert elapsed >= 0.25  # three rounds of two, not one round of six


def test_ttl_unloads_idle_model(server: MockLMStudioServer) -> None:
    server.update_model("a/one", load_time=0)
    assert chat(server, "a/one", ttl=0.3).status_code == 200
    assert "a/one" in server.loaded_models()
    time.sleep(0.15)
    chat(server, "a/one")  # use resets the idle clock
    time.sleep(0.2)
    assert "a/one" in server.loaded_models()
    time.sleep(0.3)
    assert "a/one" not in server.loaded_models()
    assert server.counters.model("a/one").expirations == 1


def test_load_and_unload_api(server: MockLMStudioServer) -> None:
    r = httpx.post(server.url + "/api/v1/models/load", json={"model": "b/two", "context_length": 8192}, timeout=5)
    body = r.json()
    assert body["type"] == "llm" and body["instance_id"] == "b/two" and body["status"] == "loaded"
    assert body["load_time_seconds"] >= 0.19
    listed = {m["key"]: m for m in httpx.get(server.url + "/api/v1/models").json()["models"]}
    assert listed["b/two"]["loaded_instances"][0]["config"] == {"context_length": 8192, "parallel": 4}
    r = httpx.post(server.url + "/api/v1/models/unload", json={"instance_id": "b/two"})
    assert r.json() == {"instance_id": "b/two"}
    assert state(server, "b/two") == "not-loaded"
    assert httpx.post(server.url + "/api/v1/models/unload", json={"instance_id": "b/two"}).status_code == 400
    assert server.counters.model("b/two").unloads == 1


def test_load_failure(server: MockLMStudioServer) -> None:
    server.set_fault("load_failure", model="a/one", times=1)
    r = chat(server, "a/one")
    assert r.status_code == 400 and r.json() == {"error": 'Failed to load model "a/one". Error: Error loading model.'}
    assert state(server, "a/one") == "not-loaded"
    assert chat(server, "a/one").status_code == 200  # the next try loads


def test_pacing_ttft_and_rate(server: MockLMStudioServer) -> None:
    server.update_model(FAST, ttft=0.2, tokens_per_second=50)
    stamps = []
    started = time.perf_counter()
    with httpx.stream("POST", server.url + "/v1/chat/completions",
                      json={"model": FAST, "messages": HI, "max_tokens": 6, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                stamps.append(time.perf_counter() - started)
    assert 0.18 <= stamps[0] < 0.5
    rate = 5 / (stamps[5] - stamps[0])
    assert 30 < rate < 70
