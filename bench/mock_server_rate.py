"""Chunks per second the fake LM Studio server sends with zero pacing (it must never limit a client benchmark).

The client counts ``data:`` lines in raw bytes (no JSON parsing), so the number measures the server. Three set-ups:
the server in its own process (how a client benchmark should use it), four concurrent streams from it, and the
server in a thread of the reading process (sharing its GIL, the pytest-fixture case). The baseline is the
requirement, 20,000 chunks/s; each set-up keeps its best of ``--repeats`` runs.

Run: ``python -m bench.mock_server_rate [--chunks 100000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

import httpx

from lm_notebook.testing import MockLMStudioServer

REQUIRED = 20_000.0
MODEL = "qwen2.5-7b-instruct"


def read_stream(url: str, chunks: int) -> int:
    """Stream one reply of ``chunks`` tokens; returns the number of ``data:`` events seen."""
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Benchmark the server."}]}
    seen = 0
    tail = b""
    with httpx.Client(timeout=120) as client, client.stream("POST", url + "/v1/chat/completions", json=body) as r:
        for raw in r.iter_raw(256 * 1024):
            data = tail + raw
            seen += data.count(b"\ndata: ") + (data[:6] == b"data: " and not tail)
            tail = data[-7:]
            seen -= tail.count(b"\ndata: ")  # counted again with the next piece
    if seen < chunks:
        raise RuntimeError(f"expected at least {chunks} events, saw {seen}")
    return seen


def best_rate(run: Callable[[], int], repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        events = run()
        best = max(best, events / (time.perf_counter() - started))
    return best


def in_subprocess(chunks: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lm_notebook.testing", "--port", "0", "--reply-tokens", str(chunks)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    url = next(word for word in line.split() if word.startswith("http://"))
    return proc, url


def concurrent(url: str, chunks: int, streams: int) -> int:
    counts: list[int] = []
    threads = [threading.Thread(target=lambda: counts.append(read_stream(url, chunks))) for _ in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows: list[tuple[str, float]] = []
    proc, url = in_subprocess(args.chunks)
    try:
        rows.append(("own process, 1 stream", best_rate(lambda: read_stream(url, args.chunks), args.repeats)))
        rows.append(("own process, 4 streams", best_rate(lambda: concurrent(url, args.chunks // 4, 4),
                                                         args.repeats)))
    finally:
        proc.terminate()
        proc.wait(10)
    with MockLMStudioServer(reply_tokens=args.chunks) as server:
        rows.append(("same process (thread)", best_rate(lambda: read_stream(server.url, args.chunks),
                                                        args.repeats)))
    print(f"{'set-up':<26} {'chunks/s':>12} {'× required':>11}")
    print(f"{'requirement (baseline)':<26} {REQUIRED:>12,.0f} {1.0:>11.2f}")
    for name, rate in rows:
        print(f"{name:<26} {rate:>12,.0f} {rate / REQUIRED:>11.2f}")


if __name__ == "__main__":
    main()
