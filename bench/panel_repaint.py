"""What a chat panel's repaint costs a real kernel in a long conversation, against a short one in the same run.

A real kernel (through jupyter_client) holds a ``ChatPanel`` on the fake LM Studio server. Answers of 1,000 and
2,000 tokens (250 tokens/s, a repaint every 0.2 s) are streamed into it in a 2-message conversation and again in a
200-message one. What one repaint costs is the difference between the two answers (the extra repaints of the
longer one), so what an answer costs once — its two new message views in the conversation's list, the final render
— cancels out: comm bytes on iopub (JSON of the contents) and kernel CPU (``time.process_time``, every thread) per
repaint, and the widgets the repaints touch.

Target (issue 17): the 200-message conversation repaints at the cost of the 2-message one — comm bytes and kernel
CPU per repaint within 10% (CPU within 25%: the machine is noisy) — and a repaint touches the same few widgets,
however long the conversation (a reopened notebook's frontend re-renders only those).

Run: ``python -m bench.panel_repaint``
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

from jupyter_client.manager import start_new_kernel

from bench.magics_stream import execute
from lm_notebook.testing import MockLMStudioServer, ModelSpec

MODEL = "bench-model"
SETUP = f"""
import json, time
import lm_notebook
from lm_notebook import ChatPanel
panel = ChatPanel(model={MODEL!r})
panel.repaint_interval = 0.2
display(panel)
"""
FILL = "for _i in range({n}):\n    panel.send(f'Question {{_i}}').wait(60)\n"
MEASURE = """
_cpu, _t = time.process_time(), time.perf_counter()
_reply = panel.send('Tell me everything.')
_generation = panel._active
_reply.wait(120)
_stats = dict(cpu=time.process_time() - _cpu, wall=time.perf_counter() - _t, repaints=_generation.repaints,
              messages=len(panel.history))
"""
REPORT = "print(json.dumps(_stats))"


@dataclass
class Run:
    messages: int
    repaints: int
    comm_bytes: int
    widgets: int
    cpu: float


@dataclass
class PerRepaint:
    """The difference between a longer and a shorter answer in the same conversation, per extra repaint."""

    messages: int
    short: Run
    long: Run

    @property
    def repaints(self) -> int:
        return self.long.repaints - self.short.repaints

    @property
    def bytes(self) -> float:
        return (self.long.comm_bytes - self.short.comm_bytes) / self.repaints

    @property
    def cpu(self) -> float:
        return (self.long.cpu - self.short.cpu) / self.repaints


def measure(kc: object) -> Run:
    messages = [m for m in execute(kc, MEASURE) if m["msg_type"] == "comm_msg"]
    stats = json.loads(next(m for m in execute(kc, REPORT) if m["msg_type"] == "stream")["content"]["text"])
    return Run(
        messages=stats["messages"],
        repaints=stats["repaints"],
        comm_bytes=sum(len(json.dumps(m["content"])) for m in messages),
        widgets=len({m["content"]["comm_id"] for m in messages}),
        cpu=stats["cpu"],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exchanges", type=int, default=100, help="exchanges in the long conversation")
    args = parser.parse_args(argv)
    spec = ModelSpec(MODEL, loaded=True, reply_tokens=10, context_length=1_000_000, max_context_length=1_000_000)
    with MockLMStudioServer(models=[spec]) as server:
        env = {**os.environ, "LMSTUDIO_BASE_URL": server.url}
        km, kc = start_new_kernel(kernel_name="python3", env=env, startup_timeout=60)
        try:
            execute(kc, SETUP)
            results = []
            for fill in (0, args.exchanges - 4):  # 2, 4 messages; then 2 × exchanges - 2, 2 × exchanges
                if fill:
                    server.update_model(MODEL, tokens_per_second=0, reply_tokens=10)
                    execute(kc, FILL.format(n=fill))
                runs = []
                for tokens in (1000, 2000):
                    server.update_model(MODEL, tokens_per_second=250, reply_tokens=tokens)
                    runs.append(measure(kc))
                results.append(PerRepaint(runs[-1].messages, *runs))
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)

    short, long = results
    head = ("conversation", "repaints (1,000 / 2,000 tokens)", "widgets touched", "comm bytes / repaint",
            "kernel CPU ms / repaint")
    rows = [(f"{r.messages} messages", f"{r.short.repaints} / {r.long.repaints}", str(r.long.widgets),
             f"{r.bytes:,.0f}", f"{1000 * r.cpu:.2f}") for r in results]
    bytes_ratio, cpu_ratio = long.bytes / short.bytes, long.cpu / short.cpu
    rows.append(("long / short", "", "", f"{bytes_ratio:.2f}×", f"{cpu_ratio:.2f}×"))
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    print("Answers streamed into a chat panel in a real kernel (250 tokens/s, a repaint every 0.2 s); per repaint:"
          " the 2,000-token answer's cost less the 1,000-token one's, over its extra repaints\n")
    print("\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]))
    print()
    checks = [
        (f"comm bytes per repaint, {long.messages} vs {short.messages} messages: {bytes_ratio:.2f}× (≤ 1.10×)",
         bytes_ratio <= 1.10),
        (f"kernel CPU per repaint, {long.messages} vs {short.messages} messages: {cpu_ratio:.2f}× (≤ 1.25×)",
         cpu_ratio <= 1.25),
        (f"widgets the repaints touch: {long.long.widgets} vs {short.long.widgets} (the same)",
         long.long.widgets <= short.long.widgets),
    ]
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")


if __name__ == "__main__":
    main()
