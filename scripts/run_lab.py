"""`make run`: JupyterLab on notebooks/quickstart.ipynb, talking to LM Studio if one answers on the base URL.

Extra arguments go to `jupyter lab` (e.g. `python scripts/run_lab.py --no-browser --port 8899`).

If nothing answers there and the base URL is on this machine, the bundled fake LM Studio server is started on that
port for the session (so the notebooks work offline), and stopped when JupyterLab exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from lm_notebook import LMStudioClient
from lm_notebook.testing import MockLMStudioServer

ROOT = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def main() -> int:
    client = LMStudioClient()
    base_url = client.base_url
    server: MockLMStudioServer | None = None
    if client.is_running():
        print(f"LM Studio answers at {base_url}: the notebooks will use it.", flush=True)
    else:
        parts = urlsplit(base_url)
        if parts.hostname not in LOCAL_HOSTS:
            print(f"Nothing answers at {base_url}. Start LM Studio's server there (`lms server start`), "
                  "or unset LMSTUDIO_BASE_URL to use the bundled fake server.", file=sys.stderr)
            return 1
        server = MockLMStudioServer(port=parts.port or 1234, host="127.0.0.1")
        server.start()
        print(f"No LM Studio at {base_url}: started the bundled fake LM Studio server at {server.url}.", flush=True)
        base_url = server.url
    client.close()

    env = {**os.environ, "LMSTUDIO_BASE_URL": base_url}
    command = [sys.executable, "-m", "jupyter", "lab", "notebooks/quickstart.ipynb", "--ip=127.0.0.1", *sys.argv[1:]]
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
