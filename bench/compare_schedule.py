"""Wall time and model loads of ``compare()`` against the ideal schedule and a naive loop, on the fake LM Studio.

The issue's setting: 3 models × 24 prompts, 1 s to load a model, 50 tokens/s per stream, 4 parallel slots per loaded
model, auto-evict on (one just-in-time model at a time). The ideal is computed from those numbers (each model loaded
once, its slots always full); the naive loop (for each prompt, for each model, one request at a time) is measured, as
is ``compare``. Target: ``compare`` within 1.15× of the ideal.

Run: ``python -m bench.compare_schedule [--prompts 24] [--reply-tokens 25] [--skip-naive]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from lm_notebook import LMStudioClient
from lm_notebook.comparison.api import compare
from lm_notebook.comparison.schedule import count_loads, ideal_seconds, naive_seconds
from lm_notebook.testing import MockLMStudioServer, ModelSpec

TARGET = 1.15


def _models(n: int, load: float, tps: float, reply_tokens: int, slots: int) -> list[ModelSpec]:
    return [
        ModelSpec(f"bench-model-{i + 1}", load_time=load, tokens_per_second=tps, reply_tokens=reply_tokens,
                  parallel=slots, context_length=4096)
        for i in range(n)
    ]


def _fresh(server: MockLMStudioServer) -> None:
    server.unload_all()
    server.reset_counters()


def run_compare(server: MockLMStudioServer, prompts: list[str], models: list[str]) -> tuple[float, int, int]:
    """Seconds, model loads and error rows of one ``compare`` call."""
    _fresh(server)
    with LMStudioClient(server.url, timeout=60) as client:
        started = time.perf_counter()
        df = compare(prompts, models, client=client, temperature=0, progress=False)
        wall = time.perf_counter() - started
    return wall, server.counters.loads, int((df.status != "ok").sum())


def run_naive(server: MockLMStudioServer, prompts: list[str], models: list[str]) -> tuple[float, int]:
    """Seconds and model loads of ``for prompt: for model: chat`` (what a notebook loop does)."""
    _fresh(server)
    with LMStudioClient(server.url, timeout=60) as client:
        started = time.perf_counter()
        for prompt in prompts:
            for model in models:
                with client.stream_chat(prompt, model=model, temperature=0) as stream:
                    stream.result()
        wall = time.perf_counter() - started
    return wall, server.counters.loads


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--load", type=float, default=1.0, help="seconds to load a model")
    parser.add_argument("--tps", type=float, default=50.0, help="tokens per second per stream")
    parser.add_argument("--slots", type=int, default=4, help="parallel slots per loaded model")
    parser.add_argument("--reply-tokens", type=int, default=25, help="tokens in every answer")
    parser.add_argument("--skip-naive", action="store_true", help="compute the naive loop's time instead (~2 min)")
    args = parser.parse_args(list(argv) if argv is not None else None)

    specs = _models(args.models, args.load, args.tps, args.reply_tokens, args.slots)
    model_ids = [m.id for m in specs]
    prompts = [f"Benchmark question number {i}: explain one idea in a few words." for i in range(args.prompts)]
    # The fake sends token i at i / tps (the first at once), so an n-token answer takes (n - 1) / tps: the ideal
    # uses that, the strictest reading of the numbers.
    paced_tokens = max(args.reply_tokens - 1, 0)
    ideal = ideal_seconds(models=args.models, prompts=args.prompts, slots=args.slots, load_seconds=args.load,
                          reply_tokens=paced_tokens, tokens_per_second=args.tps)
    naive_ideal = naive_seconds(models=args.models, prompts=args.prompts, load_seconds=args.load,
                                reply_tokens=paced_tokens, tokens_per_second=args.tps)
    naive_loads_expected = count_loads(m for _ in prompts for m in model_ids)

    print(f"{args.models} models × {args.prompts} prompts, load {args.load:g} s, {args.tps:g} tokens/s per stream, "
          f"{args.slots} slots, {args.reply_tokens}-token answers, auto-evict on\n")
    with MockLMStudioServer(models=specs, auto_evict=True) as server:
        wall, loads, errors = run_compare(server, prompts, model_ids)
        if args.skip_naive:
            naive_wall, naive_loads, naive_note = naive_ideal, naive_loads_expected, " (computed, not run)"
        else:
            naive_wall, naive_loads = run_naive(server, prompts, model_ids)
            naive_note = ""

    rows = [
        ("ideal schedule (computed)", ideal, args.models),
        ("compare()", wall, loads),
        (f"naive loop: prompts, then models{naive_note}", naive_wall, naive_loads),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'schedule'.ljust(width)} | wall s | × ideal | model loads |")
    print(f"|{'-' * (width + 2)}|-------:|--------:|------------:|")
    for name, seconds, n_loads in rows:
        print(f"| {name.ljust(width)} | {seconds:6.2f} | {seconds / ideal:6.2f}× | {n_loads:11d} |")
    verdict = "met" if wall / ideal <= TARGET else "MISSED"
    print(f"\ncompare() is {wall / ideal:.2f}× the ideal (target ≤ {TARGET}×: {verdict}) and "
          f"{naive_wall / wall:.1f}× faster than the naive loop; {errors} error rows.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
