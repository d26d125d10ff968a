"""What ``compare()`` costs the client per row, beyond the HTTP work, and what a cached re-run costs.

The fake LM Studio server runs in its own process (so the client's CPU is the client's alone), answering 8-token
replies at once. The same 1,000 streamed requests (4 at a time) are made by:

- the floor: raw ``httpx.AsyncClient`` — POST, read the SSE lines, ``json.loads`` each — doing nothing else;
- ``compare()`` into a DataFrame, with a fresh cache;
- ``compare()`` again on that cache (every row cached), ``CACHED_RUNS`` times: a tenth of a second is at the mercy
  of this shared machine's scheduler (and of a full garbage collection), so the median run counts.

Reported: wall and client CPU seconds (``time.process_time``) for each, CPU per row, and the cached re-run's wall
time (median) as a share of the uncached one. Targets (issue 17): client CPU per answered row ≤ 2 ms beyond the
floor's; a cached re-run of 1,000 rows in under 1% of the uncached wall time.

Run: ``python -m bench.compare_rows [--rows 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

MODEL = "bench-model"
CONCURRENCY = 4
CACHED_RUNS = 9


def _serve(urls: Any) -> None:
    from lm_notebook.testing import MockLMStudioServer, ModelSpec

    spec = ModelSpec(MODEL, loaded=True, reply_tokens=8, parallel=CONCURRENCY)
    with MockLMStudioServer(models=[spec]) as server:
        urls.put(server.url)
        time.sleep(3600)


async def _raw(url: str, prompts: list[str]) -> None:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for prompt in prompts:
        queue.put_nowait(prompt)
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:

        async def worker() -> None:
            while not queue.empty():
                prompt = queue.get_nowait()
                body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": True,
                        "temperature": 0, "max_tokens": 8}
                async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data: ") and line != "data: [DONE]":
                            json.loads(line[6:])

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def _timed(action: Any) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args(argv)

    from lm_notebook import LMStudioClient, compare

    urls: Any = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(urls,), daemon=True)
    server.start()
    try:
        url = urls.get(timeout=60)
        prompts = [f"Question number {i}: what is {i} squared?" for i in range(args.rows)]
        client = LMStudioClient(url)
        compare(prompts[:8], [MODEL], client=client, temperature=0, max_tokens=8, progress=False)  # imports, warm
        asyncio.run(_raw(url, prompts[:8]))
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cache = Path(tmp) / "cache.sqlite"

            def run() -> None:
                frame = compare(prompts, [MODEL], client=client, temperature=0, max_tokens=8, progress=False,
                                cache=cache, concurrency=CONCURRENCY)
                assert len(frame) == args.rows and frame["error"].isna().all(), frame["error"].dropna().head()

            raw = _timed(lambda: asyncio.run(_raw(url, prompts)))
            uncached = _timed(run)
            reruns = sorted(_timed(run) for _ in range(CACHED_RUNS))
            cached = reruns[len(reruns) // 2]  # the median run (by wall time)
    finally:
        server.kill()

    rows = args.rows
    table = [
        ("raw httpx (floor)", raw),
        ("compare(), uncached", uncached),
        (f"compare(), cached re-run (median of {CACHED_RUNS})", cached),
    ]
    print(f"{rows} rows (1 model, 8-token answers, {CONCURRENCY} at a time) from the fake server in its own process\n")
    print("| run | wall s | client CPU s | CPU ms / row |")
    print("|---|---:|---:|---:|")
    for name, (wall, cpu) in table:
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {1000 * cpu / rows:.3f} |")
    extra = 1000 * (uncached[1] - raw[1]) / rows
    share = cached[0] / uncached[0]
    print()
    print(f"{'PASS' if extra <= 2 else 'FAIL'}  client CPU per row beyond raw httpx ≤ 2 ms: {extra:.2f} ms")
    print(f"{'PASS' if share < 0.01 else 'FAIL'}  cached re-run of {rows} rows < 1% of the uncached wall time: "
          f"{100 * share:.2f}% ({cached[0]:.3f} s vs {uncached[0]:.2f} s; the {CACHED_RUNS} re-runs "
          f"{reruns[0][0]:.3f}–{reruns[-1][0]:.3f} s)")


if __name__ == "__main__":
    main()
