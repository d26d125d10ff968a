"""``%lm_bench``: benchmark a model at several concurrency levels and show the summary.

::

    %lm_bench qwen2.5-7b-instruct -c 1,2,4,8 -n 128

The DataFrame (one row per request) is kept in ``_lm_bench`` (and in ``-o NAME``); the cell shows
:func:`~lm_notebook.comparison.benchmark_views.benchmark_summary` (``--plot`` adds the chart). Stopped, the rows so
far are kept there too and the cell ends with one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from lm_notebook.client.clients import LMStudioClient
from lm_notebook.client.errors import LMStudioError
from lm_notebook.client.session import get_client
from lm_notebook.magics.arguments import argument, magic_arguments, one_line, parse_argstring

if TYPE_CHECKING:
    import pandas as pd
    from IPython.core.interactiveshell import InteractiveShell

RESULT_NAME = "_lm_bench"
NO_MODEL = "No model to benchmark: %lm_bench MODEL -c 1,2,4,8, or choose a current model with %lm_use MODEL."


def levels(text: str) -> list[int]:
    """``"1,2,4,8"`` → ``[1, 2, 4, 8]``; anything else is a one-line UsageError."""
    try:
        out = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        out = []
    if not out or any(n < 1 for n in out):
        raise UsageError(f"-c takes positive numbers separated by commas, e.g. -c 1,2,4,8, not {text!r}.")
    return out


@magics_class
class BenchMagics(Magics):
    """``%lm_bench``: :func:`~lm_notebook.comparison.benchmark.benchmark` as a line magic."""

    def _client(self) -> LMStudioClient:
        """The client %%lm uses (it follows %config LMMagics.base_url and timeout), else the shared one."""
        from lm_notebook.magics.lm import LMMagics

        magics = self.shell.magics_manager.registry.get("LMMagics") if self.shell is not None else None
        return magics.client if isinstance(magics, LMMagics) else get_client()

    @magic_arguments()
    @argument("model", nargs="?", help="The model id (default: the current model, see %%lm_use).")
    @argument("-c", "--concurrency", default="1,2,4,8", help="Requests at once, per level: e.g. 1,2,4,8.")
    @argument("-r", "--requests", type=int, default=None, help="Requests per level (default: two waves).")
    @argument("-n", "--max-tokens", type=int, default=128, help="Longest answer in tokens (default 128).")
    @argument("--prompt-tokens", type=int, default=None, help="Pad the prompt to about this many tokens.")
    @argument("-p", "--prompt", default=None, help="The prompt sent (quote it; default: a long story).")
    @argument("--warmup", type=int, default=1, help="Unmeasured requests first (the model's load; default 1).")
    @argument("--plot", action="store_true", help="Also draw throughput and TTFT against concurrency.")
    @argument("--no-progress", action="store_true", help="No progress bar.")
    @argument("-o", "--out", default=None, help=f"Also store the DataFrame in this variable (always: {RESULT_NAME}).")
    @line_magic
    def lm_bench(self, line: str = "") -> pd.DataFrame:
        """Benchmark a model at each concurrency level: throughput, TTFT and latency per level."""
        args = parse_argstring(vars(BenchMagics)["lm_bench"], line)
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"-o needs a Python variable name, not {args.out!r}.")
        client = self._client()
        model = args.model or client.current_model
        if not model:
            raise UsageError(NO_MODEL)
        from lm_notebook.comparison.benchmark import BenchmarkInterrupted, benchmark
        from lm_notebook.comparison.benchmark_views import benchmark_summary, plot_benchmark

        namespace = self.shell.user_ns if self.shell is not None else {}
        keep = [RESULT_NAME, *([args.out] if args.out else [])]
        try:
            df = benchmark(
                model, concurrency=levels(args.concurrency), requests=args.requests, prompt=args.prompt,
                prompt_tokens=args.prompt_tokens, max_tokens=args.max_tokens, endpoint=client, warmup=args.warmup,
                progress=not args.no_progress,
            )
        except BenchmarkInterrupted as err:
            namespace.update(dict.fromkeys(keep, err.frame))
            raise one_line(err, f"%lm_bench stopped: {err.finished} of {err.total} requests finished; every row is "
                                f"in {' and '.join(keep)}.") from None
        except LMStudioError as err:
            raise UsageError(err.message) from err
        except (ValueError, TypeError) as err:
            raise UsageError(str(err)) from err
        namespace.update(dict.fromkeys(keep, df))
        if args.plot:
            from IPython.display import display

            display(plot_benchmark(df))  # type: ignore[no-untyped-call]
        return benchmark_summary(df)


def register(ipython: InteractiveShell) -> None:
    """Register :class:`BenchMagics` with ``ipython`` (a second call does nothing)."""
    if "BenchMagics" not in ipython.magics_manager.registry:
        ipython.register_magics(BenchMagics(shell=ipython))
