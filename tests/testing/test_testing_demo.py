"""The demo a newcomer sees: the fake server says it is the fake (its greeting), and its demo profile (``make run``,
``--demo``, ``MockLMStudioServer.demo()``) is paced like a local model on a laptop.

Pacing is checked on a :class:`ManualClock`: the server's pauses end only when the test advances it, so the
assertions about time are exact and independent of how busy the machine is.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from lm_notebook import AsyncLMStudioClient, LMStudioClient
from lm_notebook.cli import main as cli_main
from lm_notebook.testing import DEMO_PACING, ManualClock, MockLMStudioServer, Pacing, default_models, demo_models
from lm_notebook.testing.__main__ import add_arguments, build_server

QWEN = "qwen2.5-7b-instruct"
RUN_LAB = Path(__file__).resolve().parents[2] / "scripts" / "run_lab.py"


# --- the greeting ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.3", "0.4"])
def test_the_greeting_says_lm_studio_and_that_it_is_the_bundled_fake(version: str) -> None:
    with MockLMStudioServer(version=version) as server:  # type: ignore[arg-type]
        assert httpx.get(server.url + "/lmstudio-greeting").json() == {"lmstudio": True, "lm_notebook_fake": True}


def test_a_real_client_reports_the_fake_server_after_is_running() -> None:
    with MockLMStudioServer() as server, LMStudioClient(server.url) as client:
        assert client.server_is_fake is None  # nothing asked yet
        assert client.is_running()
        assert client.server_is_fake is True


def test_the_async_client_reports_the_fake_server_too() -> None:
    async def ask(url: str) -> bool | None:
        async with AsyncLMStudioClient(url) as client:
            assert await client.is_running()
            return client.server_is_fake

    with MockLMStudioServer() as server:
        assert asyncio.run(ask(server.url)) is True


# --- the profile ---------------------------------------------------------------------------------------------------

def test_the_profile_is_a_laptop_and_the_default_stays_unpaced() -> None:
    # a couple of seconds to load, a few hundred ms to the first token, tens of tokens a second
    assert 1.0 <= DEMO_PACING.load_time <= 4.0
    assert 0.1 <= DEMO_PACING.ttft <= 0.9
    assert 10 <= DEMO_PACING.tokens_per_second < 100
    demo = demo_models()
    assert [m.id for m in demo] == [m.id for m in default_models()]
    assert all(not m.loaded and (m.load_time, m.ttft, m.tokens_per_second) == (2.0, 0.4, 30.0) for m in demo)
    with MockLMStudioServer() as server:  # what the tests get: no pacing at all
        assert all((m.load_time, m.ttft, m.tokens_per_second) == (0, 0, 0) for m in server.models.values())
    with MockLMStudioServer.demo() as server:
        assert server.loaded_models() == []
        assert server.models == {m.id: m for m in demo}


def test_demo_models_paces_any_catalogue_with_any_pacing() -> None:
    slow = Pacing(load_time=5.0, ttft=1.0, tokens_per_second=8.0)
    (model,) = demo_models([default_models()[0]], slow)
    assert (model.loaded, model.load_time, model.ttft, model.tokens_per_second) == (False, 5.0, 1.0, 8.0)
    assert "5 s load" in slow.describe() and "8 tokens/s" in slow.describe()


def stream_tokens(server: MockLMStudioServer, tokens: queue.Queue[str], max_tokens: int = 4) -> None:
    """Stream a chat answer, putting each content piece in ``tokens`` as it arrives, then "[DONE]"."""
    body = {"model": QWEN, "messages": [{"role": "user", "content": "Hello"}], "stream": True,
            "max_tokens": max_tokens}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=30) as response:
        for line in response.iter_lines():
            if line == "data: [DONE]":
                tokens.put("[DONE]")
            elif line.startswith("data: "):
                choices = json.loads(line[6:])["choices"]
                if choices and choices[0]["delta"].get("content"):
                    tokens.put(choices[0]["delta"]["content"])


@pytest.fixture
def demo_server() -> Iterator[tuple[MockLMStudioServer, ManualClock]]:
    clock = ManualClock()
    with MockLMStudioServer.demo(clock=clock, reply_tokens=4) as server:
        yield server, clock


def test_the_first_request_waits_for_the_load_then_the_ttft_then_streams_at_the_rate(
    demo_server: tuple[MockLMStudioServer, ManualClock],
) -> None:
    server, clock = demo_server
    load, ttft, interval = DEMO_PACING.load_time, DEMO_PACING.ttft, 1 / DEMO_PACING.tokens_per_second
    tokens: queue.Queue[str] = queue.Queue()
    thread = threading.Thread(target=stream_tokens, args=(server, tokens), daemon=True)
    thread.start()
    # the model is not loaded: the request waits for a just-in-time load of the profile's load time
    assert clock.wait_for_pending() == pytest.approx([load])
    assert server.loaded_models() == [] and tokens.empty()
    clock.advance(load)
    # loaded; the first token is due the profile's TTFT later
    assert clock.wait_for_pending() == pytest.approx([load + ttft])
    assert server.loaded_models() == [QWEN] and tokens.empty()
    clock.advance(ttft)
    # then one token every 1/tokens_per_second
    for i in range(1, 4):
        due = clock.wait_for_pending()
        assert due == pytest.approx([load + ttft + i * interval])
        assert tokens.get(timeout=10)  # token i-1 went out before the pause for token i
        assert tokens.empty()
        clock.advance_to(due[0])  # exactly when it is due (adding 1/30 again and again drifts below it)
    assert tokens.get(timeout=10) and tokens.get(timeout=10) == "[DONE]"
    thread.join(10)
    assert server.counters.model(QWEN).loads == 1


def test_a_loaded_model_answers_after_the_ttft_alone(demo_server: tuple[MockLMStudioServer, ManualClock]) -> None:
    server, clock = demo_server
    loading = threading.Thread(target=server.load_model, args=(QWEN,), daemon=True)  # as `lms load` would
    loading.start()
    clock.advance_to(clock.wait_for_pending()[0])
    loading.join(10)
    assert server.loaded_models() == [QWEN]  # as on every use after the first
    tokens: queue.Queue[str] = queue.Queue()
    thread = threading.Thread(target=stream_tokens, args=(server, tokens, 1), daemon=True)
    start = clock.now()
    thread.start()
    assert clock.wait_for_pending() == pytest.approx([start + DEMO_PACING.ttft])
    clock.advance(DEMO_PACING.ttft)
    assert tokens.get(timeout=10) and tokens.get(timeout=10) == "[DONE]"
    thread.join(10)


# --- the command line ----------------------------------------------------------------------------------------------

def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_the_cli_demo_flag_serves_the_profile_and_explicit_pacing_wins() -> None:
    demo = build_server(parse("--demo"))
    assert demo.models == MockLMStudioServer.demo().models
    faster = build_server(parse("--demo", "--tokens-per-second", "90"))
    assert all((m.loaded, m.load_time, m.tokens_per_second) == (False, DEMO_PACING.load_time, 90)
               for m in faster.models.values())
    assert build_server(parse()).models == MockLMStudioServer().models  # no --demo: unpaced, as before


def _download(server: MockLMStudioServer, model: str) -> None:
    server.downloads.seconds = 0.0
    with server, LMStudioClient(server.url) as client:
        assert client.download_model(model, poll_seconds=0.01).status == "completed"


@pytest.mark.parametrize(("argv", "pacing"), [
    (("--demo",), (DEMO_PACING.load_time, DEMO_PACING.ttft, DEMO_PACING.tokens_per_second)),
    (("--demo", "--load-time", "5"), (5.0, DEMO_PACING.ttft, DEMO_PACING.tokens_per_second)),
    (("--load-time", "3", "--tokens-per-second", "20"), (3.0, 0.0, 20.0)),
    ((), (0.0, 0.0, 0.0)),
])
def test_a_model_downloaded_from_the_cli_server_is_paced_as_its_other_models(
        argv: tuple[str, ...], pacing: tuple[float, float, float]) -> None:
    # `%lm_download` then `%%lm -m` on it must show a load, as the demo's own models do ("for every model")
    server = build_server(parse("--port", "0", *argv))
    _download(server, "someone/new-model")
    new = server.models["someone/new-model"]
    assert (new.loaded, new.load_time, new.ttft, new.tokens_per_second) == (False, *pacing)


def test_a_model_downloaded_from_the_demo_server_is_paced_as_the_demo() -> None:
    server = MockLMStudioServer.demo()
    _download(server, "someone/new-model")
    new = server.models["someone/new-model"]
    assert (new.load_time, new.ttft, new.tokens_per_second) == (
        DEMO_PACING.load_time, DEMO_PACING.ttft, DEMO_PACING.tokens_per_second)


def test_python_m_lm_notebook_testing_demo_serves_it_and_says_so() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "lm_notebook.testing", "--port", "0", "--demo"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "demo pacing" in line and DEMO_PACING.describe() in line
        url = next(w for w in line.split() if w.startswith("http://"))
        states = {m["state"] for m in httpx.get(url + "/api/v0/models").json()["data"]}
        assert states == {"not-loaded"}
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "Stopped." in out
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_the_help_of_both_commands_documents_demo(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["mock", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--demo" in text and "make run" in text and DEMO_PACING.describe() in text.replace("- ", "-")


# --- make run's launcher -------------------------------------------------------------------------------------------

def load_run_lab() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_lab", RUN_LAB)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_run_lab_starts_the_demo_fake_server_when_nothing_answers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    run_lab = load_run_lab()
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("LMSTUDIO_BASE_URL", url)
    seen: dict[str, Any] = {}

    def jupyter_lab(command: list[str], *, cwd: Path, env: dict[str, str]) -> int:
        """Stands in for JupyterLab: what the notebooks would see while it runs."""
        seen["command"], seen["url"] = command, env["LMSTUDIO_BASE_URL"]
        with LMStudioClient(env["LMSTUDIO_BASE_URL"]) as client:
            seen["fake"] = client.is_running() and client.server_is_fake
            seen["states"] = {m.id: m.state for m in client.list_models()}
        return 0

    monkeypatch.setattr(run_lab.subprocess, "call", jupyter_lab)
    assert run_lab.main(["--no-browser", "--port", "8899"]) == 0
    command = seen["command"]
    assert command[command.index("--no-browser"):][:3] == ["--no-browser", "--port", "8899"]  # passed on, in order
    assert seen["url"] == url and seen["fake"] is True
    assert set(seen["states"].values()) == {"not-loaded"}  # the first use of each model loads it, visibly
    out = capsys.readouterr().out
    assert "FAKE LM Studio server" in out and "canned" in out and "lms server start" in out
    with pytest.raises(httpx.ConnectError):  # stopped with JupyterLab
        httpx.get(url + "/lmstudio-greeting")


def test_run_lab_says_in_one_line_when_the_port_is_taken_by_something_else(monkeypatch: pytest.MonkeyPatch) -> None:
    run_lab = load_run_lab()
    with socket.socket() as holder:  # bound, not listening: nothing answers, yet the port is taken
        holder.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{holder.getsockname()[1]}"
        monkeypatch.setenv("LMSTUDIO_BASE_URL", url)
        monkeypatch.setattr(run_lab.subprocess, "call", lambda *a, **k: pytest.fail("JupyterLab must not start"))
        with pytest.raises(SystemExit, match=r"cannot listen on port .* another program holds it"):
            run_lab.main([])


def test_run_lab_help_works_without_starting_anything() -> None:
    result = subprocess.run([sys.executable, str(RUN_LAB), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "fake LM Studio server" in text and "canned answers" in text and "jupyter lab" in text
