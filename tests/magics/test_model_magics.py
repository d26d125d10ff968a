"""``%lm_download``, ``%lm_load``, ``%lm_unload``, ``%lm_ps`` in a real shell against the fake server; the MCP
``--integration`` flag of ``%%lm``."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell
from magic_shell import MODEL, error_line, recorder, run, shown

import lm_notebook.magics.models as model_magics
from lm_notebook import LMStudioClient, set_client
from lm_notebook.testing import ManualClock, MockLMStudioServer, default_models

NEW = "ibm/granite-4-micro"


def usage_line(res: ExecutionResult) -> str:
    """The one line a magic's refusal shows (IPython prints a UsageError as ``UsageError: <message>``)."""
    err = res.error_in_exec or res.error_before_exec
    assert isinstance(err, UsageError), err
    assert "\n" not in str(err)
    return f"UsageError: {err}"


def texts(ip: InteractiveShell) -> list[str]:
    """Every text the cell displayed or updated, in order."""
    return [str(m["content"]["data"]["text/plain"]) for m in recorder(ip).sent if "data" in m["content"]]


def test_download_shows_a_bar_with_bytes_speed_and_time_left_then_the_end(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_magics, "DOWNLOAD_POLL_SECONDS", 0.01)
    lmstudio_mock.downloads.seconds = 0.3
    assert run(ip, f"%lm_download {NEW}").success
    seen = texts(ip)
    assert seen[0].startswith(f"Downloading {NEW} ░░░░░░░░░░ 0 %") and "of 2.3 GB" in seen[0]
    assert any("B/s · " in t and " s left" in t for t in seen)
    assert seen[-1] == f"Downloaded {NEW} (2.3 GB): load it with %lm_load {NEW}, or just use it."
    assert seen.count(seen[-1]) == 1  # each state painted once (the last poll and the end say the same)
    assert len(shown(ip)) == 1  # one display, updated in place
    recorder(ip).sent.clear()
    assert run(ip, f"%lm_download {NEW}").success
    assert texts(ip) == [f"{NEW} is already downloaded."]


def test_interrupting_a_download_stops_watching_and_says_so(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, monkeypatch: pytest.MonkeyPatch) -> None:
    lmstudio_mock.downloads.seconds = 600

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("lm_notebook.client.clients.time.sleep", interrupted)
    res = run(ip, f"%lm_download {NEW}")
    line = usage_line(res)
    assert line.startswith(f"UsageError: Stopped watching the download of {NEW}; LM Studio goes on downloading it")


def test_load_ps_and_unload(ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    assert run(ip, "%lm_load google/gemma-3-4b --context-length 8192").success
    assert texts(ip)[-1].startswith("Loaded google/gemma-3-4b in 0.0 s with a context of 8192 tokens")
    assert "google/gemma-3-4b" in lmstudio_mock.loaded_models()
    recorder(ip).sent.clear()
    assert run(ip, "%lm_ps").success
    table = texts(ip)[-1].splitlines()
    assert table[0].split() == ["instance", "model", "context", "slots"]
    assert ["google/gemma-3-4b", "google/gemma-3-4b", "8192", "4"] in [r.split() for r in table]
    assert run(ip, "%lm_unload google/gemma-3-4b").success
    assert "google/gemma-3-4b" not in lmstudio_mock.loaded_models()
    assert run(ip, "%lm_unload --all").success
    assert texts(ip)[-1] == f"Unloaded {MODEL}." and lmstudio_mock.loaded_models() == []
    assert "No model is loaded" in (run(ip, "%lm_ps") and texts(ip)[-1])


def test_unloading_a_model_that_is_not_loaded_says_so_with_what_is_loaded(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    assert lmstudio_mock.loaded_models() == [MODEL]
    line = error_line(run(ip, "%lm_unload google/gemma-3-4b"))
    assert line == (f"LMStudioAPIError: google/gemma-3-4b is not loaded on LM Studio at {lmstudio_mock.url} "
                    f"(loaded: {MODEL}); %lm_ps shows what is loaded."), line
    assert lmstudio_mock.loaded_models() == [MODEL]


@pytest.mark.lmstudio_mock(clock=ManualClock())
def test_load_counts_the_seconds_while_it_waits_then_says_the_load_time(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = lmstudio_mock.clock
    assert isinstance(clock, ManualClock)
    lmstudio_mock.update_model("google/gemma-3-4b", load_time=3.0)
    monkeypatch.setattr(model_magics, "LOAD_TICK_SECONDS", 0.01)
    monkeypatch.setattr(model_magics, "load_clock", clock.now)  # the line counts on the server's clock

    shown_texts: list[str] = []
    painted = threading.Condition()
    show = model_magics.ModelMagics._show

    def showing(text: str, handle: object = None) -> object:  # what the line shows, told to the test as it happens
        out = show(text, handle)
        with painted:
            shown_texts.append(text)
            painted.notify_all()
        return out

    monkeypatch.setattr(model_magics.ModelMagics, "_show", staticmethod(showing))

    def load_along() -> None:  # LM Studio's load route streams nothing: only the client's count moves
        clock.wait_for_pending(1)
        for second in (1, 2):
            clock.advance_to(float(second))
            with painted:
                assert painted.wait_for(lambda s=second: f"Loading google/gemma-3-4b… {s} s" in " ".join(shown_texts),
                                        timeout=10)
        clock.advance_to(3.0)

    mover = threading.Thread(target=load_along, daemon=True)
    mover.start()
    res = run(ip, "%lm_load google/gemma-3-4b")
    assert res.success, res.error_in_exec
    mover.join(10)
    seen = texts(ip)
    counts = [t.split("… ")[1].split(" s")[0] for t in seen if t.startswith("Loading google/gemma-3-4b…")]
    assert counts[0] == "0" and {"1", "2"} <= set(counts) and counts == sorted(counts, key=int)
    assert seen[-1].startswith("Loaded google/gemma-3-4b in 3.0 s")  # the server's own load time
    assert len(shown(ip)) == 1  # one line, updated in place


def test_unload_needs_a_model_or_all(ip: InteractiveShell) -> None:
    assert usage_line(run(ip, "%lm_unload")).startswith("UsageError: Name the model to unload")


@pytest.mark.lmstudio_mock(version="0.3")
@pytest.mark.parametrize("line", [f"%lm_download {NEW}", "%lm_load m", "%lm_unload --all", "%lm_ps"])
def test_each_refuses_clearly_on_lm_studio_0_3(ip: InteractiveShell, line: str) -> None:
    text = usage_line(run(ip, line))
    assert "needs LM Studio 0.4 or newer" in text and "llama.cpp" in text


def failure(res: ExecutionResult) -> str:
    err = res.error_in_exec or res.error_before_exec
    assert err is not None
    return f"{type(err).__name__}: {err}"


def test_with_nobody_listening_each_says_there_is_no_server_not_an_old_one(ip: InteractiveShell) -> None:
    with MockLMStudioServer() as gone:
        url = gone.url
    set_client(LMStudioClient(url, timeout=10))
    for line in ("%lm_ps", "%lm_load m", f"%lm_download {NEW}", "%lm_unload --all"):
        text = failure(run(ip, line))
        assert "LMStudioConnectionError" in text and "not reachable" in text and url in text
        assert "0.4" not in text


@pytest.mark.lmstudio_mock(auth_token="sk-lm-abcdefgh:0123456789abcdefghij")
def test_without_the_token_it_says_the_token_is_missing_not_that_the_server_is_old(ip: InteractiveShell) -> None:
    text = failure(run(ip, "%lm_ps"))
    assert "AuthenticationError" in text and "API token" in text and "0.4 or newer" not in text


def test_a_passing_server_error_is_said_as_such_and_the_next_try_works(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    lmstudio_mock.set_fault("500", path="/api/v1/models", times=1)
    text = failure(run(ip, "%lm_ps"))
    assert "HTTP 500" in text and "0.4 or newer" not in text
    assert run(ip, "%lm_ps").success  # the failure was not remembered as "an older server"
    assert texts(ip)[-1].splitlines()[0].split() == ["instance", "model", "context", "slots"]


def test_integration_passes_mcp_integrations_and_shows_the_tool_calls(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    run(ip, f"%lm_use {MODEL}")
    res = run(ip, "%%lm --integration mcp/playwright --integration mcp/failing -o ans\nFind the LM Studio docs")
    assert res.success
    body = lmstudio_mock.last_request.json  # type: ignore[union-attr]
    assert lmstudio_mock.last_request.path == "/api/v1/chat"  # type: ignore[union-attr]
    assert body["integrations"] == ["mcp/playwright", "mcp/failing"]
    final = shown(ip, ip.user_ns["ans"])[-1]
    assert "playwright_search" in final["text/markdown"] and "<details" in final["text/markdown"]
    assert "failing_search" in final["text/plain"]
    assert [e.tool for e in ip.user_ns["ans"].tool_events] == ["playwright_search", "failing_search"]


# --- end to end checks of #16 (each failed before its fix) ---------------------------------------------------------

def _downloads_asked(server: MockLMStudioServer) -> int:
    return sum(1 for r in server.requests if r.method == "POST" and r.path == "/api/v1/models/download")


def _slow_downloads(server: MockLMStudioServer) -> ManualClock:
    """The server's manual clock, downloads taking 600 s on it."""
    assert isinstance(server.clock, ManualClock)
    server.downloads.seconds = 600
    return server.clock


def _each_poll(monkeypatch: pytest.MonkeyPatch, action: Callable[[], object]) -> None:
    """``action`` in place of each pause between a download's polls."""
    monkeypatch.setattr("lm_notebook.client.clients.time.sleep", lambda *args, **kwargs: action())


@pytest.mark.lmstudio_mock(clock=ManualClock())
def test_download_again_after_an_interrupt_goes_on_watching_the_same_job(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _slow_downloads(lmstudio_mock)

    def interrupted() -> None:
        raise KeyboardInterrupt

    _each_poll(monkeypatch, interrupted)
    line = usage_line(run(ip, f"%lm_download {NEW}"))
    assert f"%lm_download {NEW} again shows how far it has come" in line
    clock.advance(300)  # LM Studio went on downloading meanwhile
    _each_poll(monkeypatch, lambda: clock.advance(150))  # each poll of the watch: LM Studio comes 150 s further
    recorder(ip).sent.clear()
    assert run(ip, f"%lm_download {NEW}").success
    seen = texts(ip)
    assert seen[0].startswith(f"Downloading {NEW} ▓▓▓▓▓░░░░░ 50 %")  # where the download is, not a new one from 0 %
    assert seen[-1].startswith(f"Downloaded {NEW}")
    assert _downloads_asked(lmstudio_mock) == 1  # the job was followed, not started again


@pytest.mark.lmstudio_mock(clock=ManualClock())
def test_a_paused_download_says_it_is_paused_and_download_again_follows_it_once_resumed(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _slow_downloads(lmstudio_mock)

    def paused_in_lm_studio() -> None:  # the first poll: the user paused it at 25 %
        clock.advance(150)
        lmstudio_mock.downloads.pause()

    _each_poll(monkeypatch, paused_in_lm_studio)
    assert run(ip, f"%lm_download {NEW}").success  # it ends, not polling forever
    last = texts(ip)[-1]
    assert last == (f"Paused {NEW} ▓▓░░░░░░░░ 25 % · 569.8 MB of 2.3 GB. Resume it in LM Studio (its downloads "
                    f"panel), then %lm_download {NEW} again follows it."), last
    lmstudio_mock.downloads.resume()
    _each_poll(monkeypatch, lambda: clock.advance(150))
    recorder(ip).sent.clear()
    assert run(ip, f"%lm_download {NEW}").success
    assert texts(ip)[-1].startswith(f"Downloaded {NEW}")
    assert _downloads_asked(lmstudio_mock) == 1  # the paused job was followed, not started again


def test_a_hugging_face_link_says_the_key_to_load_the_model_by(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # LM Studio lists a model downloaded from a link under its own key: the link is not a model id to load
    monkeypatch.setattr(model_magics, "DOWNLOAD_POLL_SECONDS", 0.01)
    lmstudio_mock.downloads.seconds = 0.05
    link = "https://huggingface.co/lmstudio-community/Qwen3-4B-GGUF"
    assert run(ip, f"%lm_download {link} --quantization Q4_K_M").success
    (key,) = set(lmstudio_mock.models) - {m.id for m in default_models()}  # the key the server gave it
    seen = texts(ip)
    assert seen[-1] == f"Downloaded {link} (2.3 GB) as {key}: load it with %lm_load {key}, or just use it."
    assert not any("%lm_load https://" in t for t in seen)


def test_a_load_that_fails_does_not_leave_its_line_saying_loading(
        ip: InteractiveShell, lmstudio_mock: MockLMStudioServer) -> None:
    lmstudio_mock.set_fault("load_failure", model="google/gemma-3-4b", times=1)
    res = run(ip, "%lm_load google/gemma-3-4b")
    assert not res.success
    last = texts(ip)[-1]
    assert last == "Could not load google/gemma-3-4b: LM Studio's answer is below.", last
