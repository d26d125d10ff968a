"""The JupyterLab fixture's wait (lab_start.py), on a stand-in process that talks as JupyterLab does on start-up.

No browser needed: the stand-in prints what Jupyter Server prints and answers ``/api/status`` once it says it is up.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_start import start_lab, wait_until_up

# start: a slow start-up (the stand-in's own pace), then the line, then the API; crash: an error, exit 3;
# hang: says it is starting and then nothing, until stopped
STAND_IN = r"""
import http.server, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
print("[I 2026-12-02 ServerApp] jupyterlab | extension was successfully linked.", flush=True)
if mode == "crash":
    print("OSError: [Errno 98] Address already in use", flush=True)
    sys.exit(3)
if mode == "hang":
    time.sleep(3600)  # stopped by the test
time.sleep(1.0)  # loading its extensions
class Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path.startswith("/api/status?token=t") else 403)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), Status)
print(f"[I 2026-12-02 ServerApp] Jupyter Server 2.14.2 is running at:\n    http://127.0.0.1:{port}/lab", flush=True)
server.serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StandIn:
    def __init__(self, mode: str, log: Path) -> None:
        self.port = _free_port()
        self.process, self.output = start_lab(
            [sys.executable, "-c", STAND_IN, mode, str(self.port)], env={}, cwd=log.parent, log=log)
        self.status_url = f"http://127.0.0.1:{self.port}/api/status?token=t"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def stand_ins(tmp_path: Path) -> Iterator[list[StandIn]]:
    made: list[StandIn] = []
    yield made
    for stand_in in made:
        stand_in.stop()


def test_a_start_up_slower_than_the_old_60_s_is_waited_for(
    stand_ins: list[StandIn], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a machine at load 14-16: each look at the clock finds 45 s gone (a wait polling against a 60 s deadline gave
    # up before JupyterLab was up); the wait is on JupyterLab's line, whatever the clock says
    start = time.monotonic()
    looks: list[float] = []

    def loaded_clock() -> float:
        looks.append(start + 45.0 * len(looks))
        return looks[-1]

    monkeypatch.setattr(time, "monotonic", loaded_clock)
    lab = StandIn("start", tmp_path / "lab.log")
    stand_ins.append(lab)
    wait_until_up(lab.process, lab.output, lab.status_url)
    assert lab.output.running.is_set() and lab.process.poll() is None
    assert "is running at" in (tmp_path / "lab.log").read_text()  # the log keeps what it printed, as before


def test_a_lab_that_exits_says_what_it_printed(stand_ins: list[StandIn], tmp_path: Path) -> None:
    lab = StandIn("crash", tmp_path / "lab.log")
    stand_ins.append(lab)
    with pytest.raises(pytest.fail.Exception) as failure:
        wait_until_up(lab.process, lab.output, lab.status_url)
    message = str(failure.value)
    assert "exited with 3" in message and "Address already in use" in message, message


def test_a_lab_that_hangs_fails_at_the_limit_saying_what_it_printed(stand_ins: list[StandIn], tmp_path: Path) -> None:
    lab = StandIn("hang", tmp_path / "lab.log")
    stand_ins.append(lab)
    # it has started and said its first line (a Python start on a busy machine can take longer than the limit)
    assert lab.output.wait_for_text("successfully linked", 120)
    with pytest.raises(pytest.fail.Exception) as failure:
        wait_until_up(lab.process, lab.output, lab.status_url, limit=0.5)
    message = str(failure.value)
    assert "did not say it is running at within 0.5 s" in message, message
    assert "successfully linked" in message and "still running: True" in message, message


def test_a_lab_whose_api_refuses_says_so_without_the_token(stand_ins: list[StandIn], tmp_path: Path) -> None:
    lab = StandIn("start", tmp_path / "lab.log")
    stand_ins.append(lab)
    with pytest.raises(pytest.fail.Exception) as failure:
        wait_until_up(lab.process, lab.output, lab.status_url.replace("token=t", "token=wrong"))
    message = str(failure.value)
    assert "answered 403" in message and "is running at" in message and "wrong" not in message, message


def test_the_stand_in_is_what_jupyter_server_prints() -> None:
    # the line the wait keys on, as the installed Jupyter Server words it
    from jupyter_server import serverapp

    source = Path(serverapp.__file__).read_text()
    assert 'is running at:\\n{url}")' in source
