"""Run every benchmark and print its table: ``python -m bench [--only NAME ...]`` (also ``make bench``).

Benchmarks are not tests: each prints ratios against a baseline measured in the same run, because this machine is
shared and noisy; the README keeps the latest tables.
"""

from __future__ import annotations

import argparse
import importlib
import time

BENCHES = {
    "stream_throughput": "chunks/s through stream_chat vs raw httpx and the openai client; peak memory",
    "native_stream": "message deltas/s through LM Studio 0.4's native stream vs raw httpx + json",
    "mock_server_rate": "chunks/s the fake LM Studio server can send",
    "magics_stream": "a 20,000-token %%lm answer: iopub bytes vs its final output, kernel CPU, flatness",
    "panel_repaint": "a chat panel's repaint in a 200-message conversation vs a 2-message one",
    "compare_rows": "compare()'s client CPU per row vs raw httpx; a cached re-run",
    "compare_schedule": "wall time and model loads of compare() vs the ideal schedule and a naive loop",
    "compare_endpoints": "compare() over 3 fake servers vs 1: wall time vs the ideal from the pacing, and the speed-up",
    "real_latency": "TTFT and total time on the real llama.cpp server vs a raw HTTP request",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), help="run just these")
    args = parser.parse_args()
    for name in args.only or list(BENCHES):
        print(f"\n## {name}: {BENCHES[name]}\n", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        module.main([])
        print(f"\n({name} took {time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
