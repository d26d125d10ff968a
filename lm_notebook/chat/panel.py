"""A chat panel for JupyterLab: type, watch the answer stream in, stop it, switch model, export the conversation.

>>> from lm_notebook import ChatPanel
>>> panel = ChatPanel(system="Answer briefly.")   # doctest: +SKIP
>>> panel                                        # doctest: +SKIP   (shows the panel)
>>> reply = panel.send("What is a monad?")       # doctest: +SKIP   (returns at once)
>>> reply.wait().content                         # doctest: +SKIP

The panel composes ipywidgets (it is not one). Its verbs (:meth:`~ChatPanel.send`, :meth:`~ChatPanel.stop`,
:meth:`~ChatPanel.clear`, :meth:`~ChatPanel.retry`) are what its buttons call, so code and tests drive it without a
browser. Each answer is read by its own thread, away from the widget message handler, so Stop is heard while an answer
streams; a second thread repaints a few times a second (never once per token), re-sending only the unfinished end
of the answer (see :mod:`lm_notebook.chat.widgets`). Errors never escape :meth:`send`: they are shown in the panel
with what to do, and carried by the returned :class:`ChatReply`.

This module holds the panel itself; its parts live beside it: :mod:`~lm_notebook.chat.conversation` (the reply handle
and the record of a message), :mod:`~lm_notebook.chat.generation` (one answer's threads),
:mod:`~lm_notebook.chat.widgets` (the widgets), :mod:`~lm_notebook.display.markdown` (Markdown) and
:mod:`~lm_notebook.chat.export` (Markdown / DataFrame export).
"""

from __future__ import annotations

import contextlib
import html
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from lm_notebook.chat.conversation import ChatReply as ChatReply
from lm_notebook.chat.conversation import ConversationEntry
from lm_notebook.chat.export import conversation_dataframe, conversation_markdown
from lm_notebook.chat.generation import REPAINT_INTERVAL as REPAINT_INTERVAL
from lm_notebook.chat.generation import STOP_GRACE as STOP_GRACE
from lm_notebook.chat.generation import AnswerGeneration
from lm_notebook.chat.widgets import (
    SUBMIT_MARK,
    AssistantMessageView,
    UserMessageView,
    close_tree,
    footer_html,
    page_hook,
)
from lm_notebook.client.clients import LMStudioClient
from lm_notebook.client.errors import LMStudioError, NoCurrentModelError, error_text
from lm_notebook.client.types import ChatResult

if TYPE_CHECKING:
    import pandas as pd

_EMBEDDING_TYPES = ("embeddings", "embedding")


class ChatPanel:
    """A chat with a model served by LM Studio, as a JupyterLab panel (display it) and as verbs for code.

    ``client``: an :class:`LMStudioClient` (default: the kernel's shared one, as ``%lm_use`` sets it). ``model``:
    default the client's current model, else the first loaded one. ``system``: the system prompt. ``params``: any
    chat parameters (``temperature`` and ``max_tokens`` also set the panel's controls; ``-1`` tokens = no limit).

    ``history`` is the conversation as role/content dicts (system prompt first when set), fit for
    ``client.send_message(..., conversation_history=panel.history)``. Failed answers are shown in the panel but are
    not in ``history`` and are never sent to the model.
    """

    def __init__(
        self,
        client: LMStudioClient | None = None,
        *,
        model: str | None = None,
        system: str | None = None,
        **params: Any,
    ) -> None:
        if client is None:
            from lm_notebook.client.session import get_client

            client = get_client()
        self.client = client
        temperature = params.pop("temperature", 0.7)
        max_tokens = params.pop("max_tokens", -1)
        self.extra_params: dict[str, Any] = params
        self._lock = threading.RLock()
        self._entries: list[ConversationEntry] = []
        self._active: AnswerGeneration | None = None
        self._closed = False
        self._models_thread: threading.Thread | None = None
        self._loading_options = False
        self._status_lock = threading.Lock()
        self._build(model or client.current_model, system or "", temperature, max_tokens)
        self._refresh(wait=self.model is None, announce=False)

    # --- widgets ----------------------------------------------------------------------------------------------
    def _build(self, model: str | None, system: str, temperature: float, max_tokens: int) -> None:
        options = [(model, model)] if model else []
        wide_label = {"description_width": "initial"}
        self.model_dropdown = widgets.Dropdown(
            options=options, value=model, description="Model", style=wide_label, layout=widgets.Layout(width="320px")
        )
        self.refresh_button = widgets.Button(
            icon="refresh", tooltip="Reload the model list", layout=widgets.Layout(width="36px")
        )
        self.temperature_slider = widgets.FloatSlider(
            value=float(temperature), min=0.0, max=2.0, step=0.05, description="Temperature",
            continuous_update=False, readout_format=".2f", style=wide_label, layout=widgets.Layout(width="260px"),
        )
        self.max_tokens_input = widgets.BoundedIntText(
            value=int(max_tokens), min=-1, max=10_000_000, description="Max tokens",
            tooltip="-1 = no limit", style=wide_label, layout=widgets.Layout(width="170px"),
        )
        self.system_input = widgets.Textarea(
            value=system, placeholder="System prompt (optional)", rows=2, layout=widgets.Layout(width="100%")
        )
        self.system_input.add_class("lmnb-system")
        self._messages_box = widgets.VBox([], layout=widgets.Layout(width="100%"))
        self._messages_box.add_class("lmnb-messages")
        self.conversation = widgets.Box([self._messages_box], layout=widgets.Layout(width="100%"))
        self.conversation.add_class("lmnb-scroll")
        self.input = widgets.Textarea(
            value="", placeholder="Message — Enter sends, Shift+Enter starts a new line", rows=3,
            continuous_update=True, layout=widgets.Layout(width="100%"),
        )
        self.input.add_class("lmnb-input")
        self.send_button = widgets.Button(description="Send", icon="paper-plane", button_style="primary")
        self.send_button.add_class("lmnb-send")
        self.stop_button = widgets.Button(description="Stop", icon="stop", button_style="danger", disabled=True)
        self.retry_button = widgets.Button(description="Retry", icon="redo", disabled=True,
                                           tooltip="Regenerate the last answer")
        self.clear_button = widgets.Button(description="Clear", icon="trash", tooltip="Start a new conversation")
        for button in (self.send_button, self.stop_button, self.retry_button, self.clear_button):
            button.layout.width = "96px"
        self.status = widgets.HTML(value="")
        self.status.add_class("lmnb-status")

        self.send_button.on_click(lambda _b: self._submit(self.input.value))
        self.stop_button.on_click(lambda _b: self.stop())
        self.retry_button.on_click(lambda _b: self._ui_call(self.retry))
        self.clear_button.on_click(lambda _b: self.clear())
        self.refresh_button.on_click(lambda _b: self._refresh(wait=False, announce=True))
        self.input.observe(self._on_input, names="value")
        self.model_dropdown.observe(self._on_model, names="value")

        settings = widgets.HBox(
            [self.model_dropdown, self.refresh_button, self.temperature_slider, self.max_tokens_input],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
        )
        actions = widgets.HBox(
            [self.send_button, self.stop_button, self.retry_button, self.clear_button, self.status],
            layout=widgets.Layout(align_items="center"),
        )
        self.widget = widgets.VBox(
            [page_hook(), settings, self.system_input, self.conversation, self.input, actions],
            layout=widgets.Layout(width="100%"),
        )
        self.widget.add_class("lmnb-chat")
        # closing the panel's widget (or Widget.close_all()) closes the panel and stops its stream
        self.widget.observe(self._on_widget_comm, names="comm")
        self._model = model

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        if self._closed:
            return {"text/plain": repr(self)}
        bundle: dict[str, Any] | None = self.widget._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<ChatPanel{state} model={self.model!r} messages={len(self._entries)}>"

    # --- settings ---------------------------------------------------------------------------------------------
    @property
    def model(self) -> str | None:
        return self._model

    @model.setter
    def model(self, model_id: str | None) -> None:
        with self._lock:
            if model_id and model_id not in self._model_ids():
                self.model_dropdown.options = [*self.model_dropdown.options, (model_id, model_id)]
            self.model_dropdown.value = model_id
            self._model = model_id

    def _model_ids(self) -> list[str]:
        return [value for _label, value in self.model_dropdown.options]

    @property
    def system(self) -> str:
        return str(self.system_input.value)

    @system.setter
    def system(self, text: str | None) -> None:
        self.system_input.value = text or ""

    @property
    def params(self) -> dict[str, Any]:
        """The chat parameters the next answer is asked with."""
        return {
            **self.extra_params,
            "temperature": float(self.temperature_slider.value),
            "max_tokens": int(self.max_tokens_input.value),
        }

    @property
    def busy(self) -> bool:
        """True while an answer streams."""
        active = self._active
        return active is not None and not active.finished.is_set()

    def refresh_models(self, *, wait: bool = True) -> list[str]:
        """Reload the model list from LM Studio (chat models only); returns the ids when ``wait``."""
        return self._refresh(wait=wait, announce=True)

    def _refresh(self, *, wait: bool, announce: bool) -> list[str]:
        thread = threading.Thread(
            target=self._load_models, args=(announce,), name="lm_notebook-chat-models", daemon=True
        )
        self._models_thread = thread
        thread.start()
        if wait:
            thread.join(timeout=10.0)
        return self._model_ids()

    def _load_models(self, announce: bool) -> None:
        # the first, automatic load only speaks on an empty status line: it must not hide an answer's outcome
        def say(text: str, error: bool = False) -> None:
            if not self.busy:
                self._set_status(text, error=error, only_if_empty=not announce)

        try:
            models = self.client.list_models()
        except LMStudioError as err:
            say(f"Could not list models: {error_text(err)}", error=True)
            return
        chat_models = [m for m in models if m.type not in _EMBEDDING_TYPES]
        options = [(f"{m.id}  ●" if m.loaded else m.id, m.id) for m in chat_models]
        with self._lock:  # the user may have picked a model meanwhile: keep it
            current = self._model
            if current and current not in [value for _label, value in options]:
                options.append((current, current))
            if not current and chat_models:
                loaded = [m.id for m in chat_models if m.loaded]
                current = loaded[0] if loaded else chat_models[0].id
            self._loading_options = True
            try:
                self.model_dropdown.options = options
                self.model_dropdown.value = current
            finally:
                self._loading_options = False
            self._model = current
        say(f"{len(chat_models)} models · ● = loaded" if chat_models else "LM Studio lists no models")

    def _on_model(self, change: dict[str, Any]) -> None:
        if change["new"] is not None and not self._loading_options:
            self._model = change["new"]

    # --- verbs ------------------------------------------------------------------------------------------------
    def send(self, text: str) -> ChatReply:
        """Send a message; returns a :class:`ChatReply` at once (``reply.wait()`` for the answer).

        Errors from LM Studio do not raise: the panel shows them and ``reply.error`` holds them; the message stays
        in ``history`` so :meth:`retry` can try again. Raises ``ValueError`` for an empty message and
        ``RuntimeError`` while another answer streams.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError("The message is empty: give send() some text.")
        self._await_model_list()
        with self._lock:
            self._check_usable()
            entry = ConversationEntry("user", text, view=UserMessageView(text))
            self._entries.append(entry)
            self._show_entry(entry)
            return self._answer()

    def retry(self) -> ChatReply:
        """Regenerate the answer to the last user message (after an error, a stop, or just for another take)."""
        self._await_model_list()
        with self._lock:
            self._check_usable()
            last_user = max((i for i, e in enumerate(self._entries) if e.role == "user"), default=None)
            if last_user is None:
                raise RuntimeError("Nothing to retry: send a message first.")
            dropped = self._entries[last_user + 1 :]
            del self._entries[last_user + 1 :]
            self._messages_box.children = tuple(e.view.box for e in self._entries)
            for entry in dropped:
                close_tree(entry.view.box)
            return self._answer()

    def stop(self) -> None:
        """Stop the streaming answer (within half a second); its partial text is kept, marked as stopped."""
        active = self._active
        if active is not None and not active.finished.is_set():
            self._set_status("Stopping…")
            active.stop()

    def clear(self) -> None:
        """Stop any answer and start a new conversation (model, system prompt and settings stay)."""
        self.stop()
        with self._lock:
            entries, self._entries = self._entries, []
            self._messages_box.children = ()
        for entry in entries:
            close_tree(entry.view.box)
        self._sync_buttons()
        if not self._closed:
            self._set_status("New conversation")

    def close(self) -> None:
        """Stop any answer and close every widget of the panel."""
        if self._closed:
            return
        self._closed = True
        active = self._active
        if active is not None:
            active.stop()
        with contextlib.suppress(Exception):
            self.widget.unobserve(self._on_widget_comm, names="comm")
        close_tree(self.widget)

    def __enter__(self) -> ChatPanel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def history(self) -> list[dict[str, Any]]:
        """The conversation as role/content dicts: the system prompt (if any), then the messages."""
        out: list[dict[str, Any]] = [{"role": "system", "content": self.system}] if self.system.strip() else []
        with self._lock:
            out.extend({"role": e.role, "content": e.content} for e in self._entries if e.in_history)
        return out

    @property
    def replies(self) -> list[ChatReply]:
        """Every answer's handle, oldest first."""
        with self._lock:
            return [e.reply for e in self._entries if e.reply is not None]

    # --- exports ----------------------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        """The conversation as Markdown (thinking in ``<details>``, stops and errors noted)."""
        system = self.system
        with self._lock:
            entries = list(self._entries)
        return conversation_markdown(system, entries)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per message: role, content, model, thinking, finish, tokens, timings, error."""
        system = self.system
        with self._lock:
            entries = list(self._entries)
        return conversation_dataframe(system, entries)

    # --- internals --------------------------------------------------------------------------------------------
    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError("This chat panel is closed: create a new ChatPanel.")
        if self.busy:
            raise RuntimeError("The panel is still answering: stop() it or wait for the reply before sending again.")

    def _await_model_list(self) -> None:
        """With no model chosen yet, give the first model listing a moment (outside the lock: it needs it)."""
        thread = self._models_thread
        if thread is not None and self._model is None and thread is not threading.current_thread():
            thread.join(timeout=10.0)

    def _answer(self) -> ChatReply:
        """Start streaming an answer to the conversation so far (called with the lock held)."""
        model = self._model
        last_prompt = next((e.content for e in reversed(self._entries) if e.role == "user"), "")
        reply = ChatReply(last_prompt, model)
        view = AssistantMessageView(model or "no model")
        entry = ConversationEntry("assistant", "", view=view, model=model, reply=reply)
        self._entries.append(entry)
        self._show_entry(entry)
        if model is None:
            error = NoCurrentModelError()
            error.message = (
                "No model selected: pick one in the Model list (⟳ reloads it), or load one in LM Studio "
                "(`lms load <model>`)."
            )
            entry.error = error
            entry.view.finish("", "", footer_html(None, approx_tokens=0, error=error))
            reply._settle(None, error)
            self._sync_buttons()
            return reply
        generation = AnswerGeneration(self, entry, reply, self._request_messages(), self.params)
        self._active = generation
        self._sync_buttons()
        self._set_status(f"Answering with {model}…")
        generation.start()
        return reply

    def _request_messages(self) -> list[dict[str, Any]]:
        """What the model is sent: ``history``, with back-to-back user messages (left by failures) joined."""
        out: list[dict[str, Any]] = []
        for message in self.history:
            if out and message["role"] == "user" and out[-1]["role"] == "user":
                out[-1] = {"role": "user", "content": out[-1]["content"] + "\n\n" + message["content"]}
            else:
                out.append(dict(message))
        return out

    def _show_entry(self, entry: ConversationEntry) -> None:
        self._messages_box.children = (*self._messages_box.children, entry.view.box)

    def _generation_ended(
        self, generation: AnswerGeneration, result: ChatResult | None, error: Exception | None
    ) -> None:
        with self._lock:
            if self._active is generation:
                self._active = None
        if self._closed:
            return
        if error is not None:
            self._set_status(f"Failed — {type(error).__name__}; press Retry to try again", error=True)
        elif result is not None and result.stopped:
            self._set_status("Stopped")
        else:
            self._set_status("Ready")
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        if self._closed:
            return
        busy = self.busy
        self.send_button.disabled = busy
        self.stop_button.disabled = not busy
        self.retry_button.disabled = busy or not any(e.role == "user" for e in self._entries)

    def _set_status(self, text: str, *, error: bool = False, only_if_empty: bool = False) -> None:
        if self._closed:
            return
        style = ' style="color:#b71c1c"' if error else ""
        with self._status_lock:
            if only_if_empty and self.status.value:
                return
            self.status.value = f"<span{style}>{html.escape(text)}</span>"

    # --- widget events ----------------------------------------------------------------------------------------
    def _on_input(self, change: dict[str, Any]) -> None:
        value = change["new"]
        if SUBMIT_MARK not in value:
            return
        text, _, rest = value.partition(SUBMIT_MARK)
        rest = rest.replace(SUBMIT_MARK, "")
        if self.busy or not text.strip():
            self.input.value = text + rest
            if self.busy:
                self._set_status("Still answering — press Stop, or wait, before sending")
            return
        self.input.value = rest
        self._ui_call(lambda: self.send(text))

    def _submit(self, text: str) -> None:
        text = text.replace(SUBMIT_MARK, "")
        if not text.strip():
            return
        if self.busy:
            self._set_status("Still answering — press Stop, or wait, before sending")
            return
        self.input.value = ""
        self._ui_call(lambda: self.send(text))

    def _ui_call(self, verb: Callable[[], object]) -> None:
        """Run a verb for a button: a refusal becomes the status line, never a traceback in the log."""
        try:
            verb()
        except (RuntimeError, ValueError) as err:
            self._set_status(str(err), error=True)

    def _on_widget_comm(self, change: dict[str, Any]) -> None:
        if change["new"] is None and not self._closed:
            self.close()
