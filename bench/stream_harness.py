"""What the stream benchmarks share: a loopback server sending a pre-built stream, and best-of-N interleaved rates.

The server runs in its own process and writes each pre-built body (cached per ``(n, size)``) in 1 MB writes, so it
is never the bottleneck. A benchmark gives the server's ``build(n, size) -> bytes`` and ``stream_key(request) ->
(n, size)`` as Python source. Each contender runs several times, interleaved, and keeps its best run (this machine is
shared and noisy).
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

Contender = Callable[[str, int, int], int]  # (url, n, size) → how many deltas it saw

_HANDLER = r"""
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

bodies = {}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def _send(self, body, content_type):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        view = memoryview(body)
        for i in range(0, len(body), 1 << 20):
            self.wfile.write(view[i:i + (1 << 20)])
    def do_GET(self):
        self._send(json.dumps({"lmstudio": True}).encode(), "application/json")
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = stream_key(req)
        if key not in bodies:
            bodies[key] = build(*key)
        self._send(bodies[key], "text/event-stream")

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@contextmanager
def stream_server(build_source: str) -> Iterator[str]:
    """The server's base URL while the block runs; ``build_source`` defines ``build`` and ``stream_key``."""
    code = "import json\n" + textwrap.dedent(build_source) + _HANDLER
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def rate(fn: Contender, url: str, n: int, size: int) -> float:
    """Deltas per second of one run of ``fn`` over an ``n``-delta stream (which it must see whole)."""
    gc.collect()
    started = time.perf_counter()
    got = fn(url, n, size)
    elapsed = time.perf_counter() - started
    assert got == n, f"{fn.__name__} saw {got} deltas, expected {n}"
    return n / elapsed


def best_rates(contenders: Mapping[str, tuple[Contender, int]], url: str, repeats: int, size: int = 4) -> dict[
        str, float]:
    """Each contender's best rate over ``repeats`` interleaved rounds (``contenders``: name → (fn, stream length))."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, (fn, n) in contenders.items():
            rates[name].append(rate(fn, url, n, size))
    return {name: max(found) for name, found in rates.items()}
