"""IPython magics: ``%lm_models``, ``%lm_use``, ``%lm_config``, ``%%lm``, ``%lm_reset``, ``%lm_last_error``.

``%load_ext lm_notebook`` registers them. Settings are traitlets (:mod:`~lm_notebook.magics.settings`), so ``%config
LMMagics.temperature = 0.2`` and ``ipython_config.py`` both work, and a bad value is refused when it is set. Every
magic talks to the kernel's shared client (:func:`lm_notebook.get_client`), so the model chosen with ``%lm_use`` is the
one the chat panel and ``compare`` use too.

Failures are one line, not a traceback: the exception's actionable message, with advice in the magics' own verbs
built from its fields (:mod:`~lm_notebook.magics.advice`); the exception is never edited. ``%lm_last_error`` shows the
traceback. Arguments a magic does not take are a ``UsageError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import cell_magic, line_magic, magics_class
from traitlets import observe

from lm_notebook.client.clients import LMStudioClient
from lm_notebook.client.errors import (
    AnswerFormatError,
    ContextLengthExceededError,
    LMStudioAPIError,
    LMStudioError,
    LMStudioRequestError,
    ModelNotFoundError,
)
from lm_notebook.client.interpolation import InterpolationError, fill
from lm_notebook.client.session import get_client, set_client
from lm_notebook.client.settings import parse_base_url, resolve_timeout
from lm_notebook.client.types import ChatResult, ModelInfo
from lm_notebook.display.answer import (
    NotebookStreamView,
    StreamView,
    TerminalStreamView,
    make_view,
    show_bundle,
    stream_into,
)
from lm_notebook.display.model_table import model_table
from lm_notebook.display.render import FORMATS, AnswerFormat, RenderedChatResult, finish_as
from lm_notebook.display.thumbnails import ThumbnailedView, thumbnails_bundle
from lm_notebook.magics.advice import FAKE_SERVER_TEXT, chat_overflow_advice, retry_advice, unknown_model_text
from lm_notebook.magics.arguments import argument, error_message, magic_arguments, one_line, parse_argstring
from lm_notebook.magics.cell_inputs import cell_images, cell_schema
from lm_notebook.magics.memory import ChatMemory
from lm_notebook.magics.settings import LMSettings, checked_max_tokens, checked_temperature
from lm_notebook.magics.tool_cells import tools_cell

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

_T = TypeVar("_T")

NOT_LOADED_STATES = ("not-loaded", "loading")  # a request to such a model waits for a just-in-time load


@magics_class
class LMMagics(LMSettings):
    """Magics for LM Studio. Settings: ``%config LMMagics`` lists them."""

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        self.memory = ChatMemory()  # what %%lm --chat sends again (made first: the config may set chat_memory)
        super().__init__(shell=shell, **kwargs)
        self.last_error: BaseException | None = None
        # (base URL, model id) -> state, from the last listing (%lm_models, %lm_use) and the answers since: whether a
        # cell will wait for a just-in-time load is known without asking the server before the request
        self._model_states: dict[tuple[str, str], str | None] = {}
        self._made_for: tuple[LMStudioClient, str] | None = None  # the client this made, and the base_url it was for

    # --- shared plumbing --------------------------------------------------------------------------------------------
    @property
    def client(self) -> LMStudioClient:
        """The shared client, replaced when ``base_url`` or ``timeout`` were configured to something else."""
        client = get_client()
        if self._wants_new_client(client):
            # same token and model; the old client stays open for a chat panel or variable that still holds it.
            # The configured URL with a user and password given in it: they are the new client's to send.
            url = self.configured_url()
            client = client.with_options(base_url=url, timeout=self.timeout)
            set_client(client, close_previous=False)
            self._made_for = (client, url or "")
        return client

    def _wants_new_client(self, client: LMStudioClient) -> bool:
        if self.timeout is not None and resolve_timeout(self.timeout).read != client.timeout.read:
            return True
        url = self.configured_url()
        if not url:
            return False
        if self._made_for is not None and self._made_for[0] is client:
            return bool(self._made_for[1] != url)
        wanted = parse_base_url(url)
        return wanted.base_url != client.base_url or wanted.credentials is not None

    @observe("chat_memory")
    def _forget_beyond_memory(self, change: dict[str, Any]) -> None:
        self.memory.keep_last(change["new"])  # lowered: the next --chat cell already sends fewer exchanges

    @property
    def history(self) -> list[dict[str, Any]]:
        """The messages %%lm --chat sends again (prompts and answers, oldest first)."""
        return self.memory.messages

    def _fail(self, err: BaseException, text: str | None = None) -> BaseException:
        """Remember ``err`` for %lm_last_error and return it ready to raise as one line: ``text``, else the advice
        built from the exception's fields. The exception itself is left as it was raised."""
        self.last_error = err
        return one_line(err, text if text is not None else self._advice(err))

    def _advice(self, err: BaseException, *, remembered: int = 0) -> str:
        """The line shown for ``err``; ``remembered``: the --chat exchanges the failed cell sent before its prompt."""
        if isinstance(err, ModelNotFoundError) and err.available:
            # the core's message advises set_current_model(); here the verb is %lm_use
            return unknown_model_text(err.model or "?", err.available, self.client.base_url)
        extra = ""
        if isinstance(err, ContextLengthExceededError):
            extra = chat_overflow_advice(err, exchanges=remembered, chat_memory=self.chat_memory)
        elif isinstance(err, LMStudioAPIError):
            extra = retry_advice(err)
        return f"{error_message(err)} {extra}" if extra else error_message(err)

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

    def _listed(self, client: LMStudioClient) -> list[ModelInfo]:
        """The server's models, their states remembered for %%lm's "Loading …"."""
        models: list[ModelInfo] = self._guard(client.list_models)
        states = {key: s for key, s in self._model_states.items() if key[0] != client.base_url}
        for m in models:
            for name in (m.id, *m.instance_ids):
                states[(client.base_url, name)] = m.state
        self._model_states = states
        return models

    def _fake_server(self, client: LMStudioClient) -> bool | None:
        """Whether the bundled fake server answers; asks who answers the first time (None: nobody answers)."""
        if client.server_is_fake is None:
            self._guard(client.is_running)
        return client.server_is_fake

    # --- %lm_models -----------------------------------------------------------------------------------------------
    @magic_arguments()
    @argument("-o", "--output", metavar="NAME", help="Store the list of ModelInfo in this variable.")
    @argument("--all", nargs="*", default=None, metavar="ENDPOINT",
              help="Every endpoint's models: LMMagics.endpoints, or the endpoints named (URLs, or name=url).")
    @line_magic
    def lm_models(self, line: str = "") -> None:
        """Ask LM Studio which models it has: id, type, state, format, quantization, architecture, context length.

        The current model (the one %%lm uses) is marked. ``--all``: every endpoint's (``%config
        LMMagics.endpoints``), one table each; ``-o`` then stores a dict {endpoint: [ModelInfo, ...]}.
        """
        args = parse_argstring(LMMagics.lm_models, line)
        self._check_name(args.output)
        if args.all is not None:
            from lm_notebook.magics.endpoints import line_endpoints, list_all

            chosen = line_endpoints(args.all) if args.all else self.endpoints
            listed, bundle = list_all(chosen, get_client().current_model)
            self._store(args.output, listed)
            show_bundle(bundle)
            return
        client = self.client
        fake = self._fake_server(client)
        models = self._listed(client)
        self._store(args.output, models)
        show_bundle(model_table(models, current=client.current_model, base_url=client.base_url, fake_server=bool(fake)))

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
        models = self._listed(client)
        wanted = args.model.strip()
        chosen = next((m for m in models if m.id == wanted or wanted in m.instance_ids), None)
        if chosen is None:
            ids = [m.id for m in models]
            text = unknown_model_text(wanted, ids, client.base_url)
            raise self._fail(ModelNotFoundError(text, status_code=404, model=wanted, available=ids))
        client.set_current_model(wanted)
        if chosen.loaded:
            state = "loaded" + (f", context {chosen.context_length}" if chosen.context_length else "")
        elif chosen.state is None:
            state = "state not reported by this server"
        else:
            state = "not loaded yet: LM Studio loads it on first use"
        show_bundle({"text/plain": f"Current model: {wanted} ({state})"})

    # --- %lm_config / %lm_reset / %lm_last_error ---------------------------------------------------------------------
    @magic_arguments()
    @line_magic
    def lm_config(self, line: str = "") -> None:
        """Show the server address (and who answers there), the current model and the defaults %%lm uses (change them
        with %config LMMagics.…)."""
        parse_argstring(LMMagics.lm_config, line)
        client = self.client
        fake = self._fake_server(client)
        if fake:
            server = FAKE_SERVER_TEXT[0].upper() + FAKE_SERVER_TEXT[1:] + "."
        elif fake is None:
            server = "nothing answers there: start LM Studio's server (Developer tab, or `lms server start`)"
        else:
            server = "a real server (not the bundled fake)"
        show_bundle(self.describe(client, remembered=self.memory.exchanges, server=server))

    @magic_arguments()
    @line_magic
    def lm_reset(self, line: str = "") -> None:
        """Forget the %%lm --chat conversation."""
        parse_argstring(LMMagics.lm_reset, line)
        n = self.memory.clear()
        show_bundle({"text/plain": f"Conversation cleared ({n} exchange{'s' if n != 1 else ''} forgotten)."})

    @magic_arguments()
    @line_magic
    def lm_last_error(self, line: str = "") -> None:
        """The full traceback of the last error an lm magic reported in one line."""
        parse_argstring(LMMagics.lm_last_error, line)
        err = self.last_error
        if err is None:
            show_bundle({"text/plain": "No lm magic has failed in this session."})
            return
        tb = self._shell.InteractiveTB
        show_bundle({"text/plain": tb.stb2text(tb.structured_traceback(type(err), err, err.__traceback__))})

    # --- %%lm -------------------------------------------------------------------------------------------------------
    @magic_arguments()
    @argument("-m", "--model", help="Model id for this cell (default: the current one, see %%lm_use).")
    @argument("-s", "--system", help="System prompt for this cell (quote it).")
    @argument("-t", "--temperature", type=float, help="Sampling temperature, 0 to 2.")
    @argument("--max-tokens", type=int, metavar="N", help="Longest answer in tokens (1 and up; -1: no limit).")
    @argument("--seed", type=int, metavar="N", help="Seed for reproducible sampling.")
    @argument("--integration", action="append", metavar="ID",
              help="An LM Studio 0.4 MCP integration the server may use (mcp/playwright); repeatable.")
    @argument(
        "-f",
        "--format",
        choices=list(FORMATS),
        help="markdown (default): rendered; text: plain; code: the fenced blocks (all in result.code); json: parsed "
        "and shown as JSON (the value is in result.parsed).",
    )
    @argument("-o", "--output", metavar="NAME", help="Store the ChatResult in this variable.")
    @argument("-i", "--image", action="append", dest="images", metavar="NAME",
              help="An image for a vision model: a variable (matplotlib Figure, PIL image, numpy array, bytes, path) "
              "or a file path; repeat for several. Shown as thumbnails above the answer.")
    @argument("--schema", metavar="NAME", help="A variable holding a pydantic model class or a JSON-schema dict: the "
              "answer is JSON that follows it (shown as a table or JSON; the object is in result.parsed).")
    @argument("--chat", action="store_true", help="Continue the conversation of earlier --chat cells (%%lm_reset).")
    @argument("--no-stream", action="store_true", help="Wait for the whole answer instead of streaming it.")
    @argument("--no-interpolate", action="store_true", help="Send {braces} as written.")
    @argument("--tools", metavar="F,G", help="Let the model call these functions of yours; -o keeps the ActResult.")
    @cell_magic
    def lm(self, line: str, cell: str) -> RenderedChatResult | None:
        """Send the cell to the model and stream the answer into the cell's output.

        {name} and {expr[0]} in the prompt are filled from your variables; braces that name nothing stay as they
        are. The answer is the cell's value (and stored with -o NAME). Interrupt the kernel to stop an answer: what
        arrived stays, marked as stopped.
        """
        args = parse_argstring(LMMagics.lm, line)
        self._check_name(args.output)
        try:
            params: dict[str, Any] = {
                "temperature": checked_temperature(args.temperature, "-t/--temperature", unset=""),
                "max_tokens": checked_max_tokens(args.max_tokens, "--max-tokens", unset=""),
            }
        except LMStudioRequestError as err:
            raise UsageError(str(err)) from None
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
        system = args.system if args.system is not None else self.system
        images = cell_images(args.images, self._shell.user_ns)
        schema = cell_schema(args.schema, self._shell.user_ns)
        if schema is not None and args.format is None:
            fmt = "json"  # the JSON grows live, then the parsed object shows
        messages = self.memory.prompt(prompt, system=system, chat=args.chat)
        params = {
            "temperature": self.temperature if params["temperature"] is None else params["temperature"],
            "max_tokens": self.max_tokens if params["max_tokens"] is None else params["max_tokens"],
            "seed": args.seed,
            "images": images or None,
            "schema": schema,
            "integrations": list(args.integration) if args.integration else None,
        }
        # on LM Studio 0.4 the native route shows the load's progress and the server's own stats (asked once a client)
        client.supports_native_chat()
        if args.tools:
            return tools_cell(self, client, messages, model, params, fmt, args)
        if args.no_stream:
            return self._answer_blocking(client, messages, model, params, fmt, args)
        return self._answer_streaming(client, messages, model, params, fmt, args)

    def _remember(self, client: LMStudioClient, model: str, sent: list[dict[str, Any]], result: ChatResult,
                  chat: bool) -> None:
        if result.content or result.reasoning:  # it answered, so it is loaded now: the next cell is no "Loading …"
            self._model_states[(client.base_url, model)] = "loaded"
        if chat:
            self.memory.remember(sent, result, keep=self.chat_memory)

    def _failed(self, err: LMStudioError, args: Any) -> BaseException:
        return self._fail(err, self._advice(err, remembered=self.memory.exchanges if args.chat else 0))

    def _answer_blocking(
        self,
        client: LMStudioClient,
        messages: list[dict[str, Any]],
        model: str,
        params: dict[str, Any],
        fmt: AnswerFormat,
        args: Any,
    ) -> RenderedChatResult | None:
        if params["images"]:
            show_bundle(thumbnails_bundle(params["images"]))
        try:
            result = client.chat(messages, model=model, **params)
        except AnswerFormatError as err:
            return self._format_failed(client, err, args, None, already_written=False)
        except LMStudioError as err:
            self._failed(err, args)
            raise
        except KeyboardInterrupt as err:
            self._fail(err, "stopped before the answer arrived; the connection is closed.")
            raise
        self._remember(client, model, messages, result, args.chat)
        return self._deliver(client, result, fmt, args, already_written=False)

    def _answer_streaming(
        self,
        client: LMStudioClient,
        messages: list[dict[str, Any]],
        model: str,
        params: dict[str, Any],
        fmt: AnswerFormat,
        args: Any,
    ) -> RenderedChatResult | None:
        interval = 1.0 / self.updates_per_second
        loading = self._model_states.get((client.base_url, model)) in NOT_LOADED_STATES
        # a fresh client asks who answers before its first request anyway: asked now, the live footer says it too
        self._fake_server(client)
        view = make_view(
            self._shell, fmt, model, interval=interval, loading=loading, fake_server=client.server_is_fake is True
        )
        try:
            stream = client.stream_chat(messages, model=model, **params)
        except LMStudioError as err:
            self._failed(err, args)
            raise
        if isinstance(view, NotebookStreamView):  # it repaints a few times a second: one read per repaint or so
            stream.coalesce_reads(view.read_interval)
        try:
            try:
                images = params["images"]
                shown: StreamView = ThumbnailedView(
                    view, images, again_at_stop=isinstance(view, NotebookStreamView), show=show_bundle
                ) if images else view
                result = stream_into(stream, shown)
            finally:
                # a fresh client learns who answers with its first request: the final footer says it
                if isinstance(view, (NotebookStreamView, TerminalStreamView)):
                    view.fake_server = client.server_is_fake is True
        except KeyboardInterrupt as err:
            partial = stream.result()
            self._remember(client, model, messages, partial, args.chat)
            self._store(args.output, RenderedChatResult.of(partial, fmt, fake_server=client.server_is_fake is True))
            view.show_final(partial, fmt, note="stopped")
            where = f" and in {args.output}" if args.output else ""
            self._fail(err, f"stopped by you; the partial answer is shown above{where}.")
            raise
        except AnswerFormatError as err:
            return self._format_failed(client, err, args, view, already_written=isinstance(view, TerminalStreamView))
        except LMStudioError as err:
            received = err.partial
            if received is not None and (received.content or received.reasoning):
                fake = client.server_is_fake is True
                self._store(args.output, RenderedChatResult.of(received, fmt, fake_server=fake))
                view.show_final(received, fmt, note="incomplete (error below)")
            self._failed(err, args)
            raise
        self._remember(client, model, messages, result, args.chat)
        written = isinstance(view, TerminalStreamView) and view.wrote_answer
        return self._deliver(client, result, fmt, args, already_written=written, view=view)

    def _deliver(
        self,
        client: LMStudioClient,
        result: ChatResult,
        fmt: AnswerFormat,
        args: Any,
        *,
        already_written: bool,
        view: Any = None,
    ) -> RenderedChatResult | None:
        """Store and return the answer; in a terminal whose text is already written, add only the footer."""
        try:
            # the answer's footer says when it is the bundled fake server's (known once the client has greeted it)
            rendered = finish_as(result, fmt, fake_server=client.server_is_fake is True)
        except AnswerFormatError as err:
            return self._format_failed(client, err, args, view, already_written=already_written)
        self._store(args.output, rendered)
        if already_written and view is not None:
            view.show_final(rendered, fmt, parsed=rendered.parsed)
            return None
        return rendered

    def _format_failed(
        self, client: LMStudioClient, err: AnswerFormatError, args: Any, view: Any, *, already_written: bool
    ) -> NoReturn:
        """The answer is not the JSON asked for (-f json, --schema): show and keep its raw text, then the error."""
        kept = RenderedChatResult.of(err.result, "text", fake_server=client.server_is_fake is True)
        self._store(args.output, kept)
        if already_written and view is not None:
            view.show_final(kept, "text")
        else:
            show_bundle(kept._repr_mimebundle_())
        self._fail(err)
        raise err
