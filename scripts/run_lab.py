"""`make run`: JupyterLab on notebooks/quickstart.ipynb, talking to LM Studio if one answers on the base URL.

Extra arguments go to `jupyter lab` (e.g. `python scripts/run_lab.py --no-browser --port 8899`).

If nothing answers there and the base URL is on this machine, the bundled fake LM Studio server is started on that
port for the session (so the notebooks work offline), and stopped when JupyterLab exits. It is started with its demo
profile: models load just in time on first use and answers stream at a local model's pace, with canned text.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from lm_notebook import LMStudioClient
from lm_notebook.testing import DEMO_PACING, MockLMStudioServer

ROOT = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
TO_REAL_LM_STUDIO = ("To use your LM Studio instead: start its server (Developer tab, or `lms server start`) and run "
                     "`make run` again, or set LMSTUDIO_BASE_URL to where it listens.")


def parse_arguments(argv: Sequence[str]) -> list[str]:
    """This script's own --help; every other argument is returned, for `jupyter lab`."""
    parser = argparse.ArgumentParser(
        prog="python scripts/run_lab.py", allow_abbrev=False,
        description="Open JupyterLab on notebooks/quickstart.ipynb, talking to LM Studio at LMSTUDIO_BASE_URL "
                    "(default http://127.0.0.1:1234). If nothing answers there and the address is on this machine, "
                    "the bundled fake LM Studio server is started on that port until JupyterLab exits: paced like a "
                    f"local model on a laptop ({DEMO_PACING.describe()}), with canned answers.",
        epilog="Every other argument goes to `jupyter lab` (e.g. --no-browser --port 8899).",
    )
    _, rest = parser.parse_known_args(argv)
    return rest


def start_fake_server(base_url: str) -> MockLMStudioServer:
    """The fake server in its demo profile on the base URL's port; SystemExit with one line when it cannot listen."""
    port = urlsplit(base_url).port or 1234
    server = MockLMStudioServer.demo(port=port, host="127.0.0.1")
    try:
        server.start()
    except OSError as exc:
        raise SystemExit(f"Nothing answers at {base_url}, and the bundled fake server cannot listen on port {port} "
                         f"({exc.strerror or exc}): another program holds it. Stop it, or set LMSTUDIO_BASE_URL to "
                         "your LM Studio.") from None
    return server


def main(argv: Sequence[str] | None = None) -> int:
    lab_arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    client = LMStudioClient()
    base_url = client.base_url
    server: MockLMStudioServer | None = None
    try:
        running = client.is_running()
    finally:
        client.close()
    if running:
        print(f"LM Studio answers at {base_url}: the notebooks will use it.", flush=True)
    else:
        if urlsplit(base_url).hostname not in LOCAL_HOSTS:
            print(f"Nothing answers at {base_url}. Start LM Studio's server there (`lms server start`), "
                  "or unset LMSTUDIO_BASE_URL to use the bundled fake server.", file=sys.stderr)
            return 1
        server = start_fake_server(base_url)
        print(f"No LM Studio at {base_url}: started the bundled FAKE LM Studio server at {server.url}. Its answers "
              f"are canned text, not a model's, paced like a local model ({DEMO_PACING.describe()}). "
              f"{TO_REAL_LM_STUDIO}", flush=True)
        base_url = server.url

    env = {**os.environ, "LMSTUDIO_BASE_URL": base_url}
    command = [sys.executable, "-m", "jupyter", "lab", "notebooks/quickstart.ipynb", "--ip=127.0.0.1",
               *lab_arguments]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    try:
        return subprocess.call(command, cwd=ROOT, env=env)
    except KeyboardInterrupt:
        return 0
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
