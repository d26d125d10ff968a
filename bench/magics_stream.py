"""What ``%%lm`` costs a real kernel while it streams, against a naive per-token repaint measured in the same run.

A real kernel (through jupyter_client) streams a 5,000-token reply that the fake LM Studio server sends at 500
tokens/s, twice: with ``%%lm`` (one live display repainted at most 10 times a second from a thread, then the exact
final render), and with the naive loop — one ``update_display`` of the whole Markdown per token. Reported for each:
display messages on iopub (and per second of streaming), iopub bytes (JSON of the message contents), kernel CPU
seconds (``time.process_time`` over all its threads) and their share of the stream's wall time, and the lag from the
last byte of the stream to the end of the cell.

Targets (issue 4): ≤ 12 display messages per second, kernel CPU ≤ 10% of the stream's wall time, lag ≤ 0.2 s.

Run: ``python -m bench.magics_stream [--tokens 5000] [--rate 500]``
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jupyter_client.manager import start_new_kernel

from lm_notebook.testing import MockLMStudioServer, ModelSpec

MODEL = "bench-model"
PROMPT = "Write a long essay about local language models."
DISPLAY_TYPES = {"display_data", "update_display_data", "execute_result"}

SETUP = """
import json, time
from IPython.display import Markdown, display
import lm_notebook
_bench = {}
def _pre(info):
    _bench.update(start=time.perf_counter(), cpu=time.process_time())
def _post(result):  # kept until the next cell ends, so the report cell reads the measured one
    _bench["last"] = dict(wall=time.perf_counter() - _bench["start"], cpu=time.process_time() - _bench["cpu"])
get_ipython().events.register("pre_run_cell", _pre)
get_ipython().events.register("post_run_cell", _post)
%load_ext lm_notebook
"""

MAGIC_CELL = f"%%lm -m {MODEL} -o ans\n{PROMPT}"

NAIVE_CELL = f"""
_client = lm_notebook.get_client()
_handle = display(Markdown(""), display_id=True)
_text = ""
with _client.stream_chat({PROMPT!r}, model={MODEL!r}) as _stream:
    for _delta in _stream:
        _text += _delta
        _handle.update(Markdown(_text))
ans = _stream.result()
"""

REPORT = "print(json.dumps(dict(**_bench['last'], stream=ans.timings.total, tokens=ans.completion_tokens)))"


@dataclass
class Run:
    name: str
    display_messages: int
    iopub_messages: int
    iopub_bytes: int
    cpu: float
    stream: float
    wall: float
    tokens: int

    @property
    def per_second(self) -> float:
        return self.display_messages / self.stream

    @property
    def cpu_share(self) -> float:
        return self.cpu / self.stream

    @property
    def lag(self) -> float:
        """Cell time not spent receiving the stream: request set-up plus everything after the last byte."""
        return self.wall - self.stream


def execute(kc: Any, code: str, timeout: float = 600) -> list[dict[str, Any]]:
    msg_id = kc.execute(code)
    messages = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            reply = kc.get_shell_msg(timeout=30)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"cell failed: {reply['content']}\n{code}")
            return messages
        messages.append(msg)
    raise TimeoutError(code)


def measure(kc: Any, name: str, cell: str) -> Run:
    messages = execute(kc, cell)
    stats = json.loads(
        next(m for m in execute(kc, REPORT) if m["msg_type"] == "stream")["content"]["text"]
    )
    shown = [m for m in messages if m["msg_type"] in DISPLAY_TYPES]
    return Run(
        name=name,
        display_messages=len(shown),
        iopub_messages=len(messages),
        iopub_bytes=sum(len(json.dumps(m["content"])) for m in messages),
        cpu=stats["cpu"],
        stream=stats["stream"],
        wall=stats["wall"],
        tokens=stats["tokens"],
    )


def table(runs: list[Run]) -> str:
    head = ("variant", "tokens", "display msgs", "msgs/s", "iopub MB", "kernel CPU s", "CPU % of stream",
            "stream s", "lag s")
    rows = [
        (r.name, str(r.tokens), str(r.display_messages), f"{r.per_second:.1f}", f"{r.iopub_bytes / 1e6:.2f}",
         f"{r.cpu:.2f}", f"{100 * r.cpu_share:.1f}%", f"{r.stream:.2f}", f"{r.lag:.3f}")
        for r in runs
    ]
    magic, naive = runs
    rows.append((
        "naive / %%lm", "", f"{naive.display_messages / magic.display_messages:.0f}×",
        "", f"{naive.iopub_bytes / magic.iopub_bytes:.0f}×", f"{naive.cpu / max(magic.cpu, 1e-9):.1f}×", "", "", "",
    ))
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=5000, help="reply length in tokens")
    parser.add_argument("--rate", type=float, default=500.0, help="tokens per second the fake server sends")
    args = parser.parse_args(argv)

    spec = ModelSpec(MODEL, loaded=True, tokens_per_second=args.rate, reply_tokens=args.tokens,
                     context_length=32768, max_context_length=32768)
    with MockLMStudioServer(models=[spec]) as server:
        env = {**os.environ, "LMSTUDIO_BASE_URL": server.url}
        km, kc = start_new_kernel(kernel_name="python3", env=env, startup_timeout=60)
        try:
            execute(kc, SETUP)
            execute(kc, f"%%lm -m {MODEL} --max-tokens 5\nwarm up")  # imports and connection, not measured
            runs = [measure(kc, "%%lm", MAGIC_CELL), measure(kc, "naive: update per token", NAIVE_CELL)]
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)

    print(f"{args.tokens} tokens at {args.rate:g} tokens/s from the fake server, into a real kernel\n")
    print(table(runs))
    magic = runs[0]
    checks = [
        (f"display messages per second ≤ 12: {magic.per_second:.1f}", magic.per_second <= 12),
        (f"kernel CPU ≤ 10% of the stream's wall time: {100 * magic.cpu_share:.1f}%", magic.cpu_share <= 0.10),
        (f"cell ends ≤ 0.2 s after the last token: {magic.lag:.3f} s", magic.lag <= 0.2),
    ]
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")


if __name__ == "__main__":
    main()
