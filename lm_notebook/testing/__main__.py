"""``python -m lm_notebook.testing --port 1235``: serve the fake LM Studio until Ctrl-C (also ``lm-notebook mock``)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from lm_notebook.testing.catalogue import DEMO_PACING, ModelSpec, default_models, demo_models, load_models_file
from lm_notebook.testing.faults import Quirks
from lm_notebook.testing.server import MockLMStudioServer

DEFAULT_PORT = 1235  # the integration guide's mock port, so it never collides with a real LM Studio on 1234


def port_number(text: str) -> int:
    """argparse type for --port: a whole number from 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 65535, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 (any free port) to 65535, not {port}")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}; 0 = any)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--models-file", help="JSON list of models (ModelSpec fields) instead of the default set")
    parser.add_argument("--version", choices=["0.3", "0.4"], default="0.4", help="LM Studio version to imitate")
    parser.add_argument("--cors", action="store_true", help="answer CORS for any origin (development setting)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="allow this browser origin (repeatable); implies CORS on")
    parser.add_argument("--require-token", action="store_true",
                        help="require `Authorization: Bearer $LM_API_TOKEN` (the token comes from the environment)")
    parser.add_argument("--no-jit", action="store_true", help="turn just-in-time model loading off")
    parser.add_argument("--no-auto-evict", action="store_true", help="keep every JIT-loaded model loaded")
    parser.add_argument("--demo", action="store_true",
                        help="pace it like a local model on a laptop, as `make run` does: every model starts "
                             f"unloaded; {DEMO_PACING.describe()} (--load-time, --ttft and --tokens-per-second "
                             "override these)")
    parser.add_argument("--ttft", type=float, help="seconds to the first token, for every model")
    parser.add_argument("--tokens-per-second", type=float, help="generation speed for every model (0 = unpaced)")
    parser.add_argument("--load-time", type=float, help="seconds a model takes to load, for every model")
    parser.add_argument("--reply-tokens", type=int, help="make every reply exactly this many tokens")
    parser.add_argument("--crlf", action="store_true", help=r"end SSE lines with \r\n")
    parser.add_argument("--keep-alive-every", type=int, default=0, metavar="N",
                        help="send a `: keep-alive` comment every N chunks")


def _models(path: str | None) -> list[ModelSpec]:
    """The catalogue to serve; a bad --models-file is one line saying what is wrong with it (SystemExit)."""
    if not path:
        return default_models()
    try:
        return load_models_file(path)
    except FileNotFoundError:
        raise SystemExit(f"--models-file {path}: no such file.") from None
    except IsADirectoryError:
        raise SystemExit(f"--models-file {path}: is a folder; give a JSON file (a list of model objects).") from None
    except OSError as exc:
        raise SystemExit(f"--models-file {path}: cannot be read ({exc.strerror or exc}).") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--models-file {path}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg}).") from None
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"--models-file {path}: {exc}.") from None


def build_server(args: argparse.Namespace) -> MockLMStudioServer:
    models = _models(args.models_file)
    if args.demo:
        models = demo_models(models)
    token = None
    if args.require_token:
        token = os.environ.get("LM_API_TOKEN") or os.environ.get("LMSTUDIO_API_TOKEN")
        if not token:
            raise SystemExit("--require-token needs the LM_API_TOKEN environment variable set to the token")
    server = MockLMStudioServer(
        args.port, args.host, models, version=args.version, auth_token=token,
        cors=args.cors_origin or args.cors, jit_loading=not args.no_jit, auto_evict=not args.no_auto_evict,
        quirks=Quirks(line_ending="\r\n" if args.crlf else "\n", keep_alive_every=args.keep_alive_every),
        reply_tokens=args.reply_tokens,
    )
    pacing = {name: value for name, value in (("ttft", args.ttft), ("tokens_per_second", args.tokens_per_second),
                                              ("load_time", args.load_time)) if value is not None}
    if pacing:
        for model_id in server.models:
            server.update_model(model_id, **pacing)
    # a model downloaded meanwhile (%lm_download) is paced as the others: its load shows too
    server.downloads.model_defaults.update({**(DEMO_PACING.fields() if args.demo else {}), **pacing})
    return server


def run(args: argparse.Namespace) -> int:
    server = build_server(args)
    try:
        server.start()
    except socket.gaierror as exc:
        print(f"Cannot listen on {args.host}: no such address ({exc.strerror or exc}). Use --host 127.0.0.1 "
              "(the default) or an address of this machine.", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"Cannot listen on {args.host}:{args.port}: {exc.strerror or exc}. Is LM Studio or another mock "
              "server already using it? Pick another port with --port.", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    auth = " (token required)" if server.auth_token else ""
    demo = f" (demo pacing: {DEMO_PACING.describe()})" if args.demo else ""
    print(f"Fake LM Studio server listening on {server.url}{auth}{demo} — Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(0.5):  # a timed wait, so Ctrl-C is heard on every platform
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print("Stopped.", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lm_notebook.testing",
                                     description="Serve a fake LM Studio server until Ctrl-C.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
