"""The ``lm-notebook`` command: ``lm-notebook mock --port 1235`` serves the fake LM Studio until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lm-notebook", description="Local language models in Jupyter.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    mock = commands.add_parser("mock", help="serve a fake LM Studio (for tests, demos and CI) until Ctrl-C",
                               description="Serve a fake LM Studio server until Ctrl-C.")
    # imported here so `lm-notebook --help` stays cheap and the CLI module has no import-time cost
    from lm_notebook.testing.__main__ import add_arguments, run

    add_arguments(mock)
    args = parser.parse_args(argv)
    if args.command == "mock":
        return run(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
