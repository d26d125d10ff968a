"""``%lm_chat``: show a chat panel bound to the kernel's shared client and current model.

``lm_notebook.magics.register`` calls :func:`register`; the panel itself lives in :mod:`lm_notebook.chat.panel`
(imported on first use, so loading the extension stays cheap).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from lm_notebook.client.clients import LMStudioClient
from lm_notebook.client.errors import LMStudioRequestError, ModelNotFoundError
from lm_notebook.magics.advice import unknown_model_text
from lm_notebook.magics.arguments import argument, magic_arguments, parse_argstring
from lm_notebook.magics.lm import LMMagics, lm_magics_of, magics_client
from lm_notebook.magics.registry import remove_magics

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from lm_notebook.chat.panel import ChatPanel


@magics_class
class ChatMagics(Magics):
    """The chat panel's magic."""

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.panels: list[ChatPanel] = []  # every panel this kernel's %lm_chat made, oldest first

    @magic_arguments()
    @argument("-m", "--model", help="Model id (default: the current one, as %%lm_use set it).")
    @argument("-s", "--system", help="System prompt (quote it).")
    @argument("-t", "--temperature", type=float, help="Sampling temperature, 0 to 2 (default 0.7).")
    @argument("--max-tokens", type=int, help="Longest answer in tokens, 1 and up; -1 (the default) = no limit.")
    @argument("--integration", action="append", metavar="ID",
              help="An MCP integration LM Studio 0.4 runs (mcp/playwright); repeatable. Its calls show as blocks.")
    @argument("-o", "--output", metavar="NAME", help="Also store the panel in this variable (send, to_dataframe...).")
    @line_magic
    def lm_chat(self, line: str = "") -> None:
        """Open a chat panel: type (Enter sends, Shift+Enter = new line), Stop an answer, switch model, export.

        It uses the same client and current model as %%lm. With -o NAME the panel is also a variable:
        NAME.history, NAME.to_markdown(), NAME.to_dataframe(), NAME.send("...").
        """
        args = parse_argstring(ChatMagics.lm_chat, line)
        if args.output is not None and not args.output.isidentifier():
            raise UsageError(f"-o needs a Python variable name, not {args.output!r}.")
        from IPython.display import display

        from lm_notebook.chat.panel import ChatPanel

        defaults = self._lm_magics_defaults()
        params: dict[str, Any] = {}
        temperature = args.temperature if args.temperature is not None else defaults.get("temperature")
        if temperature is not None:
            params["temperature"] = temperature
        max_tokens = args.max_tokens if args.max_tokens is not None else defaults.get("max_tokens")
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        client = self._client()
        # the panel checks its settings and a named model (against the server's list) itself; here its refusal
        # becomes the magic's one line, in the magics' verbs
        try:
            panel = ChatPanel(client, model=args.model, system=args.system or defaults.get("system") or None,
                              integrations=args.integration, **params)
        except ModelNotFoundError as err:
            wanted = err.model or args.model or "?"
            raise UsageError(unknown_model_text(wanted, err.available, client.base_url)) from err
        except LMStudioRequestError as err:
            raise UsageError(str(err)) from err
        self.panels.append(panel)
        if args.output and self.shell is not None:
            self.shell.user_ns[args.output] = panel
        display(panel)  # type: ignore[no-untyped-call]

    def _lm_magics(self) -> LMMagics | None:
        return lm_magics_of(self.shell)

    def _client(self) -> LMStudioClient:
        """The client %%lm uses (it follows %config LMMagics.base_url), else the shared one."""
        return magics_client(self.shell)

    def _lm_magics_defaults(self) -> dict[str, Any]:
        """Settings made with %config LMMagics.* apply to the panel too."""
        magics = self._lm_magics()
        if magics is None:
            return {}
        return {"temperature": magics.temperature, "max_tokens": magics.max_tokens, "system": magics.system}


def register(ipython: InteractiveShell) -> None:
    """Register :class:`ChatMagics` with ``ipython`` (a second call does nothing)."""
    if "ChatMagics" in ipython.magics_manager.registry:
        return
    ipython.register_magics(ChatMagics(shell=ipython))


def unregister(ipython: InteractiveShell) -> None:
    """Remove ``%lm_chat`` and close the panels it opened."""
    magics = ipython.magics_manager.registry.get("ChatMagics")
    if magics is None:
        return
    remove_magics(ipython, "ChatMagics")
    for panel in magics.panels:
        panel.close()
