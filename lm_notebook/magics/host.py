"""What every ``LMMagics`` magic shares: the kernel's client as configured, what it knows of the server's models,
and failures as one line.

:class:`MagicsHost` is the base of :class:`~lm_notebook.magics.lm.LMMagics` (which holds only the magics) and what
the ``%%lm`` cell's runners are given (:mod:`~lm_notebook.magics.answer_cell`, :mod:`~lm_notebook.magics.tool_cells`).
Failures are one line, not a traceback: the exception's actionable message, with advice in the magics' own verbs
built from its fields (:mod:`~lm_notebook.magics.advice`); the exception is never edited. ``%lm_last_error`` shows
the traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from IPython.core.error import UsageError
from traitlets import observe

from lm_notebook.client.clients import LMStudioClient
from lm_notebook.client.errors import ContextLengthExceededError, LMStudioAPIError, LMStudioError, ModelNotFoundError
from lm_notebook.client.session import get_client, set_client
from lm_notebook.client.settings import parse_base_url, resolve_timeout
from lm_notebook.client.types import ChatResult, ModelInfo
from lm_notebook.magics.advice import chat_overflow_advice, retry_advice, unknown_model_text
from lm_notebook.magics.arguments import error_message, one_line
from lm_notebook.magics.memory import ChatMemory
from lm_notebook.magics.settings import LMSettings

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

_T = TypeVar("_T")

NOT_LOADED_STATES = ("not-loaded", "loading")  # a request to such a model waits for a just-in-time load


class MagicsHost(LMSettings):
    """The settings (:class:`~lm_notebook.magics.settings.LMSettings`) and the state the lm magics share."""

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        self.memory = ChatMemory()  # what %%lm --chat sends again (made first: the config may set chat_memory)
        super().__init__(shell=shell, **kwargs)
        self.last_error: BaseException | None = None
        # (base URL, model id) -> state, from the last listing (%lm_models, %lm_use) and the answers since: whether a
        # cell will wait for a just-in-time load is known without asking the server before the request
        self._model_states: dict[tuple[str, str], str | None] = {}
        self._made_for: tuple[LMStudioClient, str] | None = None  # the client this made, and the base_url it was for

    # --- the client -------------------------------------------------------------------------------------------------
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

    def _fake_server(self, client: LMStudioClient) -> bool | None:
        """Whether the bundled fake server answers; asks who answers the first time (None: nobody answers)."""
        if client.server_is_fake is None:
            self._guard(client.is_running)
        return client.server_is_fake

    # --- what is known of the models ------------------------------------------------------------------------------
    def _listed(self, client: LMStudioClient) -> list[ModelInfo]:
        """The server's models, their states remembered for %%lm's "Loading …"."""
        models: list[ModelInfo] = self._guard(client.list_models)
        states = {key: s for key, s in self._model_states.items() if key[0] != client.base_url}
        for m in models:
            for name in (m.id, *m.instance_ids):
                states[(client.base_url, name)] = m.state
        self._model_states = states
        return models

    def _will_load(self, client: LMStudioClient, model: str) -> bool:
        """The model is known not to be loaded: the request waits for a just-in-time load."""
        return self._model_states.get((client.base_url, model)) in NOT_LOADED_STATES

    def _remember(self, client: LMStudioClient, model: str, sent: list[dict[str, Any]], result: ChatResult,
                  chat: bool) -> None:
        if result.content or result.reasoning:  # it answered, so it is loaded now: the next cell is no "Loading …"
            self._model_states[(client.base_url, model)] = "loaded"
        if chat:
            self.memory.remember(sent, result, keep=self.chat_memory)

    @observe("chat_memory")
    def _forget_beyond_memory(self, change: dict[str, Any]) -> None:
        self.memory.keep_last(change["new"])  # lowered: the next --chat cell already sends fewer exchanges

    @property
    def history(self) -> list[dict[str, Any]]:
        """The messages %%lm --chat sends again (prompts and answers, oldest first)."""
        return self.memory.messages

    # --- failures as one line -------------------------------------------------------------------------------------
    def _fail(self, err: BaseException, text: str | None = None) -> BaseException:
        """Remember ``err`` for %lm_last_error and return it ready to raise as one line: ``text``, else the advice
        built from the exception's fields. The exception itself is left as it was raised."""
        self.last_error = err
        return one_line(err, text if text is not None else self._advice(err))

    def _failed(self, err: LMStudioError, args: Any) -> BaseException:
        """``_fail`` for a %%lm cell: with --chat, the advice counts the exchanges the cell sent again."""
        return self._fail(err, self._advice(err, remembered=self.memory.exchanges if args.chat else 0))

    def _stopped(self, err: KeyboardInterrupt, args: Any, shown: str) -> BaseException:
        """``_fail`` for a %%lm cell the user stopped: ``shown`` says what stays above (and in ``-o``'s variable)."""
        where = f" and in {args.output}" if args.output else ""
        return self._fail(err, f"stopped by you; {shown} shown above{where}.")

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

    # --- the notebook -----------------------------------------------------------------------------------------------
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
