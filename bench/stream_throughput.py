"""Chunks per second through ``stream_chat``, against raw httpx + json (the floor) and the official openai client.

A server in a separate process sends a pre-built LM Studio stream in large writes, so it is never the bottleneck;
each contender runs several times, interleaved, and keeps its best run (:mod:`bench.stream_harness`).
Peak memory is measured separately with tracemalloc: the same text in 10× more chunks must not cost more.

Run: ``python -m bench.stream_throughput [--chunks 100000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import gc
import json
import tracemalloc

import httpx

from bench.stream_harness import best_rates, stream_server
from lm_notebook import LMStudioClient

BUILD = r"""
def build(n, size):
    token = "x" * (size - 1)
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1747835957,
            "model": "bench", "system_fingerprint": "bench"}
    out = []
    for i in range(n):
        delta = {"role": "assistant", "content": " " + token} if i == 0 else {"content": " " + token}
        out.append("data: " + json.dumps({**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                              "finish_reason": None}]}) + "\n\n")
    out.append("data: " + json.dumps({**head, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                                          "finish_reason": "stop"}]}) + "\n\n")
    out.append("data: " + json.dumps({**head, "choices": [], "usage": {"prompt_tokens": 5,
               "completion_tokens": n, "total_tokens": n + 5}}) + "\n\n")
    out.append("data: [DONE]\n\n")
    return "".join(out).encode()

def stream_key(req):
    return int(req.get("n", 1000)), int(req.get("size", 4))
"""


def payload(n: int, size: int) -> dict[str, object]:
    return {"model": "bench", "messages": [{"role": "user", "content": "go"}], "stream": True, "n": n, "size": size}


def raw_httpx(url: str, n: int, size: int) -> int:
    count = 0
    with httpx.Client(timeout=60) as http, http.stream("POST", url + "/v1/chat/completions",
                                                       json=payload(n, size)) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                obj = json.loads(line[6:])
                if obj["choices"] and obj["choices"][0]["delta"].get("content"):
                    count += 1
    return count


def ours(url: str, n: int, size: int) -> int:
    count = 0
    with LMStudioClient(url, timeout=60) as client, client.stream_chat("go", model="bench", n=n, size=size) as s:
        for _ in s:
            count += 1
    return count


def openai_client(url: str, n: int, size: int) -> int:
    from openai import OpenAI

    count = 0
    with OpenAI(base_url=url + "/v1", api_key="bench", timeout=60) as client:
        stream = client.chat.completions.create(
            model="bench", messages=[{"role": "user", "content": "go"}], stream=True, extra_body={"n": n, "size": size}
        )
        for c in stream:
            if c.choices and c.choices[0].delta.content:
                count += 1
    return count


def peak_memory(url: str, n: int, size: int) -> int:
    gc.collect()
    tracemalloc.start()
    ours(url, n, size)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--openai-chunks", type=int, default=20_000,
                        help="the openai client is ~20x slower: a shorter stream keeps the run short")
    args = parser.parse_args(argv)
    n = args.chunks
    with stream_server(BUILD) as url:
        ours(url, 1000, 4)  # warm up: build the bodies, import everything
        raw_httpx(url, n, 4)
        contenders = {"raw": (raw_httpx, n), "ours": (ours, n), "openai": (openai_client, args.openai_chunks)}
        best = best_rates(contenders, url, args.repeats)
        # same text (n × 4 chars) in 10x fewer, 10x longer chunks: memory must not depend on the chunk count
        many = peak_memory(url, n, 4)
        few = peak_memory(url, n // 10, 40)

    text_bytes = n * 4
    print(f"\nStreaming {n:,} chunks from a loopback server (best of {args.repeats}):\n")
    print("| path | chunks/s | ratio to raw floor |")
    print("|---|---:|---:|")
    print(f"| raw httpx `iter_lines` + `json.loads` (floor) | {best['raw']:,.0f} | 1.00× |")
    print(f"| lm_notebook `stream_chat` | {best['ours']:,.0f} | {best['ours'] / best['raw']:.2f}× |")
    print(f"| official `openai` client ({args.openai_chunks:,} chunks) | {best['openai']:,.0f} | "
          f"{best['openai'] / best['raw']:.2f}× |")
    print(f"\n`stream_chat` vs openai: {best['ours'] / best['openai']:.1f}× faster "
          f"(target ≥ 10×); vs raw floor: {best['ours'] / best['raw']:.2f}× (target ≥ 0.8×)")
    print("\nPeak traced memory of one `stream_chat` (same text, different chunk counts):\n")
    print("| chunks | text | peak memory | peak / text |")
    print("|---:|---:|---:|---:|")
    print(f"| {n:,} | {text_bytes / 1e6:.1f} MB | {many / 1e6:.1f} MB | {many / text_bytes:.1f}× |")
    print(f"| {n // 10:,} | {text_bytes / 1e6:.1f} MB | {few / 1e6:.1f} MB | {few / text_bytes:.1f}× |")
    return {"raw": best["raw"], "ours": best["ours"], "openai": best["openai"], "peak_many": many, "peak_few": few}


if __name__ == "__main__":
    main()
