"""Waiting for JupyterLab to start: on what it prints (its "is running at" line), not on a clock.

A machine under heavy load (a load average of 14–16 on 2 cores) took JupyterLab past the 60 s the fixture polled
for. So the wait is on events: the line saying the server is running, or the process ending; the limit is only for
a JupyterLab that hangs (minutes), and a failure says what JupyterLab printed.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import IO

import httpx
import pytest

# A JupyterLab that has not said it is running by then hangs: under load, starting takes minutes, not seconds.
LAB_START_LIMIT = 600.0
RUNNING = "is running at"  # Jupyter Server's line once it listens: "Jupyter Server 2.x is running at:"
_SHOWN = 3000  # how much of the end of JupyterLab's output a failure shows


class LabOutput:
    """JupyterLab's output, read as it comes (so its pipe never fills) into ``log``; ``settled`` is set once it
    says it is running (``running``) or its output ends (it exited)."""

    def __init__(self, stream: IO[bytes], log: Path) -> None:
        self.log = log
        self.running = threading.Event()
        self.settled = threading.Event()
        self._lock = threading.Lock()
        self._line = threading.Condition(self._lock)  # told of each line
        self._printed: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(stream,), name="jupyterlab-output", daemon=True)
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        with self.log.open("wb") as out:
            try:
                for line in iter(stream.readline, b""):
                    out.write(line)
                    out.flush()
                    text = line.decode(errors="replace")
                    with self._line:
                        self._printed.append(text)
                        self._line.notify_all()
                    if RUNNING in text:
                        self.running.set()
                        self.settled.set()
            finally:
                self.settled.set()

    def wait_for_text(self, text: str, timeout: float) -> bool:
        """True once ``text`` is in what JupyterLab printed (checked as each line arrives); False after ``timeout``."""
        with self._line:
            return self._line.wait_for(lambda: any(text in line for line in self._printed), timeout)

    def printed(self) -> str:
        """The end of what JupyterLab printed so far."""
        with self._lock:
            text = "".join(self._printed)
        return text[-_SHOWN:] if text else "(nothing)"


def start_lab(command: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> tuple[subprocess.Popen[bytes],
                                                                                          LabOutput]:
    """JupyterLab started, its output (stdout and stderr) read into ``log``."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd)
    assert process.stdout is not None
    return process, LabOutput(process.stdout, log)


def wait_until_up(
    process: subprocess.Popen[bytes], output: LabOutput, status_url: str, *, limit: float = LAB_START_LIMIT
) -> None:
    """Return once JupyterLab says it is running and its API answers; fail (saying what it printed) when it exits
    first, or has not said so within ``limit`` seconds."""
    output.settled.wait(limit)
    if not output.running.is_set():
        if output.settled.is_set():  # its output ended: it exited (or is about to)
            code = process.wait()
            pytest.fail(f"JupyterLab exited with {code} before it was running; it printed:\n{output.printed()}",
                        pytrace=False)
        pytest.fail(f"JupyterLab did not say it {RUNNING} within {limit:g} s (still running: "
                    f"{process.poll() is None}); it printed:\n{output.printed()}", pytrace=False)
    try:
        # it listens once it prints the line: one request, given as long as the start-up limit (a loaded machine)
        answer = httpx.get(status_url, timeout=limit)
    except httpx.HTTPError as exc:
        pytest.fail(f"JupyterLab said it {RUNNING}, but its API did not answer ({exc!r}); it printed:\n"
                    f"{output.printed()}", pytrace=False)
    if answer.status_code != 200:
        pytest.fail(f"JupyterLab's API answered {answer.status_code} to {status_url.split('?')[0]}; it printed:\n"
                    f"{output.printed()}", pytrace=False)
