"""What the panel's status line says while nothing else can: a model being loaded just in time (with the seconds it has
taken, ticking), and that the server is this project's bundled fake one (with how to reach a real LM Studio).

The load is paced by the fake server's :class:`~lm_notebook.testing.ManualClock`, which the panel's status reads too:
the test moves time, and waits for the words it expects.
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from panel_page import CHAT, MODEL, page_text

from lm_notebook import ChatPanel, LMStudioClient
from lm_notebook.testing import ManualClock, MockLMStudioServer, ModelSpec


class StatusLog:
    """Every text the panel's status line shows from now on (its notice left out), with a wait for one."""

    def __init__(self, panel: ChatPanel) -> None:
        self.texts: list[str] = []
        self._changed = threading.Condition()
        panel.status.observe(self._record, names="value")

    def _record(self, change: dict[str, Any]) -> None:
        first_line = change["new"].split("<br>")[0]
        with self._changed:
            self.texts.append(html.unescape(re.sub(r"<[^>]+>", "", first_line)))
            self._changed.notify_all()

    def wait_for(self, text: str) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: text in self.texts, timeout=10), self.texts


def model_lookups(server: MockLMStudioServer) -> int:
    return sum(1 for r in server.requests if r.path.endswith("/models"))


@pytest.fixture
def loading_server(clock: ManualClock) -> Iterator[MockLMStudioServer]:
    with MockLMStudioServer(models=[ModelSpec(MODEL, load_time=5.0, loaded=False)], clock=clock) as server:
        yield server


def test_a_model_loading_just_in_time_is_said_with_the_seconds_then_it_streams(
    loading_server: MockLMStudioServer, clock: ManualClock
) -> None:
    server = loading_server
    with LMStudioClient(server.url, timeout=30) as client, ChatPanel(client, model=MODEL) as chat:
        chat._wait_clock = clock.now  # the panel counts the seconds on the server's clock
        chat._wait_interval = 0.01
        log = StatusLog(chat)
        lookups = model_lookups(server)
        reply = chat.send("Hi")
        # at once, before the request leaves: the listing said it is not loaded (the server's first progress report
        # may repaint the line before this thread looks at it, so read what it said first)
        assert log.texts[0] == f"Loading {MODEL}… 0 s"
        server.wait_for_requests(1, path=CHAT)  # the request left at once
        assert 5.0 in clock.wait_for_pending(2)  # the server is loading the model, due in 5 s (and reports progress)
        clock.advance(3)
        # LM Studio 0.4 reports the load's progress (the native route): the status line shows it, with the seconds
        log.wait_for(f"Loading {MODEL} ▓▓▓▓▓▓░░░░ 60 % · 3.0 s")  # three reports were due in those 3 s
        assert not reply.done and chat.busy
        clock.advance(2)  # loaded: the answer comes
        result = reply.wait(10)
        assert result is not None and result.content
        assert model_lookups(server) == lookups  # nothing was asked on the way to the answer
        loading = [i for i, text in enumerate(log.texts) if text.startswith("Loading")]
        assert loading == list(range(len(loading)))  # nothing says "Loading" once the answer has begun
        assert log.texts[-1] == "Ready"
        del log.texts[:]
        assert chat.send("Again").wait(10) is not None
        assert not any(text.startswith("Loading") for text in log.texts)  # loaded now: the panel knows it
        assert f"Answering with {MODEL}…" in log.texts


def test_a_loaded_model_is_never_said_to_be_loading(lmstudio_client: LMStudioClient) -> None:
    with ChatPanel(lmstudio_client, model=MODEL) as chat:
        log = StatusLog(chat)
        assert chat.send("Hi").wait(10) is not None
        assert log.texts[0] == f"Answering with {MODEL}…"
        assert not any(text.startswith("Loading") for text in log.texts)


def test_stop_during_the_load_says_stopped(loading_server: MockLMStudioServer, clock: ManualClock) -> None:
    with LMStudioClient(loading_server.url, timeout=30) as client, ChatPanel(client, model=MODEL) as chat:
        chat._wait_interval = 0.01
        reply = chat.send("Hi")
        loading_server.wait_for_requests(1, path=CHAT)
        clock.wait_for_pending(1)
        chat.stop()
        assert reply.done and reply.stopped
        assert chat._status_line.text == "Stopped"  # no "still loading" tick comes after it


# --- the bundled fake server --------------------------------------------------------------------------------------

def _greeting_server(greeting: dict[str, Any]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/lmstudio-greeting":
            return httpx.Response(200, json=greeting)
        if request.url.path == "/api/v1/models":
            return httpx.Response(200, json={"models": [{"key": "m", "type": "llm", "loaded_instances": []}]})
        return httpx.Response(404, content=json.dumps({"error": "Unexpected endpoint"}))

    return httpx.MockTransport(handle)


def test_the_bundled_fake_server_is_named_with_how_to_reach_a_real_one() -> None:
    transport = _greeting_server({"lmstudio": True, "lm_notebook_fake": True})
    with LMStudioClient("http://127.0.0.1:1234", transport=transport) as client, ChatPanel(client) as chat:
        chat.refresh_models()
        status = page_text(chat.status)
        assert "Connected to the bundled fake LM Studio server (canned answers" in status
        assert "LMSTUDIO_BASE_URL" in status and "%config LMMagics.base_url" in status
        chat.clear()  # whatever the line says next, the notice stays under it
        status = page_text(chat.status)
        assert "New conversation" in status and "bundled fake LM Studio server" in status


def test_a_real_server_gets_no_such_notice() -> None:
    transport = _greeting_server({"lmstudio": True})
    with LMStudioClient("http://127.0.0.1:1234", transport=transport) as client, ChatPanel(client) as chat:
        chat.refresh_models()
        assert "fake" not in page_text(chat.status) and "1 models" in page_text(chat.status)


# --- an answer settling while the next one starts ---------------------------------------------------------------

class WatchedLock:
    """The panel's lock, setting ``waited`` when the thread named ``watch`` has to wait for it."""

    def __init__(self, watch: str, waited: threading.Event) -> None:
        self.waited = waited
        self._watch = watch
        self._lock = threading.RLock()

    def __enter__(self) -> WatchedLock:
        if not self._lock.acquire(blocking=False):
            if threading.current_thread().name == self._watch:
                self.waited.set()
            self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_a_retry_started_while_the_last_answer_settles_keeps_its_status(
    paced_panel: ChatPanel, paced: MockLMStudioServer
) -> None:
    chat = paced_panel
    moved_on = threading.Event()  # the retry returned, or waits for the settling answer to let it in
    chat._lock = WatchedLock("test-retry", moved_on)  # type: ignore[assignment]
    mark_loaded = chat._models.mark_loaded
    retries: list[Any] = []

    def retry() -> None:
        retries.append(chat.retry())
        moved_on.set()

    retrier = threading.Thread(target=retry, name="test-retry", daemon=True)

    def settling(model: str) -> None:  # called while the first answer settles, before its status is written
        mark_loaded(model)
        if retrier.ident is None:
            paced.update_model(MODEL, tokens_per_second=1.0, reply_tokens=5)  # the retried answer waits on the clock
            retrier.start()  # "from another thread": e.g. the Retry button, as soon as it is enabled
            assert moved_on.wait(10)

    chat._models.mark_loaded = settling  # type: ignore[method-assign]
    assert chat.send("Hi").wait(10) is not None
    retrier.join(10)
    assert retries and not retries[0].done and chat.busy
    assert chat._status_line.text.startswith(f"Answering with {MODEL}…")  # not the first answer's "Ready"

