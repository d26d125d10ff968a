"""Drive a real IPython kernel through jupyter_client, collecting what a frontend receives on iopub.

Shared by the kernel tests of the magics (fake server) and of the real-model tier.
"""

from __future__ import annotations

import os
import queue
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.manager import KernelManager, start_new_kernel

ANSI = re.compile(r"\x1b\[[0-9;]*m")
REINTERRUPT_AFTER = 5.0  # seconds after an interrupt that still has not ended the cell: interrupt again


@dataclass
class Run:
    """One cell's execution: its iopub messages (status aside), its shell reply, when it was interrupted (as an index
    into ``messages``: everything from there on came after the interrupt) and timings (for reports, not asserts)."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    interrupted_at: float | None = None
    interrupted_index: int | None = None
    idle_at: float = 0.0

    def of_type(self, *kinds: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["msg_type"] in kinds]

    def after_interrupt(self) -> list[dict[str, Any]]:
        """The messages that came after the interrupt was sent (none when there was no interrupt)."""
        return [] if self.interrupted_index is None else self.messages[self.interrupted_index:]

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
        pressed: float | None = None  # when the interrupt was last sent
        while True:
            if pressed is not None and time.perf_counter() - pressed > REINTERRUPT_AFTER:
                # ipykernel can lose a SIGINT on a busy machine (it came while no Python code could see it): press
                # Stop again, as a user would; it ends nothing that a first interrupt would not have ended
                pressed = time.perf_counter()
                self.km.interrupt_kernel()
            try:
                wait = max(0.0, deadline - time.perf_counter())
                msg = self.kc.get_iopub_msg(timeout=min(wait, 1.0) if pressed is not None else wait)
            except queue.Empty:
                if pressed is not None and time.perf_counter() < deadline:
                    continue
                raise TimeoutError(f"kernel still busy after {timeout} s running {code!r}") from None
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
                out.interrupted_at = pressed = time.perf_counter()
                out.interrupted_index = len(out.messages)
                self.km.interrupt_kernel()
        # this cell's reply: under load, wait_for_ready may have sent kernel_info twice, leaving a reply queued
        while True:
            out.reply = self.kc.get_shell_msg(timeout=10)
            if out.reply["parent_header"].get("msg_id") == msg_id:
                return out


@contextmanager
def kernel_for(base_url: str) -> Iterator[Kernel]:
    """A fresh kernel whose LMSTUDIO_BASE_URL is ``base_url``, shut down afterwards."""
    env = {**os.environ, "LMSTUDIO_BASE_URL": base_url}
    km, kc = start_new_kernel(kernel_name="python3", env=env, startup_timeout=60)
    try:
        yield Kernel(km, kc)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
