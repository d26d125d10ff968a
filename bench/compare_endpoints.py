"""Wall time of ``compare()`` on 1 fake LM Studio server against 3 (``compare(endpoints=...)``), each with the whole
model set, and against the ideal computed from the fake's pacing.

The setting of ``bench.compare_schedule``: 3 models × 24 prompts, 1 s to load a model, 50 tokens/s per stream, 4
parallel slots per loaded model, auto-evict on. The ideal for S servers: each model loaded once on one server, its
slots always full, the servers side by side: ``ceil(models / S)`` models' worth of work each. Targets: 3 servers
within 1.15× their ideal, and at least 2.5× faster than 1 server. Each fake server runs in a process of its own, as
separate machines would (three in one interpreter would share its lock, which no real set-up does).

Run: ``python -m bench.compare_endpoints [--prompts 24] [--servers 3]``
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from lm_notebook import LMStudioClient
from lm_notebook.comparison.api import compare
from lm_notebook.comparison.schedule import ideal_seconds
from lm_notebook.testing import ModelSpec

TARGET_IDEAL = 1.15
TARGET_SPEEDUP = 2.5


def _models(n: int, load: float, tps: float, reply_tokens: int, slots: int) -> list[ModelSpec]:
    return [
        ModelSpec(f"bench-model-{i + 1}", load_time=load, tokens_per_second=tps, reply_tokens=reply_tokens,
                  parallel=slots, context_length=4096)
        for i in range(n)
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def separate_servers(count: int, specs: list[ModelSpec]) -> Iterator[list[str]]:
    """``count`` fake servers, each in a process of its own (as separate machines are: no shared interpreter)."""
    with tempfile.TemporaryDirectory() as folder:
        models = Path(folder) / "models.json"
        models.write_text(json.dumps([dataclasses.asdict(m) for m in specs]))
        ports = [_free_port() for _ in range(count)]
        procs = [subprocess.Popen([sys.executable, "-m", "lm_notebook.testing", "--port", str(port), "--models-file",
                                   str(models)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for port in ports]
        try:
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for url in urls:  # a bench may poll: wait until each answers
                deadline = time.perf_counter() + 60
                while not LMStudioClient(url, timeout=2).is_running():
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"the fake server at {url} did not start")
                    time.sleep(0.1)
            yield urls
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=10)


def run(urls: list[str], prompts: list[str], models: list[str]) -> tuple[float, int, int]:
    """Seconds, model loads (the cold rows: one per load) and error rows of one ``compare`` over ``urls``."""
    endpoints = {f"server-{i + 1}": url for i, url in enumerate(urls)}
    started = time.perf_counter()
    df = compare(prompts, models, endpoints=endpoints, temperature=0, progress=False, timeout=60)
    wall = time.perf_counter() - started
    return wall, int(df.cold.sum()), int((df.status != "ok").sum())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--load", type=float, default=1.0, help="seconds to load a model")
    parser.add_argument("--tps", type=float, default=50.0, help="tokens per second per stream")
    parser.add_argument("--slots", type=int, default=4, help="parallel slots per loaded model")
    parser.add_argument("--reply-tokens", type=int, default=25, help="tokens in every answer")
    args = parser.parse_args(list(argv) if argv is not None else None)

    specs = _models(args.models, args.load, args.tps, args.reply_tokens, args.slots)
    model_ids = [m.id for m in specs]
    prompts = [f"Benchmark question number {i}: explain one idea in a few words." for i in range(args.prompts)]
    paced_tokens = max(args.reply_tokens - 1, 0)  # the fake sends token i at i / tps: see bench.compare_schedule

    def ideal(servers: int) -> float:
        return ideal_seconds(models=math.ceil(args.models / servers), prompts=args.prompts, slots=args.slots,
                             load_seconds=args.load, reply_tokens=paced_tokens, tokens_per_second=args.tps)

    print(f"{args.models} models × {args.prompts} prompts, load {args.load:g} s, {args.tps:g} tokens/s per stream, "
          f"{args.slots} slots, {args.reply_tokens}-token answers, auto-evict on; every server has every model\n")
    with separate_servers(1, specs) as one:
        one_wall, one_loads, one_errors = run(one, prompts, model_ids)
    with separate_servers(args.servers, specs) as fleet:
        many_wall, many_loads, many_errors = run(fleet, prompts, model_ids)

    rows = [
        ("1 server", ideal(1), one_wall, one_loads),
        (f"{args.servers} servers (endpoints=)", ideal(args.servers), many_wall, many_loads),
    ]
    print("| servers | ideal s | wall s | × ideal | model loads |")
    print("|---|---:|---:|---:|---:|")
    for name, best, wall, loads in rows:
        print(f"| {name} | {best:.2f} | {wall:.2f} | {wall / best:.2f}× | {loads} |")
    speedup = one_wall / many_wall
    within = many_wall / ideal(args.servers)
    ok = within <= TARGET_IDEAL and speedup >= TARGET_SPEEDUP
    print(f"\n{args.servers} servers: {within:.2f}× their ideal (target ≤ {TARGET_IDEAL}×) and {speedup:.2f}× faster "
          f"than 1 (target ≥ {TARGET_SPEEDUP}×): {'PASS' if ok else 'FAIL'}; {one_errors + many_errors} error rows.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
