"""IPython magics: ``%lm_models``, ``%lm_use``, ``%lm_config``, ``%%lm``, ``%lm_reset``, ``%lm_last_error``.

``%load_ext lm_notebook`` registers them. Settings are traitlets, so ``%config LMMagics.temperature = 0.2`` and
``ipython_config.py`` both work. Every magic talks to the kernel's shared client (:func:`lm_notebook.get_client`), so
the model chosen with ``%lm_use`` is the one the chat panel and ``compare`` use too.

Failures are one line, not a traceback: the exception's actionable message, or advice in the magics' own verbs built
from its fields (an unknown model: ``%lm_use``); the exception is never edited. ``%lm_last_error`` shows the traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from traitlets import Enum, Float, Int, Unicode

from lm_notebook.client.clients import LMStudioClient, normalize_base_url
from lm_notebook.client.errors import LMStudioError, ModelNotFoundError, suggest_model
from lm_notebook.client.interpolation import InterpolationError, fill
from lm_notebook.client.session import get_client, set_client
from lm_notebook.client.types import ChatResult, ModelInfo
from lm_notebook.display.answer import TerminalStreamView, make_view, show_bundle, stream_into
from lm_notebook.display.model_table import model_table
from lm_notebook.display.render import FORMATS, AnswerFormat, AnswerFormatError, RenderedChatResult, finish_as
from lm_notebook.magics.arguments import argument, error_message, magic_arguments, one_line, parse_argstring

# isort: split
# (apart from the block above while the display layer's move edits it; one block once that has landed)
from typing import TYPE_CHECKING, TypeVar

from lm_notebook.magics.memory import ChatMemory

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

_T = TypeVar("_T")


@magics_class
class LMMagics(Magics):
    """Magics for LM Studio. Settings: ``%config LMMagics`` lists them."""

    base_url = Unicode(
        "",
        help="LM Studio's address, e.g. http://127.0.0.1:1234. Empty: LMSTUDIO_BASE_URL, else http://127.0.0.1:1234.",
    ).tag(config=True)
    temperature = Float(None, allow_none=True, help="Sampling temperature; None leaves the model's own.").tag(
        config=True
    )
    max_tokens = Int(None, allow_none=True, help="Longest answer in tokens; None means no limit.").tag(config=True)
    system = Unicode("", help="System prompt sent before every %%lm prompt (-s overrides it).").tag(config=True)
    default_format = Enum(list(FORMATS), "markdown", help="How %%lm shows answers without -f.").tag(config=True)
    timeout = Float(
        None, allow_none=True, help="Seconds to wait for an answer (a just-in-time model load counts); None: 300."
    ).tag(config=True)
    chat_memory = Int(20, help="Exchanges (prompt + answer) that %%lm --chat remembers; older ones are dropped.").tag(
        config=True
    )
    updates_per_second = Float(10.0, help="Most repaints a second of a streaming answer.").tag(config=True)

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.memory = ChatMemory()  # what %%lm --chat sends again
        self.last_error: BaseException | None = None
        # so %config LMMagics.x = ... reaches this instance (IPython types the list as shells only)
        if shell is not None and self not in shell.configurables:  # type: ignore[comparison-overlap]
            shell.configurables.append(self)  # type: ignore[arg-type]

    # --- shared plumbing --------------------------------------------------------------------------------------------
    @property
    def client(self) -> LMStudioClient:
        """The shared client, replaced when ``base_url`` or ``timeout`` were configured to something else."""
        client = get_client()
        url = normalize_base_url(self.base_url) if self.base_url else client.base_url
        timeout_differs = self.timeout is not None and client.timeout.read != float(self.timeout)
        if url != client.base_url or timeout_differs:
            # same token and model; the old client stays open for a chat panel or variable that still holds it
            client = client.with_options(base_url=url, timeout=self.timeout)
            set_client(client, close_previous=False)
        return client

    @property
    def history(self) -> list[dict[str, Any]]:
        """The messages %%lm --chat sends again (prompts and answers, oldest first)."""
        return self.memory.messages

    def _fail(self, err: BaseException, text: str | None = None) -> BaseException:
        """Remember ``err`` for %lm_last_error and return it ready to raise as one line: ``text``, else the advice
        built from the exception's fields. The exception itself is left as it was raised."""
        self.last_error = err
        return one_line(err, text if text is not None else self._advice(err))

    def _advice(self, err: BaseException) -> str:
        if isinstance(err, ModelNotFoundError) and err.available:
            # the core's message advises set_current_model(); here the verb is %lm_use
            return self._unknown_model_text(err.model or "?", err.available, self.client.base_url)
        return error_message(err)

    def _guard(self, action: Callable[[], _T]) -> _T:
        try:
            return action()
        except LMStudioError as err:
            self._fail(err)
            raise

    @property
    def _shell(self) -> InteractiveShell:
        if self.shell is None:
            raise UsageError("These magics need an IPython shell: %load_ext lm_notebook")
        return self.shell

    def _store(self, name: str | None, value: Any) -> None:
        if name:
            self._shell.user_ns[name] = value

    @staticmethod
    def _check_name(name: str | None) -> None:
        if name is not None and not name.isidentifier():
            raise UsageError(f"-o needs a Python variable name, not {name!r}.")

    # --- %lm_models -----------------------------------------------------------------------------------------------
    @magic_arguments()
    @argument("-o", "--output", metavar="NAME", help="Store the list of ModelInfo in this variable.")
    @line_magic
    def lm_models(self, line: str = "") -> None:
        """Ask LM Studio which models it has: id, type, state, format, quantization, architecture, context length.

        The current model (the one %%lm uses) is marked.
        """
        args = parse_argstring(LMMagics.lm_models, line)
        self._check_name(args.output)
        client = self.client
        models: list[ModelInfo] = self._guard(client.list_models)
        self._store(args.output, models)
        show_bundle(model_table(models, current=client.current_model, base_url=client.base_url))

    # --- %lm_use --------------------------------------------------------------------------------------------------
    @magic_arguments()
    @argument("model", nargs="?", help="A model id from %%lm_models.")
    @line_magic
    def lm_use(self, line: str = "") -> None:
        """Choose the current model: the one %%lm, the chat panel and compare use without -m."""
        args = parse_argstring(LMMagics.lm_use, line)
        client = self.client
        if not args.model:
            current = client.current_model or "none (choose one with %lm_use MODEL; %lm_models lists them)"
            show_bundle({"text/plain": f"Current model: {current}"})
            return
        models: list[ModelInfo] = self._guard(client.list_models)
        wanted = args.model.strip()
        chosen = next((m for m in models if m.id == wanted or wanted in m.instance_ids), None)
        if chosen is None:
            ids = [m.id for m in models]
            text = self._unknown_model_text(wanted, ids, client.base_url)
            raise self._fail(ModelNotFoundError(text, status_code=404, model=wanted, available=ids))
        client.set_current_model(wanted)
        if chosen.loaded:
            state = "loaded" + (f", context {chosen.context_length}" if chosen.context_length else "")
        elif chosen.state is None:
            state = "state not reported by this server"
        else:
            state = "not loaded yet: LM Studio loads it on first use"
        show_bundle({"text/plain": f"Current model: {wanted} ({state})"})

    @staticmethod
    def _unknown_model_text(wanted: str, ids: list[str], base_url: str) -> str:
        """What %lm_use and %%lm -m say about an id the server does not have, in the magics' verbs."""
        if ids:
            shown = ", ".join(ids[:20]) + (" …" if len(ids) > 20 else "")
            guess = suggest_model(wanted, ids)
            hint = f' Did you mean "{guess}"?' if guess else ""
            text = (
                f'LM Studio at {base_url} has no model "{wanted}".{hint} Available: {shown}. '
                "Choose one with %lm_use MODEL or -m MODEL."
            )
        else:
            text = (
                f'LM Studio at {base_url} has no model "{wanted}" and lists none: download one in LM Studio '
                "(Discover tab) or with `lms get <model>`."
            )
        return text

    # --- %lm_config / %lm_reset / %lm_last_error ---------------------------------------------------------------------
    @line_magic
    def lm_config(self, line: str = "") -> None:
        """Show the server address, current model and the defaults %%lm uses (change them with %config LMMagics.…)."""
        client = self.client
        rows = [
            ("base_url", client.base_url),
            ("current model", client.current_model or "(none: %lm_use MODEL)"),
            ("api token", "set" if client.has_api_key else "not set"),
            ("temperature", "model default" if self.temperature is None else str(self.temperature)),
            ("max_tokens", "no limit" if self.max_tokens is None else str(self.max_tokens)),
            ("system", self.system or "(none)"),
            ("default_format", self.default_format),
            ("timeout", f"{client.timeout.read:g} s" if client.timeout.read is not None else "none"),
            ("chat_memory", f"{self.chat_memory} exchanges ({self.memory.exchanges} remembered)"),
        ]
        show_bundle(_settings_bundle(rows))

    @line_magic
    def lm_reset(self, line: str = "") -> None:
        """Forget the %%lm --chat conversation."""
        n = self.memory.clear()
        show_bundle({"text/plain": f"Conversation cleared ({n} exchange{'s' if n != 1 else ''} forgotten)."})

    @line_magic
    def lm_last_error(self, line: str = "") -> None:
        """The full traceback of the last error an lm magic reported in one line."""
        err = self.last_error
        if err is None:
            sys.stdout.write("No lm magic has failed in this session.\n")
            return
        tb = self._shell.InteractiveTB
        sys.stdout.write(tb.stb2text(tb.structured_traceback(type(err), err, err.__traceback__)) + "\n")

    # --- %%lm -------------------------------------------------------------------------------------------------------
    @magic_arguments()
    @argument("-m", "--model", help="Model id for this cell (default: the current one, see %%lm_use).")
    @argument("-s", "--system", help="System prompt for this cell (quote it).")
    @argument("-t", "--temperature", type=float, help="Sampling temperature.")
    @argument("--max-tokens", type=int, metavar="N", help="Longest answer in tokens.")
    @argument("--seed", type=int, metavar="N", help="Seed for reproducible sampling.")
    @argument(
        "-f",
        "--format",
        choices=list(FORMATS),
        help="markdown (default): rendered; text: plain; code: a fenced block; json: parsed and shown as JSON "
        "(the value is in result.parsed).",
    )
    @argument("-o", "--output", metavar="NAME", help="Store the ChatResult in this variable.")
    @argument("--chat", action="store_true", help="Continue the conversation of earlier --chat cells (%%lm_reset).")
    @argument("--no-stream", action="store_true", help="Wait for the whole answer instead of streaming it.")
    @argument("--no-interpolate", action="store_true", help="Send {braces} as written.")
    @cell_magic
    def lm(self, line: str, cell: str) -> RenderedChatResult | None:
        """Send the cell to the model and stream the answer into the cell's output.

        {name} and {expr[0]} in the prompt are filled from your variables; braces that name nothing stay as they
        are. The answer is the cell's value (and stored with -o NAME). Interrupt the kernel to stop an answer: what
        arrived stays, marked as stopped.
        """
        args = parse_argstring(LMMagics.lm, line)
        self._check_name(args.output)
        prompt = cell.strip("\n")
        if not prompt.strip():
            raise UsageError("The %%lm cell is empty: write the prompt on the lines below %%lm.")
        if not args.no_interpolate:
            try:
                prompt = fill(prompt, self._shell.user_ns)
            except InterpolationError as err:
                self.last_error = err
                raise UsageError(str(err)) from err
        fmt: AnswerFormat = args.format or self.default_format
        client = self.client
        model = args.model or client.current_model
        if not model:
            raise UsageError(
                "No model selected: choose one with %lm_use MODEL (%lm_models lists them) or pass -m MODEL."
            )
        messages = self.memory.prompt(prompt, system=args.system if args.system is not None else self.system,
                                      chat=args.chat)
        params = {
            "temperature": args.temperature if args.temperature is not None else self.temperature,
            "max_tokens": args.max_tokens if args.max_tokens is not None else self.max_tokens,
            "seed": args.seed,
        }
        if args.no_stream:
            return self._answer_blocking(client, messages, model, params, fmt, args)
        return self._answer_streaming(client, messages, model, params, fmt, args)

    def _remember(self, sent: list[dict[str, Any]], result: ChatResult, chat: bool) -> None:
        if chat:
            self.memory.remember(sent, result, keep=self.chat_memory)

    def _answer_blocking(
        self,
        client: LMStudioClient,
        messages: list[dict[str, Any]],
        model: str,
        params: dict[str, Any],
        fmt: AnswerFormat,
        args: Any,
    ) -> RenderedChatResult | None:
        try:
            result = client.chat(messages, model=model, **params)
        except LMStudioError as err:
            self._fail(err)
            raise
        except KeyboardInterrupt as err:
            self._fail(err, "stopped before the answer arrived; the connection is closed.")
            raise
        self._remember(messages, result, args.chat)
        return self._deliver(result, fmt, args, already_written=False)

    def _answer_streaming(
        self,
        client: LMStudioClient,
        messages: list[dict[str, Any]],
        model: str,
        params: dict[str, Any],
        fmt: AnswerFormat,
        args: Any,
    ) -> RenderedChatResult | None:
        interval = 1.0 / self.updates_per_second if self.updates_per_second > 0 else 0.1
        view = make_view(self._shell, fmt, model, interval=interval)
        try:
            stream = client.stream_chat(messages, model=model, **params)
        except LMStudioError as err:
            self._fail(err)
            raise
        try:
            result = stream_into(stream, view)
        except KeyboardInterrupt as err:
            partial = stream.result()
            self._remember(messages, partial, args.chat)
            shown = RenderedChatResult.of(partial, fmt)
            self._store(args.output, shown)
            view.show_final(partial, fmt, note="stopped")
            where = f" and in {args.output}" if args.output else ""
            self._fail(err, f"stopped by you; the partial answer is shown above{where}.")
            raise
        except LMStudioError as err:
            received = err.partial
            if received is not None and (received.content or received.reasoning):
                self._store(args.output, RenderedChatResult.of(received, fmt))
                view.show_final(received, fmt, note="incomplete (error below)")
            self._fail(err)
            raise
        self._remember(messages, result, args.chat)
        written = isinstance(view, TerminalStreamView) and view.wrote_answer
        return self._deliver(result, fmt, args, already_written=written, view=view)

    def _deliver(
        self, result: ChatResult, fmt: AnswerFormat, args: Any, *, already_written: bool, view: Any = None
    ) -> RenderedChatResult | None:
        """Store and return the answer; in a terminal whose text is already written, add only the footer."""
        try:
            rendered = finish_as(result, fmt)
        except AnswerFormatError as err:
            self._store(args.output, err.result)
            if already_written and view is not None:
                view.show_final(err.result, "text")
            else:
                show_bundle(err.result._repr_mimebundle_())
            self._fail(err)
            raise
        self._store(args.output, rendered)
        if already_written and view is not None:
            view.show_final(rendered, fmt, parsed=rendered.parsed)
            return None
        return rendered


def _settings_bundle(rows: list[tuple[str, str]]) -> dict[str, Any]:
    import html

    width = max(len(k) for k, _ in rows)
    plain = "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
    cells = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    return {"text/plain": plain, "text/html": f"<table>{cells}</table>"}
