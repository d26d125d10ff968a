"""The command line (``python -m lm_notebook.testing``, ``lm-notebook mock``) and the pytest plugin's fixtures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from lm_notebook.testing import MockLMStudioServer

pytest_plugins = ["pytester"]


@contextmanager
def serving(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = next((w for w in line.split() if w.startswith("http://")), "")
        assert url, f"no URL printed: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_module_cli_serves_until_ctrl_c() -> None:
    with serving("-m", "lm_notebook.testing", "--port", "0", "--cors") as (proc, url):
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url + "/lmstudio-greeting").json() == {"lmstudio": True, "lm_notebook_fake": True}
        preflight = httpx.options(url + "/v1/models", headers={"Origin": "http://localhost:3000"})
        assert preflight.headers["access-control-allow-origin"] == "*"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "Stopped." in out


def test_console_script_mock_subcommand(tmp_path: Path) -> None:
    models = tmp_path / "models.json"
    models.write_text(json.dumps([{"id": "tiny/model", "loaded": True, "context_length": 512}]))
    code = "import sys; from lm_notebook.cli import main; sys.exit(main(sys.argv[1:]))"
    with serving("-c", code, "mock", "--port", "0", "--models-file", str(models), "--require-token",
                 "--reply-tokens", "7", env={"LM_API_TOKEN": "sk-lm-cli:token"}) as (proc, url):
        assert httpx.get(url + "/v1/models").status_code == 401
        headers = {"Authorization": "Bearer sk-lm-cli:token"}
        assert httpx.get(url + "/v1/models", headers=headers).json()["data"][0]["id"] == "tiny/model"
        answer = httpx.post(url + "/v1/chat/completions", headers=headers,
                            json={"model": "tiny/model", "messages": [{"role": "user", "content": "Hi"}]}).json()
        assert answer["usage"]["completion_tokens"] == 7
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "sk-lm-cli:token" not in out  # the token is never printed


def test_busy_port_is_a_clear_error() -> None:
    with MockLMStudioServer() as server:
        result = subprocess.run([sys.executable, "-m", "lm_notebook.testing", "--port", str(server.port)],
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "already using it" in result.stderr


def test_pytest_plugin_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_answer(lmstudio_client):
            assert "Key points" in lmstudio_client.chat("Summarize this").content

        def test_scripted(lmstudio_mock, lmstudio_client):
            lmstudio_mock.script("qwen2.5-7b-instruct", "Scripted!")
            assert lmstudio_client.chat("Hi").content == "Scripted!"
            assert lmstudio_mock.last_request.chat_body["messages"][0]["content"] == "Hi"  # either route

        @pytest.mark.lmstudio_mock(auth_token="sk-lm-a:b", version="0.4")
        def test_marker_configures_server(lmstudio_mock, lmstudio_client):
            assert lmstudio_mock.auth_token == "sk-lm-a:b"
            assert lmstudio_client.chat("Hi").content  # the fixture's client sends the token
        """
    )
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
