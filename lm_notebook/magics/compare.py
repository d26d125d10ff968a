"""``%%lm_compare``: run the cell's prompts across models and show the answers side by side.

::

    %%lm_compare -m qwen2.5-7b-instruct,google/gemma-3-4b -t 0 -n 200
    Explain a mutex in one sentence.
    Name three prime numbers.

One prompt per line (``--single``: the whole cell is one prompt). ``--check 'contains:42' --check 'regex:^\\d+$'``
scores each answer (see :mod:`lm_notebook.comparison.check_specs`); ``--check 'judge:Is it correct?' --judge-model
MODEL`` names the judge (default: the current model), ``--embedding-model MODEL`` the embedding model of
``similar_to``; a check's model the server lacks is refused in one line before anything runs. The DataFrame is kept
in ``_lm_compare`` (and in ``-o NAME``); the table is the cell's output (``--summary`` adds the per-model summary).
Stopped (the Stop button, Ctrl-C), the cell shows the table so far, keeps its rows there too, and ends with a
one-line note.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class

from lm_notebook.client.clients import LMStudioClient
from lm_notebook.client.errors import LMStudioError, NoCurrentModelError, suggest_model
from lm_notebook.client.session import get_client
from lm_notebook.magics.arguments import argument, magic_arguments, one_line, parse_argstring

if TYPE_CHECKING:
    import pandas as pd
    from IPython.core.interactiveshell import InteractiveShell

    from lm_notebook.comparison.check_models import CheckModelError
    from lm_notebook.comparison.interrupt import ComparisonInterrupted
    from lm_notebook.comparison.schedule import Concurrency
    from lm_notebook.comparison.views import ComparisonTable

RESULT_NAME = "_lm_compare"
NO_MODEL = "No model to compare: pass -m model-a,model-b, or choose a current model with %lm_use MODEL."


def _concurrency(value: str | None) -> Concurrency:
    if value is None or value == "auto":
        return "auto"
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f'--concurrency takes a positive number or "auto", not {value!r}.') from None
    if number < 1:
        raise UsageError(f'--concurrency takes a positive number or "auto", not {value!r}.')
    return number


def cell_prompts(cell: str, *, single: bool) -> list[str]:
    """The prompts in a cell: one per non-blank line, or the whole (stripped) cell."""
    if single:
        text = cell.strip()
        return [text] if text else []
    return [line.strip() for line in cell.splitlines() if line.strip()]


@magics_class
class CompareMagics(Magics):
    """``%%lm_compare``: the comparison as a cell magic."""

    def _client(self) -> LMStudioClient:
        """The client %%lm uses (it follows %config LMMagics.base_url and timeout), else the shared one."""
        from lm_notebook.magics.lm import LMMagics

        magics = self.shell.magics_manager.registry.get("LMMagics") if self.shell is not None else None
        return magics.client if isinstance(magics, LMMagics) else get_client()

    def _where(self, every: bool) -> dict[str, Any]:
        """``client=`` for one server, or ``endpoints=`` (``--all``: LMMagics.endpoints) for several."""
        if not every:
            return {"client": self._client()}
        from lm_notebook.magics.lm import LMMagics

        magics = self.shell.magics_manager.registry.get("LMMagics") if self.shell is not None else None
        endpoints = magics.endpoints if isinstance(magics, LMMagics) else None
        if not endpoints:
            raise UsageError("--all spreads the prompts over LMMagics.endpoints, which is not set: %config "
                             "LMMagics.endpoints = {'laptop': 'http://127.0.0.1:1234', 'gpu': 'http://…:1234'}.")
        return {"endpoints": endpoints}

    @magic_arguments()
    @argument("-m", "--models", help="Comma-separated model ids (default: the current model, see %%lm_use).")
    @argument("-t", "--temperature", type=float, default=None, help="Sampling temperature (0: deterministic).")
    @argument("-n", "--max-tokens", type=int, default=None, help="Longest answer in tokens.")
    @argument("--seed", type=int, default=None, help="Sampling seed (makes answers repeatable, and cacheable).")
    @argument("-s", "--system", default=None, help="A system prompt sent before each prompt.")
    @argument("-r", "--repeats", type=int, default=1, help="Answers per prompt and model.")
    @argument("-c", "--concurrency", default=None, help='Requests in flight per model: a number or "auto".')
    @argument("--timeout", type=float, default=None, help="Seconds to wait for each answer.")
    @argument("--cache", nargs="?", const="", default=None, metavar="PATH",
              help="Cache answers in SQLite (default location, or PATH); deterministic requests only.")
    @argument("--check", action="append", default=[], metavar="KIND:ARG",
              help="Score each answer (repeatable): contains:TEXT, regex:PATTERN, equals[:TEXT], is_json, "
                   "max_words:N, similar_to[:REFERENCE], judge:RUBRIC (graded by --judge-model).")
    @argument("--judge-model", default=None, metavar="MODEL",
              help="The model that grades --check judge:RUBRIC (default: the current model, see %%lm_use).")
    @argument("--embedding-model", default=None, metavar="MODEL",
              help="The embedding model of --check similar_to (default: the server's one embedding model).")
    @argument("--all", action="store_true", help="Spread over every endpoint of %%config LMMagics.endpoints.")
    @argument("--single", action="store_true", help="The whole cell is one prompt (default: one per line).")
    @argument("--summary", action="store_true", help="Show the per-model summary under the table.")
    @argument("--no-progress", action="store_true", help="No progress bar.")
    @argument("-o", "--out", default=None, help=f"Also store the DataFrame in this variable (always: {RESULT_NAME}).")
    @cell_magic
    def lm_compare(self, line: str, cell: str) -> ComparisonTable | pd.DataFrame:
        """Send the cell's prompts to each model and show the answers side by side."""
        # the function itself (cell_magic's typing hides it behind the bound method): it carries the parser
        args = parse_argstring(vars(CompareMagics)["lm_compare"], line)
        prompts = cell_prompts(cell, single=args.single)
        if not prompts:
            raise UsageError("The cell has no prompt: write one per line below %%lm_compare.")
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"-o needs a Python variable name, not {args.out!r}.")
        if args.repeats < 1:
            raise UsageError(f"--repeats must be at least 1, not {args.repeats}.")
        models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
        if args.models is not None and not models:
            raise UsageError("-m needs model ids, e.g. -m qwen2.5-7b-instruct,google/gemma-3-4b")
        from lm_notebook.comparison.api import ComparisonInterrupted, compare, comparison_table, summary
        from lm_notebook.comparison.check_models import CheckModelError
        from lm_notebook.comparison.check_specs import checks_from_specs

        try:
            checks = checks_from_specs(args.check, judge_model=args.judge_model,
                                       embedding_model=args.embedding_model)
        except ValueError as err:
            raise UsageError(str(err)) from None
        if (args.judge_model or args.embedding_model) and not checks:
            raise UsageError("--judge-model and --embedding-model go with a --check that uses them, e.g. "
                             "--check 'judge:Is it correct?' --judge-model MODEL.")

        namespace = self.shell.user_ns if self.shell is not None else {}
        try:
            df = compare(
                prompts,
                models,
                system=args.system,
                repeats=args.repeats,
                temperature=args.temperature,
                max_tokens=args.max_tokens,
                seed=args.seed,
                concurrency=_concurrency(args.concurrency),
                cache=(True if args.cache == "" else args.cache),
                progress=not args.no_progress,
                timeout=args.timeout,
                checks=checks or None,
                **self._where(args.all),
            )
        except ComparisonInterrupted as err:
            # Stop means stop: the table so far is shown and kept, then the cell ends (and "Run all" with it)
            keep = [RESULT_NAME, *([args.out] if args.out else [])]
            namespace.update(dict.fromkeys(keep, err.frame))
            from IPython.display import display

            display(comparison_table(err.frame))  # type: ignore[no-untyped-call]
            raise one_line(err, stopped_note(err, keep)) from None
        except NoCurrentModelError as err:
            raise UsageError(NO_MODEL) from err
        except CheckModelError as err:
            raise UsageError(check_model_advice(err)) from err
        except LMStudioError as err:
            # one line, not a traceback: the message says what to do
            raise UsageError(err.message) from err
        except (ValueError, TypeError) as err:
            raise UsageError(str(err)) from err
        namespace[RESULT_NAME] = df
        if args.out:
            namespace[args.out] = df
        table = comparison_table(df)
        if args.summary:
            from IPython.display import display

            display(table)  # type: ignore[no-untyped-call]
            return summary(df)
        return table


def check_model_advice(err: CheckModelError) -> str:
    """A check's model problem in the magic's words (its options, not judge(model=...))."""
    kind, option = ("judge", "--judge-model") if err.role == "judge" else ("similar_to", "--embedding-model")
    model = f'"{err.model}"'
    if err.endpoint is not None:  # pinned "name/model": its message says which endpoint, what it lists, what to do
        return f"--check {kind}: {err.message}"
    if err.problem == "not_listed":
        guess = suggest_model(err.model or "", err.available)
        shown = ", ".join(err.available[:20]) + (" …" if len(err.available) > 20 else "")
        return (f"--check {kind}: the model {model} is not on the server (it has: {shown or 'none'})."
                + (f' Did you mean "{guess}"?' if guess else "") + f" Name the model with {option} MODEL.")
    if err.problem == "wrong_kind" and err.role == "judge":
        return f"--check judge: {model} is an embedding model and cannot grade: name a language model with {option}."
    if err.problem == "wrong_kind":
        return (f"--check similar_to: {model} is a language model, not an embedding model: name an embedding model "
                f"with {option}.")
    if err.problem == "none" and err.role == "judge":
        return f"--check judge needs a model to grade: name one with {option} MODEL, or choose one with %lm_use MODEL."
    if err.problem == "none":
        return "--check similar_to needs an embedding model, and the server lists none: download one in LM Studio."
    return f"--check similar_to: the server has several embedding models: name one with {option} MODEL."


def stopped_note(err: ComparisonInterrupted, names: list[str]) -> str:
    """The line an interrupted ``%%lm_compare`` ends with: rows finished, where they are, whether a re-run resumes."""
    note = (
        f"%%lm_compare stopped: {err.finished} of {err.total} rows finished; the table so far is shown above, and "
        f"every row is in {' and '.join(names)}."
    )
    if err.resumable:
        note += " Run the cell again to resume: the finished answers are cached."
    return note


def register(ipython: InteractiveShell) -> None:
    """Register :class:`CompareMagics` with ``ipython`` (a second call does nothing)."""
    if "CompareMagics" in ipython.magics_manager.registry:
        return
    ipython.register_magics(CompareMagics(shell=ipython))


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext lm_notebook.magics.compare``: just this magic (``%load_ext lm_notebook`` brings every magic)."""
    register(ipython)
