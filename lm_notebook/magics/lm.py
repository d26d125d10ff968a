"""IPython magics: ``%lm_models``, ``%lm_use``, ``%lm_config``, ``%%lm``, ``%lm_reset``, ``%lm_last_error``.

``%load_ext lm_notebook`` registers them. Settings are traitlets (:mod:`~lm_notebook.magics.settings`), so ``%config
LMMagics.temperature = 0.2`` and ``ipython_config.py`` both work, and a bad value is refused when it is set. Every
magic talks to the kernel's shared client (:func:`lm_notebook.get_client`), so the model chosen with ``%lm_use`` is the
one the chat panel and ``compare`` use too.

This file holds only the magics: what they share (the client, model states, one-line failures) is
:class:`~lm_notebook.magics.host.MagicsHost`; a ``%%lm`` cell is read by :mod:`~lm_notebook.magics.cell_request` and
answered by :mod:`~lm_notebook.magics.answer_cell` (``--tools``: :mod:`~lm_notebook.magics.tool_cells`). Arguments a
magic does not take are a ``UsageError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from IPython.core.magic import cell_magic, line_magic, magics_class

from lm_notebook.client.errors import ModelNotFoundError
from lm_notebook.client.session import get_client
from lm_notebook.display.answer import show_bundle
from lm_notebook.display.model_table import model_table
from lm_notebook.display.render import FORMATS, RenderedChatResult
from lm_notebook.magics.advice import FAKE_SERVER_TEXT, unknown_model_text
from lm_notebook.magics.answer_cell import answer_blocking, answer_streaming
from lm_notebook.magics.arguments import argument, magic_arguments, parse_argstring
from lm_notebook.magics.cell_request import read_cell
from lm_notebook.magics.host import MagicsHost
from lm_notebook.magics.tool_cells import tools_cell

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from lm_notebook.client.clients import LMStudioClient


@magics_class
class LMMagics(MagicsHost):
    """Magics for LM Studio. Settings: ``%config LMMagics`` lists them."""

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
    @argument("--max-image-edge", type=int, default=2048, metavar="N",
              help="Downscale -i images whose longer side exceeds N pixels (default 2048).")
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
        req = read_cell(self, args, cell)
        if args.tools:
            return tools_cell(self, req, args)
        if args.no_stream:
            return answer_blocking(self, req, args)
        return answer_streaming(self, req, args)


def lm_magics_of(shell: InteractiveShell | None) -> LMMagics | None:
    """The shell's %%lm magics (their settings: %config LMMagics.*), None when they are not loaded."""
    magics = shell.magics_manager.registry.get("LMMagics") if shell is not None else None
    return magics if isinstance(magics, LMMagics) else None


def magics_client(shell: InteractiveShell | None) -> LMStudioClient:
    """The client %%lm uses (it follows %config LMMagics.base_url), else the shared one."""
    magics = lm_magics_of(shell)
    return magics.client if magics is not None else get_client()
