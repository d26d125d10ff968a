"""The fake server's command line answers bad input with one line, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lm_notebook.testing", *args], capture_output=True, text=True,
                          timeout=60)


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr
    return out.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("{", "not valid JSON (line 1, column 2"),
        ('{"id": "x"}', "expected a JSON list of model objects, not an object"),
        ('[{"idx": "x"}]', "unknown model field(s) ['idx']"),
    ],
)
def test_a_bad_models_file_is_one_line(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "models.json"
    if content is not None:
        path.write_text(content)
    line = one_line_error(run_cli("--models-file", str(path), "--port", "0"))
    assert line.startswith(f"--models-file {path}: ") and expected in line


def test_a_folder_as_models_file_is_one_line(tmp_path: Path) -> None:
    assert "is a folder" in one_line_error(run_cli("--models-file", str(tmp_path), "--port", "0"))


@pytest.mark.parametrize(("port", "expected"), [("99999", "to 65535, not 99999"), ("abc", "not 'abc'")])
def test_a_bad_port_is_one_line(port: str, expected: str) -> None:
    line = one_line_error(run_cli("--port", port))
    assert "argument --port: must be" in line and expected in line


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(run_cli("--port", str(port)))
    assert f"Cannot listen on 127.0.0.1:{port}" in line and "--port" in line


def test_an_unknown_host_is_one_line() -> None:
    line = one_line_error(run_cli("--host", "no-such-host.invalid", "--port", "0"))
    assert "Cannot listen on no-such-host.invalid: no such address" in line
