"""The magics in a real kernel (through jupyter_client) against llama.cpp's server and real models."""

from __future__ import annotations

import os
import queue
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from jupyter_client.manager import KernelManager, start_new_kernel
from real_server import GEMMA3, MODELS, SMOLLM2

from lm_notebook import LMStudioClient

ANSI = re.compile(r"\x1b\[[0-9;]*m")
QUESTION = "What is the capital of France? Answer in one word."


@dataclass
class Run:
    messages: list[dict[str, Any]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    interrupted_at: float | None = None
    idle_at: float = 0.0

    def of_type(self, *kinds: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["msg_type"] in kinds]

    @property
    def status(self) -> str:
        return str(self.reply["content"]["status"])

    def text(self) -> str:
        """Everything the cell showed, as one string (stream text and every mime type of every display)."""
        parts: list[str] = []
        for m in self.messages:
            content = m["content"]
            if m["msg_type"] == "stream":
                parts.append(content["text"])
            elif "data" in content:
                parts.extend(str(v) for v in content["data"].values())
            elif m["msg_type"] == "error":
                parts.extend(ANSI.sub("", line) for line in content["traceback"])
        return "\n".join(parts)


class Kernel:
    def __init__(self, km: KernelManager, kc: Any) -> None:
        self.km, self.kc = km, kc

    def run(self, code: str, *, interrupt_when: str | None = None, timeout: float = 60) -> Run:
        """Execute ``code``; with ``interrupt_when``, interrupt the kernel once a live update contains that text."""
        out = Run(started=time.perf_counter())
        msg_id = self.kc.execute(code)
        deadline = out.started + timeout
        while True:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"kernel still busy after {timeout} s running {code!r}")
            try:
                msg = self.kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                if msg["content"]["execution_state"] == "idle":
                    out.idle_at = time.perf_counter()
                    break
                continue
            out.messages.append(msg)
            if (
                interrupt_when is not None
                and out.interrupted_at is None
                and msg["msg_type"] == "update_display_data"
                and interrupt_when in str(msg["content"]["data"])
            ):
                out.interrupted_at = time.perf_counter()
                self.km.interrupt_kernel()
        out.reply = self.kc.get_shell_msg(timeout=10)
        return out


@pytest.fixture(scope="module")
def kernel(real_base_url: str) -> Iterator[Kernel]:
    env = {**os.environ, "LMSTUDIO_BASE_URL": real_base_url}
    km, kc = start_new_kernel(kernel_name="python3", env=env, startup_timeout=60)
    k = Kernel(km, kc)
    try:
        assert k.run("%load_ext lm_notebook").status == "ok"
        yield k
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_lm_models_lists_both_models(kernel: Kernel) -> None:
    run = kernel.run("%lm_models -o models")
    assert run.status == "ok", run.text()
    shown = run.text()
    for model in MODELS:
        assert model in shown
    check = kernel.run(f"assert sorted(m.id for m in models) == {sorted(MODELS)!r}, models")
    assert check.status == "ok", check.text()


def test_lm_use_takes_a_listed_model_and_refuses_a_near_miss(kernel: Kernel) -> None:
    run = kernel.run(f"%lm_use {SMOLLM2}")
    assert run.status == "ok", run.text()
    assert f"Current model: {SMOLLM2}" in run.text()
    bad = kernel.run("%lm_use smollm2")
    assert bad.status == "error"
    (error,) = bad.of_type("error")
    assert error["content"]["ename"] == "ModelNotFoundError"
    assert len(error["content"]["traceback"]) == 1
    assert f'Did you mean "{SMOLLM2}"?' in bad.text()


@pytest.mark.parametrize("model", MODELS)
def test_lm_streams_a_real_answer_into_the_cell(kernel: Kernel, real_client: LMStudioClient, model: str) -> None:
    run = kernel.run(f"%%lm -m {model} -t 0 --seed 42 --max-tokens 16 -o ans\n{QUESTION}")
    assert run.status == "ok", run.text()
    first = run.of_type("display_data")[0]
    display_id = first["content"]["transient"]["display_id"]
    updates = run.of_type("update_display_data")
    assert updates and all(u["content"]["transient"]["display_id"] == display_id for u in updates)
    (final,) = run.of_type("execute_result")
    markdown = final["content"]["data"]["text/markdown"]
    assert "paris" in markdown.lower(), markdown
    assert f"<sub>{model} · " in markdown
    # the same answer the client gets outside the kernel (temperature 0, same seed)
    expected = real_client.chat(QUESTION, model=model, temperature=0, seed=42, max_tokens=16).content
    check = kernel.run(f"assert ans.content == {expected!r}, ans.content\nassert not ans.stopped")
    assert check.status == "ok", check.text()


def test_interrupt_stops_a_real_answer_and_the_kernel_goes_on(kernel: Kernel) -> None:
    run = kernel.run(
        f"%%lm -m {SMOLLM2} -t 0 --max-tokens 400 -o cut\nWrite a long story about a lighthouse keeper.",
        interrupt_when="tokens · streaming",
    )
    assert run.interrupted_at is not None, "the answer never started streaming: " + run.text()
    to_idle = run.idle_at - run.interrupted_at
    assert to_idle < 0.5, f"kernel idle {to_idle:.3f} s after the interrupt"
    (error,) = run.of_type("error")
    assert error["content"]["ename"] == "KeyboardInterrupt"
    check = kernel.run("assert cut.stopped and 0 < len(cut.content)")
    assert check.status == "ok", check.text()
    again = kernel.run(f"%%lm -m {GEMMA3} -t 0 --max-tokens 8 -f text\nWhat is 2+2?")
    assert again.status == "ok", again.text()


def test_lm_with_an_unknown_model_is_one_error_line(kernel: Kernel) -> None:
    run = kernel.run("%%lm -m no-such-model --max-tokens 4\nHi")
    assert run.status == "error"
    (error,) = run.of_type("error")
    assert error["content"]["ename"] == "ModelNotFoundError"
    assert len(error["content"]["traceback"]) == 1
    shown = run.text()
    assert all(model in shown for model in MODELS), shown
