"""``route="auto"`` over real loopback HTTP with the fake server, counting every request: a fresh client's first
request learns once whether the server has LM Studio 0.4's native route (one probe, ``GET /api/v1/models``, after
the greeting every first request already sent), and every later request decides without a round trip; on 0.3 it
stays on ``/v1``; a probe that fails never breaks the request, and is asked again only after a while (the requests
meanwhile pay no probe each); copies made with ``with_options`` share what was learnt; concurrent first requests
(threads, tasks) wait for the one probe; a Stop ends a stream waiting on
it; a greeting nobody answers is the request's error, asked once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import httpx
import pytest

import lm_notebook.client.client_requests as client_requests
import lm_notebook.client.server_facts as server_facts
from lm_notebook import (
    AsyncLMStudioClient,
    EndpointNotSupportedError,
    LMStudioClient,
    LMStudioConnectionError,
    LMStudioRequestError,
    LMStudioTimeoutError,
)
from lm_notebook.client.route_learning import RouteLearning
from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec

LOADED = "qwen2.5-7b-instruct"
GREETING, PROBE, NATIVE, OPENAI = "/lmstudio-greeting", "/api/v1/models", "/api/v1/chat", "/v1/chat/completions"
Twin = Literal["sync", "async"]
Kind = Literal["chat", "stream"]
TWINS_AND_KINDS = [(t, k) for t in ("sync", "async") for k in ("chat", "stream")]


def two_requests(url: str, twin: Twin, kind: Kind, model: str = LOADED) -> list[tuple[str, bool]]:
    """Two requests of ``kind`` from one fresh client: each answer's route, and whether a load progress came."""

    def seen(parts: list[object]) -> bool:
        return any(getattr(p, "kind", None) == "progress" for p in parts)

    if twin == "sync":
        with LMStudioClient(url, timeout=30, model=model) as client:
            out = []
            for _ in range(2):
                if kind == "chat":
                    out.append((client.chat("Hi", max_tokens=5).route, False))
                else:
                    with client.stream_chat("Hi", max_tokens=5) as stream:
                        parts = list(stream.iter_parts())
                    out.append((stream.result().route, seen(parts)))
            return out

    async def run() -> list[tuple[str, bool]]:
        async with AsyncLMStudioClient(url, timeout=30, model=model) as client:
            out = []
            for _ in range(2):
                if kind == "chat":
                    out.append(((await client.chat("Hi", max_tokens=5)).route, False))
                else:
                    async with client.stream_chat("Hi", max_tokens=5) as stream:
                        parts = [p async for p in stream.iter_parts()]
                    out.append(((await stream.result()).route, seen(parts)))
            return out

    return asyncio.run(run())


def sent(server: MockLMStudioServer) -> list[str]:
    return [r.path for r in server.requests]


@pytest.mark.parametrize(("twin", "kind"), TWINS_AND_KINDS)
def test_a_fresh_client_on_0_4_probes_once_then_goes_native(twin: Twin, kind: Kind) -> None:
    with MockLMStudioServer(models=[ModelSpec(LOADED, loaded=True), ModelSpec("cold", load_time=0.05)]) as server:
        assert [route for route, _ in two_requests(server.url, twin, kind)] == ["native", "native"]
        # the greeting (sent by every fresh client), one probe, then the native route; the second: no probe at all
        assert sent(server) == [GREETING, PROBE, NATIVE, NATIVE]
        native = server.requests[2].json
        assert native["input"] == "Hi" and native["store"] is False and native["max_output_tokens"] == 5


@pytest.mark.parametrize("twin", ["sync", "async"])
def test_a_fresh_clients_first_stream_of_a_cold_model_shows_its_load(twin: Twin) -> None:
    with MockLMStudioServer(models=[ModelSpec("cold", load_time=0.05)]) as server:
        (first_route, first_progress), (_, second_progress) = two_requests(server.url, twin, "stream", model="cold")
    assert first_route == "native" and first_progress  # the load's progress, from the very first request
    assert not second_progress  # loaded by then
    assert sent(server) == [GREETING, PROBE, NATIVE, NATIVE]


@pytest.mark.lmstudio_mock(version="0.3")
@pytest.mark.parametrize(("twin", "kind"), TWINS_AND_KINDS)
def test_a_fresh_client_on_0_3_probes_once_and_stays_on_v1(lmstudio_mock: MockLMStudioServer, twin: Twin,
                                                            kind: Kind) -> None:
    assert [route for route, _ in two_requests(lmstudio_mock.url, twin, kind)] == ["openai", "openai"]
    assert sent(lmstudio_mock) == [GREETING, PROBE, OPENAI, OPENAI]


@pytest.mark.lmstudio_mock(version="0.3")
@pytest.mark.parametrize("kind", ["chat", "stream"])
def test_native_on_a_fresh_client_of_0_3_says_clearly_it_is_not_there(lmstudio_mock: MockLMStudioServer,
                                                                       kind: Kind) -> None:
    with LMStudioClient(lmstudio_mock.url, timeout=30, model=LOADED) as client:
        with pytest.raises(EndpointNotSupportedError) as info:
            if kind == "chat":
                client.chat("Hi", route="native")
            else:
                client.stream_chat("Hi", route="native").text()
        message = info.value.message
        assert "native chat route (POST /api/v1/chat, route='native') needs LM Studio 0.4 or newer" in message
        assert "route='auto'" in message and "\n" not in message
        assert client.chat("Hi").route == "openai"  # and auto knows it now: no probe
    assert sent(lmstudio_mock) == [GREETING, NATIVE, OPENAI]


@pytest.fixture
def probe_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The clock a failed probe's memory counts on: the test moves it (``now[0] += ...``)."""
    now = [1000.0]
    monkeypatch.setattr(server_facts, "clock", lambda: now[0])
    return now


@pytest.fixture
def probes_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed probe is remembered for no time: the next request asks again."""
    monkeypatch.setattr(server_facts, "PROBE_RETRY_SECONDS", 0.0)


@pytest.mark.usefixtures("probes_forgotten")
@pytest.mark.parametrize(("twin", "kind"), TWINS_AND_KINDS)
def test_a_probe_that_fails_leaves_the_request_on_v1_and_a_later_one_asks_again(server: MockLMStudioServer,
                                                                                twin: Twin, kind: Kind) -> None:
    server.set_fault("500", path=PROBE, times=1)  # a passing failure is no answer about the route: not kept
    assert [route for route, _ in two_requests(server.url, twin, kind)] == ["openai", "native"]
    assert sent(server) == [GREETING, PROBE, OPENAI, PROBE, NATIVE]


@pytest.mark.parametrize(("twin", "kind"), TWINS_AND_KINDS)
def test_a_model_list_that_always_fails_is_probed_once_a_while_not_once_a_request(
        server: MockLMStudioServer, probe_clock: list[float], twin: Twin, kind: Kind) -> None:
    server.set_fault("500", path=PROBE)  # every time
    assert [route for route, _ in two_requests(server.url, twin, kind)] == ["openai", "openai"]
    assert sent(server) == [GREETING, PROBE, OPENAI, OPENAI]  # the second request paid no probe


def test_a_failed_probe_is_asked_again_once_its_while_has_passed(server: MockLMStudioServer,
                                                                 probe_clock: list[float]) -> None:
    server.set_fault("500", path=PROBE)
    with LMStudioClient(server.url, timeout=30, model=LOADED) as client:
        assert [client.chat("Hi").route for _ in range(3)] == ["openai"] * 3
        probe_clock[0] += server_facts.PROBE_RETRY_SECONDS - 1
        assert client.chat("Hi").route == "openai"
        server.clear_faults()
        probe_clock[0] += 1
        assert client.chat("Hi").route == "native"
        assert client.supports_native_chat()
    assert sent(server) == [GREETING, PROBE, OPENAI, OPENAI, OPENAI, OPENAI, PROBE, NATIVE]


def test_supports_native_chat_asks_even_after_a_failed_probe(server: MockLMStudioServer,
                                                            probe_clock: list[float]) -> None:
    fault = server.set_fault("500", path=PROBE, times=1)
    with LMStudioClient(server.url, timeout=30, model=LOADED) as client:
        assert client.chat("Hi").route == "openai" and fault.hits == 1
        assert client.supports_native_chat()  # the user's own question is asked, not answered from the memory
        assert client.chat("Hi").route == "native"
    assert sent(server) == [GREETING, PROBE, OPENAI, PROBE, NATIVE]


def test_another_greeting_ends_a_failed_probes_memory(probe_clock: list[float]) -> None:
    facts = server_facts.ServerFacts()
    facts.greeted(True, False)
    facts.probe_failed()
    facts.greeted(True, False)  # the same server greets again: still remembered
    assert facts.probe_failed_recently()
    facts.greeted(True, True)  # another server answers there now
    assert not facts.probe_failed_recently()


def test_with_options_copies_share_what_was_learnt_of_the_server(server: MockLMStudioServer) -> None:
    with LMStudioClient(server.url, timeout=30, model=LOADED) as client, client.with_options(timeout=5) as early:
        assert early.chat("Hi").route == "native"  # made before anything was learnt: it learns for all
        with client.with_options(timeout=900) as late:
            assert client.chat("Hi").route == "native" and late.chat("Hi").route == "native"
        with MockLMStudioServer(version="0.3") as old, client.with_options(base_url=old.url) as elsewhere:
            assert elsewhere.chat("Hi").route == "openai"  # another server: learnt on its own
            assert sent(old) == [GREETING, PROBE, OPENAI]
        assert client.chat("Hi").route == "native"
    assert sent(server) == [GREETING, PROBE, NATIVE, NATIVE, NATIVE, NATIVE]


@pytest.fixture
def quick_probes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(client_requests, "_PROBE_TIMEOUT", httpx.Timeout(0.5))
    yield


@pytest.mark.usefixtures("quick_probes", "probes_forgotten")
def test_a_probe_that_times_out_leaves_the_request_on_v1_and_a_later_one_asks_again(
    server: MockLMStudioServer,
) -> None:
    server.set_fault("stall", path=PROBE, seconds=600, times=1)  # the model list does not come, this once
    assert [route for route, _ in two_requests(server.url, "sync", "stream")] == ["openai", "native"]
    assert sent(server) == [GREETING, PROBE, OPENAI, PROBE, NATIVE]


def test_a_listing_after_a_failed_probe_still_teaches_auto_the_native_route(server: MockLMStudioServer) -> None:
    fault = server.set_fault("500", path=PROBE, times=1)
    with LMStudioClient(server.url, timeout=30, model=LOADED) as client:
        assert client.chat("Hi").route == "openai" and fault.hits == 1
        client.list_models()
        assert client.chat("Hi").route == "native"
    assert sent(server) == [GREETING, PROBE, OPENAI, PROBE, NATIVE]


def test_a_client_that_found_no_server_asks_again_once_one_answers() -> None:
    with MockLMStudioServer() as gone:
        port = gone.port
    # nobody listens there now: the request fails as it did before auto probed (the probe's failure is not the error)
    with LMStudioClient(f"http://127.0.0.1:{port}", timeout=30, model=LOADED) as client:
        with pytest.raises(LMStudioConnectionError):
            client.chat("Hi")
        with MockLMStudioServer(port=port) as server:  # LM Studio started after the first try
            assert client.chat("Hi").route == "native"
            assert sent(server) == [GREETING, PROBE, NATIVE]


class CountingJoins:
    """Counts the requests that found another one asking the route (and wait for its answer)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, waiters: int) -> None:
        self.all_waiting = threading.Event()
        self._count = 0
        self._lock = threading.Lock()
        join = RouteLearning.join

        def counting(learning: RouteLearning) -> object:
            asking = join(learning)
            if asking is not None:
                with self._lock:
                    self._count += 1
                    if self._count == waiters:
                        self.all_waiting.set()
            return asking

        monkeypatch.setattr(RouteLearning, "join", counting)


def release_the_probe(server: MockLMStudioServer, clock: ManualClock, joins: CountingJoins) -> threading.Thread:
    """From another thread: once the probe is stalled and every other request waits for it, let it answer."""
    def run() -> None:
        server.wait_for_requests(1, path=PROBE)
        assert joins.all_waiting.wait(30)
        clock.advance_to(clock.wait_for_pending(1)[0])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("twin", ["sync", "async"])
def test_concurrent_first_requests_wait_for_the_one_probe_and_all_go_native(monkeypatch: pytest.MonkeyPatch,
                                                                           twin: Twin) -> None:
    clock = ManualClock()
    with MockLMStudioServer(models=[ModelSpec(LOADED, loaded=True)], clock=clock, reply_tokens=3) as server:
        server.set_fault("stall", path=PROBE, seconds=60, times=1)  # in flight until released
        joins = CountingJoins(monkeypatch, waiters=3)
        releasing = release_the_probe(server, clock, joins)
        if twin == "sync":
            with LMStudioClient(server.url, timeout=30, model=LOADED) as client, ThreadPoolExecutor(4) as pool:
                routes = list(pool.map(lambda i: client.chat(f"Hi {i}").route, range(4)))
        else:
            async def run() -> list[str]:
                async with AsyncLMStudioClient(server.url, timeout=30, model=LOADED) as client:
                    results = await asyncio.gather(*(client.chat(f"Hi {i}") for i in range(4)))
                return [r.route for r in results]

            routes = asyncio.run(run())
        releasing.join()
    assert routes == ["native"] * 4
    assert sent(server) == [GREETING, PROBE, NATIVE, NATIVE, NATIVE, NATIVE]  # greeted and asked once


@pytest.mark.usefixtures("quick_probes")
@pytest.mark.parametrize("kind", ["chat", "stream"])
def test_a_greeting_nobody_answers_is_the_requests_error_asked_once(server: MockLMStudioServer, kind: Kind) -> None:
    server.set_fault("stall", path=GREETING, seconds=600)
    with LMStudioClient(server.url, timeout=30, model=LOADED) as client, pytest.raises(LMStudioTimeoutError):
        if kind == "chat":
            client.chat("Hi")
        else:
            client.stream_chat("Hi").text()
    assert sent(server) == [GREETING]


def test_a_stop_ends_a_stream_waiting_for_the_route_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_requests, "_PROBE_TIMEOUT", httpx.Timeout(600))  # only the Stop can end the wait
    clock = ManualClock()
    with MockLMStudioServer(models=[ModelSpec(LOADED, loaded=True)], clock=clock) as server:
        server.set_fault("stall", path=PROBE, seconds=600, times=1)  # the probe's answer never comes in this test
        with LMStudioClient(server.url, timeout=30, model=LOADED) as client:
            stream = client.stream_chat("Hi")
            ended = threading.Event()
            texts: list[str] = []

            def read() -> None:
                texts.extend(stream)
                ended.set()

            threading.Thread(target=read, daemon=True).start()
            server.wait_for_requests(1, path=PROBE)
            stream.close()
            assert ended.wait(60)
        assert stream.stopped and texts == []
        assert sent(server) == [GREETING, PROBE]  # no chat request: it ended without the probe's answer


def test_a_stop_ends_a_stream_waiting_for_another_requests_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock()
    with MockLMStudioServer(models=[ModelSpec(LOADED, loaded=True)], clock=clock, reply_tokens=3) as server:
        server.set_fault("stall", path=PROBE, seconds=60, times=1)
        joins = CountingJoins(monkeypatch, waiters=1)
        with LMStudioClient(server.url, timeout=30, model=LOADED) as client, ThreadPoolExecutor(2) as pool:
            asking = pool.submit(lambda: client.chat("Hi").route)
            server.wait_for_requests(1, path=PROBE)
            waiting = client.stream_chat("Hi")
            reading = pool.submit(lambda: list(waiting))
            assert joins.all_waiting.wait(30)
            waiting.close()
            assert reading.result() == [] and waiting.stopped  # ended while the probe is still out
            clock.advance_to(clock.wait_for_pending(1)[0])
            assert asking.result() == "native"
    assert sent(server) == [GREETING, PROBE, NATIVE]


@pytest.mark.lmstudio_mock(version="0.3")
@pytest.mark.parametrize("route", ["auto", "openai", "native"])
def test_native_only_parameters_on_a_server_known_to_be_0_3_are_refused_before_sending(
        lmstudio_mock: MockLMStudioServer, route: str) -> None:
    with LMStudioClient(lmstudio_mock.url, timeout=30, model=LOADED) as client:
        assert client.chat("Hi").route == "openai"  # learns it is 0.3
        before = len(lmstudio_mock.requests)
        with pytest.raises(LMStudioRequestError) as info:
            client.chat("Hi", store=True, route=route)  # type: ignore[arg-type]
        assert len(lmstudio_mock.requests) == before  # nothing sent
    message = info.value.message
    assert "store" in message and "leave them out" in message and "route=" not in message  # advice that works


@pytest.mark.lmstudio_mock(version="0.3")
def test_native_only_parameters_on_a_fresh_client_of_0_3_are_advised_out_not_round_in_circles(
        lmstudio_mock: MockLMStudioServer) -> None:
    with LMStudioClient(lmstudio_mock.url, timeout=30, model=LOADED) as client, \
            pytest.raises(EndpointNotSupportedError) as info:
        client.chat("Hi", previous_response_id="resp_1")
    message = info.value.message
    assert "Leave out previous_response_id: they need LM Studio 0.4 or newer." in message
    assert "route='auto'" not in message and "route='openai'" not in message


def test_one_integration_given_as_a_string_is_a_list_of_one(server: MockLMStudioServer) -> None:
    with LMStudioClient(server.url, timeout=30, model=LOADED) as client:
        result = client.chat("Search x", integrations="mcp/playwright")
        assert server.last_request is not None and server.last_request.json["integrations"] == ["mcp/playwright"]
        assert [e.tool for e in result.tool_events] == ["playwright_search"]
        with pytest.raises(LMStudioRequestError, match=r"integrations must be .* not 5\."):
            client.chat("Hi", integrations=5)
        assert client.chat("Hi", integrations=[], seed=1).route == "openai"  # no integration: nothing native-only


class Forwarding(httpx.HTTPTransport):
    """Real HTTP to ``target`` (a fake server), whatever the request's URL says: the same base URL, another server
    (a proxy, a UDS or test transport); ``target`` can change (another server answers there now)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = httpx.URL(target)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host=self.target.host, port=self.target.port)
        return super().handle_request(request)


def test_a_copy_through_another_transport_learns_its_server_on_its_own(server: MockLMStudioServer) -> None:
    with MockLMStudioServer(version="0.3") as old, LMStudioClient(server.url, timeout=30, model=LOADED) as client:
        assert client.chat("Hi").route == "native"
        with client.with_options(transport=Forwarding(old.url)) as elsewhere:
            assert elsewhere.base_url == client.base_url
            assert elsewhere.chat("Hi").route == "openai"  # its own server has no native route: learnt on its own
        assert sent(old) == [GREETING, PROBE, OPENAI]
        assert client.chat("Hi").route == "native"  # what the copy learnt did not flow back
    through = Forwarding(server.url)
    with (LMStudioClient(server.url, timeout=30, model=LOADED, transport=through) as client,
          client.with_options(timeout=5, transport=through) as same, client.with_options(timeout=5) as direct):
        assert client.chat("Hi").route == "native" and same.chat("Hi").route == "native"  # one transport: shared
        assert direct.chat("Hi").route == "native"  # a transport of its own (the default one): asks itself
    first = [GREETING, PROBE, NATIVE, NATIVE]
    assert sent(server) == [*first, *first, GREETING, PROBE, NATIVE]


def test_a_native_route_gone_under_auto_is_said_for_auto_and_the_next_request_takes_v1(
    server: MockLMStudioServer,
) -> None:
    through = Forwarding(server.url)
    with MockLMStudioServer(version="0.3") as old, LMStudioClient(
        server.url, timeout=30, model=LOADED, transport=through
    ) as client:
        assert client.chat("Hi").route == "native"
        through.target = httpx.URL(old.url)  # another server answers at the same address now
        with pytest.raises(EndpointNotSupportedError) as info:
            client.chat("Hi")
        message = str(info.value)
        assert "route='auto'" in message and "route='native'" not in message, message
        assert "send the request again" in message
        assert client.chat("Hi").route == "openai"
        assert sent(old) == [NATIVE, OPENAI]
