"""LM Studio 0.4's native stream (``POST /api/v1/chat``, named events): message deltas per second through
``stream_chat(route="native")``, against raw httpx + json reading the same events (the floor). Target: ≥ 0.8×, as
for the OpenAI route (``bench.stream_throughput``).

A server in a separate process sends a pre-built native stream in large writes, so it is never the bottleneck; each
contender runs several times, interleaved, and keeps its best run (:mod:`bench.stream_harness`).

Run: ``python -m bench.native_stream [--chunks 100000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import sys

import httpx

from bench.stream_harness import best_rates, stream_server
from lm_notebook import LMStudioClient

TARGET = 0.8

BUILD = r"""
def event(name, payload):
    return "event: " + name + "\ndata: " + json.dumps({"type": name, **payload}) + "\n\n"

def build(n, size):
    token = "x" * (size - 1)
    out = [event("chat.start", {"model_instance_id": "bench"}), event("message.start", {})]
    out += [event("message.delta", {"content": " " + token}) for _ in range(n)]
    out.append(event("message.end", {}))
    stats = {"input_tokens": 5, "total_output_tokens": n, "reasoning_output_tokens": 0,
             "tokens_per_second": 100.0, "time_to_first_token_seconds": 0.1}
    out.append(event("chat.end", {"result": {"model_instance_id": "bench", "output": [], "stats": stats}}))
    return "".join(out).encode()

def stream_key(req):
    n, size = req["input"].split()  # the stream's length and token size, as the prompt
    return int(n), int(size)
"""


def raw_httpx(url: str, n: int, size: int) -> int:
    """The floor: httpx's line iterator, the event name, ``json.loads`` of each data line."""
    count = 0
    name = ""
    body = {"model": "bench", "input": f"{n} {size}", "stream": True, "store": False}
    with httpx.Client(timeout=60) as http, http.stream("POST", url + "/api/v1/chat", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                obj = json.loads(line[6:])
                if name == "message.delta" and obj.get("content"):
                    count += 1
    return count


def ours(url: str, n: int, size: int) -> int:
    count = 0
    with LMStudioClient(url, timeout=60, route="native") as client, \
            client.stream_chat(f"{n} {size}", model="bench") as stream:
        for _ in stream:
            count += 1
    return count


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    n = args.chunks
    with stream_server(BUILD) as url:
        ours(url, 1000, 4)  # warm up: build the bodies, import everything
        raw_httpx(url, n, 4)
        best = best_rates({"raw": (raw_httpx, n), "ours": (ours, n)}, url, args.repeats)
    ratio = best["ours"] / best["raw"]
    print("| contender | message deltas/s | vs raw |\n|---|---|---|")
    print(f"| raw httpx + json (floor) | {best['raw']:,.0f} | 1.00× |")
    print(f"| stream_chat(route=\"native\") | {best['ours']:,.0f} | {ratio:.2f}× |")
    print(f"{'PASS' if ratio >= TARGET else 'FAIL'}: native parse rate {ratio:.2f}× the raw floor (target ≥ {TARGET}×)")
    return {"raw": best["raw"], "ours": best["ours"], "ratio": ratio}


if __name__ == "__main__":
    main(sys.argv[1:])
