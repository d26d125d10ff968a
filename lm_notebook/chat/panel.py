"""A chat panel for JupyterLab: type, watch the answer stream in, stop it, switch model, export the conversation.

>>> from lm_notebook import ChatPanel
>>> panel = ChatPanel(system="Answer briefly.")   # doctest: +SKIP
>>> panel                                        # doctest: +SKIP   (shows the panel)
>>> reply = panel.send("What is a monad?")       # doctest: +SKIP   (returns at once)
>>> reply.wait().content                         # doctest: +SKIP

The panel composes ipywidgets (it is not one). Its verbs (:meth:`~ChatPanel.send`, :meth:`~ChatPanel.stop`,
:meth:`~ChatPanel.clear`, :meth:`~ChatPanel.retry`) are what its buttons call, so code and tests drive it without a
browser. Each answer is read by its own thread, away from the widget message handler, so Stop is heard while an answer
streams; one repaint thread shows it a few times a second (never once per token), re-sending only the unfinished end
of the answer (see :mod:`lm_notebook.chat.widgets`). Errors never escape :meth:`send`: they are shown in the panel
with what to do, and carried by the returned :class:`ChatReply`.

This module holds the panel itself, which only wires its parts together: :mod:`~lm_notebook.chat.conversation` (the
data: messages, history, retry, the reply handle), :mod:`~lm_notebook.chat.generation` (one answer's reader, reporting
through callbacks), :mod:`~lm_notebook.chat.widgets` and :mod:`~lm_notebook.chat.controls` (the views),
:mod:`~lm_notebook.display.markdown` (Markdown) and :mod:`~lm_notebook.chat.export` (Markdown / DataFrame export);
its settings as properties are :mod:`~lm_notebook.chat.panel_settings`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from lm_notebook.chat.attachments import ImageAttach
from lm_notebook.chat.controls import (
    FAKE_SERVER_NOTICE,
    MaxTokensInput,
    MessageInput,
    ModelPicker,
    StatusLine,
    TemperatureSlider,
)
from lm_notebook.chat.conversation import AnswerOutcome, Conversation, ConversationEntry, Draft, DraftText
from lm_notebook.chat.conversation import ChatReply as ChatReply
from lm_notebook.chat.export import conversation_dataframe, conversation_markdown
from lm_notebook.chat.generation import REPAINT_INTERVAL as REPAINT_INTERVAL
from lm_notebook.chat.generation import STOP_GRACE as STOP_GRACE
from lm_notebook.chat.generation import WAIT_INTERVAL, AnswerGeneration
from lm_notebook.chat.panel_settings import DEFAULT_TEMPERATURE as DEFAULT_TEMPERATURE
from lm_notebook.chat.panel_settings import PanelSettings, checked_integrations
from lm_notebook.chat.widgets import (
    AssistantMessageView,
    UserMessageView,
    close_tree,
    footer_html,
    live_footer_html,
    page_hook,
)
from lm_notebook.client.clients import LMStudioClient
from lm_notebook.client.errors import NoCurrentModelError
from lm_notebook.client.images import DEFAULT_MAX_IMAGE_EDGE, ImageInput, prepare_images
from lm_notebook.client.native_types import StreamProgress
from lm_notebook.client.tools import Tool, as_toolset
from lm_notebook.display.progress import progress_text

if TYPE_CHECKING:
    import pandas as pd

MessageView = UserMessageView | AssistantMessageView


class ChatPanel(PanelSettings):
    """A chat with a model served by LM Studio, as a JupyterLab panel (display it) and as verbs for code.

    ``client``: an :class:`LMStudioClient` (default: the kernel's shared one, as ``%lm_use`` sets it). ``model``:
    default the client's current model, else the first loaded one; a named id the server does not list raises
    ``ModelNotFoundError`` (with the ids it has and the nearest one), as ``%lm_use`` does (a server that cannot be
    asked refuses nothing: the status line says what the list says when it comes). ``system``: the system
    prompt. ``params``: any chat parameters; ``temperature`` (0–2, default 0.7) and ``max_tokens`` (1 and up, ``-1``
    = no limit, the default) also set the panel's controls, and a value out of range raises ``LMStudioRequestError``
    (so does an empty ``model``), here and when set later (``panel.temperature = …``, ``panel.max_tokens = …``).

    ``history`` is the conversation as role/content dicts (system prompt first when set), fit for
    ``client.send_message(..., conversation_history=panel.history)``. Failed answers are shown in the panel but are
    not in ``history`` and are never sent to the model. ``repaint_interval`` is the seconds between repaints of a
    streaming answer (the first part is shown at once). ``tools``: functions (or ``Tool`` objects) the model may call:
    each answer is then an ``act``, its calls shown as blocks above its text; Stop also stops the loop.
    ``max_image_edge``: images (sent or attached) with a longer side are downscaled to it (None: never).
    A message whose images are refused (say, by a model without vision) is withheld from later requests and put
    back in the input with its images attached; Retry sends it again.
    ``integrations``: LM Studio 0.4's MCP integrations (``["mcp/playwright"]``, or the native route's dicts) that
    the server runs itself; their calls show as blocks too. Answers then take the native route with the chat stored
    on the server (``store=True``), each continuing the last one (``previous_response_id``).
    """

    def __init__(
        self,
        client: LMStudioClient | None = None,
        *,
        model: str | None = None,
        system: str | None = None,
        tools: Sequence[Tool | Callable[..., object]] | None = None,
        max_image_edge: int | None = DEFAULT_MAX_IMAGE_EDGE,
        integrations: Sequence[str | Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> None:
        # checked before anything is built or asked: a bad value is refused, never clamped or replaced
        chosen, temperature, max_tokens = self._checked_settings(model, params)
        prepare_images((), max_image_edge)  # refuses a bad edge now
        self.max_image_edge = max_image_edge
        self.tools: list[Tool] = list(as_toolset(tools).values()) if tools is not None else []
        self.integrations: list[str | Mapping[str, Any]] = checked_integrations(integrations, bool(self.tools))
        if client is None:
            from lm_notebook.client.session import get_client

            client = get_client()
        self.client = client
        self.extra_params: dict[str, Any] = params
        self.repaint_interval = REPAINT_INTERVAL
        self._wait_interval = WAIT_INTERVAL  # how often the status line says how long the first token has taken
        self._wait_clock: Callable[[], float] = time.monotonic
        self._progress: StreamProgress | None = None  # the active answer's latest load / prompt progress
        self._progress_started = 0.0  # when the active answer was sent (on the wait clock)
        self._lock = threading.RLock()  # the conversation, its views and the active answer
        self._conversation = Conversation()
        self._views: dict[ConversationEntry, MessageView] = {}
        self._active: AnswerGeneration | None = None
        self._closed = False
        self._build(chosen or client.current_model, system or "", temperature, max_tokens)
        if chosen is None:
            self._models.refresh(wait=self.model is None, announce=False)
            return
        # a model asked for by name is checked against the listing, as %lm_use does; a listing that fails or comes
        # late cannot refuse it (the status line says what the listing found when it comes)
        if (missing := self._models.check_listed(chosen)) is not None:
            self.close()
            raise missing

    # --- widgets ----------------------------------------------------------------------------------------------
    def _build(self, model: str | None, system: str, temperature: float, max_tokens: int) -> None:
        self._models = ModelPicker(self.client, model, self._on_listing)
        self.model_dropdown, self.refresh_button = self._models.dropdown, self._models.refresh_button
        self.temperature_slider = TemperatureSlider(temperature)
        self.max_tokens_input = MaxTokensInput(max_tokens)
        self.system_input = widgets.Textarea(
            value=system, placeholder="System prompt (optional)", rows=2, layout=widgets.Layout(width="100%")
        )
        self.system_input.add_class("lmnb-system")
        self._messages_box = widgets.VBox([], layout=widgets.Layout(width="100%"))
        self._messages_box.add_class("lmnb-messages")
        self.conversation = widgets.Box([self._messages_box], layout=widgets.Layout(width="100%"))
        self.conversation.add_class("lmnb-scroll")
        self._attach = ImageAttach()
        self.attach = self._attach.widget
        self._message_input = MessageInput(lambda text: self._ui_call(lambda: self._send_typed(text)), self._may_send)
        self.input, self.send_button = self._message_input.textarea, self._message_input.send_button
        self.stop_button = widgets.Button(description="Stop", icon="stop", button_style="danger", disabled=True)
        self.retry_button = widgets.Button(description="Retry", icon="redo", disabled=True,
                                           tooltip="Regenerate the last answer")
        self.clear_button = widgets.Button(description="Clear", icon="trash", tooltip="Start a new conversation")
        for button in (self.send_button, self.stop_button, self.retry_button, self.clear_button):
            button.layout.width = "96px"
        self._status_line = StatusLine()
        self.status = self._status_line.widget

        self.stop_button.on_click(lambda _b: self.stop())
        self.retry_button.on_click(lambda _b: self._ui_call(self.retry))
        self.clear_button.on_click(lambda _b: self.clear())

        settings = widgets.HBox(
            [self.model_dropdown, self.refresh_button, self.temperature_slider, self.max_tokens_input],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
        )
        actions = widgets.HBox(
            [self.send_button, self.attach, self.stop_button, self.retry_button, self.clear_button, self.status],
            layout=widgets.Layout(align_items="center"),
        )
        self.widget = widgets.VBox(
            [page_hook(), settings, self.system_input, self.conversation, self.input, actions],
            layout=widgets.Layout(width="100%"),
        )
        self.widget.add_class("lmnb-chat")
        # closing the panel's widget (or Widget.close_all()) closes the panel and stops its stream
        self.widget.observe(self._on_widget_comm, names="comm")

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        if self._closed:
            return {"text/plain": repr(self)}
        bundle: dict[str, Any] | None = self.widget._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<ChatPanel{state} model={self.model!r} messages={len(self._conversation)}>"

    # --- state ----------------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while an answer streams."""
        active = self._active
        return active is not None and not active.finished.is_set()

    def refresh_models(self, *, wait: bool = True) -> list[str]:
        """Reload the model list from LM Studio (chat models only); returns the ids when ``wait``."""
        return self._models.refresh(wait=wait, announce=True)

    def _on_listing(self, text: str, error: bool, asked_for: bool) -> None:
        if self._models.server_is_fake is not None and not self._closed:
            self._status_line.notice = FAKE_SERVER_NOTICE if self._models.server_is_fake else ""
        # the first, automatic listing only speaks on an empty status line: it must not hide an answer's outcome
        if not self.busy:
            self._set_status(text, error=error, only_if_empty=not asked_for)

    # --- verbs ------------------------------------------------------------------------------------------------
    def send(self, text: str, images: Sequence[ImageInput] | None = None) -> ChatReply:
        """Send a message; returns a :class:`ChatReply` at once (``reply.wait()`` for the answer).

        ``images`` (for a vision model; what ``chat(images=...)`` takes) go with the message and show as thumbnails.
        Errors from LM Studio do not raise: the panel shows them and ``reply.error`` holds them; the message stays
        in ``history`` so :meth:`retry` can try again. Raises ``ValueError`` for an empty message or an image that
        cannot be read, and ``RuntimeError`` while another answer streams.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError("The message is empty: give send() some text.")
        sent = prepare_images(images, self.max_image_edge)
        self._models.await_listing()
        with self._lock:
            self._check_usable()
            self._show(self._conversation.add_user(text, sent), UserMessageView(text, sent))
            return self._answer()

    def _send_typed(self, text: str) -> None:
        """Send from the input box, with the images attached in the panel (forgotten once sent)."""
        self.send(text, self._attach.files() or None)
        self._attach.clear()

    def retry(self) -> ChatReply:
        """Regenerate the answer to the last user message (after an error, a stop, or just for another take)."""
        self._models.await_listing()
        with self._lock:
            self._check_usable()
            dropped = [self._views.pop(e) for e in self._conversation.drop_answers_to_last_message()]
            self._messages_box.children = tuple(self._views[e].box for e in self._conversation.entries)
            for view in dropped:
                close_tree(view.box)
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
            self._conversation.clear()
            views, self._views = list(self._views.values()), {}
            self._messages_box.children = ()
        for view in views:
            close_tree(view.box)
        self._sync_buttons()
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
        system = self.system
        with self._lock:
            return self._conversation.history(system)

    @property
    def replies(self) -> list[ChatReply]:
        """Every answer's handle, oldest first."""
        with self._lock:
            return self._conversation.replies

    # --- exports ----------------------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        """The conversation as Markdown (thinking in ``<details>``, stops and errors noted)."""
        system = self.system
        with self._lock:
            entries = self._conversation.entries
        return conversation_markdown(system, entries)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per message: role, content, model, thinking, finish, tokens, timings, error."""
        system = self.system
        with self._lock:
            entries = self._conversation.entries
        return conversation_dataframe(system, entries)

    # --- answering --------------------------------------------------------------------------------------------
    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError("This chat panel is closed: create a new ChatPanel.")
        if self.busy:
            raise RuntimeError("The panel is still answering: stop() it or wait for the reply before sending again.")

    def _show(self, entry: ConversationEntry, view: MessageView) -> None:
        self._views[entry] = view
        self._messages_box.children = (*self._messages_box.children, view.box)

    def _answer(self) -> ChatReply:
        """Start streaming an answer to the conversation so far (called with the lock held)."""
        model = self.model
        draft = Draft()
        entry, reply = self._conversation.add_answer(model, draft)
        view = AssistantMessageView(model or "no model")
        self._show(entry, view)
        if model is None:
            error = NoCurrentModelError(
                "No model selected: pick one in the Model list (⟳ reloads it), or load one in LM Studio "
                "(`lms load <model>`)."
            )
            entry.record(AnswerOutcome("", "", None, error))
            view.finish("", "", footer_html(None, approx_tokens=0, error=error))
            reply.settle(None, error)
            self._sync_buttons()
            return reply

        def settled(outcome: AnswerOutcome) -> None:
            self._answer_settled(generation, entry, reply, view, outcome)

        messages, params = self._request()
        generation = AnswerGeneration(
            self.client, messages, params, model=model,
            on_update=lambda text: self._answer_grew(model, view, text, generation), on_settled=settled, draft=draft,
            interval=self.repaint_interval, on_waiting=lambda waited: self._answer_waiting(model, waited),
            wait_interval=self._wait_interval, wait_clock=self._wait_clock, tools=self.tools,
            on_progress=lambda progress: self._answer_progress(generation, model, progress),
        )
        self._progress = None
        self._progress_started = self._wait_clock()  # the load's seconds count from the send, as "waited" does
        self._active = generation
        self._sync_buttons()
        self._answer_waiting(model, 0.0)
        generation.start()
        return reply

    def _request(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """What an answer sends: the conversation; with integrations (LM Studio's native route, which keeps earlier
        turns only as a chat it stored), the new message, continuing the last answer's stored chat."""
        if not self.integrations:
            return self._conversation.request_messages(self.system), self.params
        messages, previous = self._conversation.stored_turn(self.system)
        return messages, {**self.params, "integrations": list(self.integrations), "store": True,
                          "previous_response_id": previous}

    def _answer_progress(self, generation: AnswerGeneration, model: str, progress: StreamProgress) -> None:
        """The server's load or prompt progress (native route), on the reader thread: the status line shows it."""
        if self._active is not generation:
            return
        self._progress = progress
        if not progress.done:
            self._set_status(progress_text(progress, self._wait_clock() - self._progress_started, model=model))

    def _answer_waiting(self, model: str, waited: float) -> None:
        """The status before the first token: the server's own progress when it reports it (LM Studio 0.4), else
        a model the listing said is not loaded is being loaded just in time."""
        progress = self._progress
        if progress is not None and not progress.done:
            self._set_status(progress_text(progress, self._wait_clock() - self._progress_started, model=model))
        elif self._models.is_loading(model):
            self._set_status(f"Loading {model}… {int(waited)} s")
        else:
            self._set_status(f"Answering with {model}…")

    def _answer_grew(self, model: str, view: AssistantMessageView, text: DraftText,
                     generation: AnswerGeneration) -> None:
        """A repaint of the streaming answer (on the repaint thread); its tool calls above it, when it has some."""
        view.show_tools(generation.tool_blocks_html())
        view.show(text.content, text.reasoning, live_footer_html(text.parts))
        self._set_status(f"Answering with {model}… ≈{text.parts} tokens")

    def _answer_settled(
        self, generation: AnswerGeneration, entry: ConversationEntry, reply: ChatReply, view: AssistantMessageView,
        outcome: AnswerOutcome,
    ) -> None:
        """The answer is over (on the thread that settled it): keep it, show it, free the buttons, then the reply.

        All under the panel's lock, the answer freed last: a send() or retry() waiting on the lock starts the next
        answer only after this one's status is written, so "Ready" never lands over its "Answering…".
        """
        with self._lock:
            entry.record(outcome)
            if outcome.parts and generation.model:
                self._models.mark_loaded(generation.model)  # it answered: the next answer is not "Loading…"
            view.show_tools(generation.tool_blocks_html())
            view.finish(outcome.content, outcome.reasoning,
                        footer_html(outcome.result, approx_tokens=outcome.parts, error=outcome.error))
            error, result = outcome.error, outcome.result
            withheld = self._conversation.withhold_refused(entry) if error is not None else None
            if withheld is not None:
                self._restore_to_input(withheld)
            if self._active is generation:  # (else a newer answer owns the status line)
                if withheld is not None:
                    self._set_status(f"Failed — {type(error).__name__}; the message and its images are back in the "
                                     "input and will not be sent with later messages (pick a vision model, then "
                                     "Send, or Retry)", error=True)
                elif error is not None:
                    self._set_status(f"Failed — {type(error).__name__}; press Retry to try again", error=True)
                elif result is not None and result.stopped:
                    self._set_status("Stopped")
                else:
                    self._set_status("Ready")
                self._active = None
            self._sync_buttons()
        reply.settle(result, error)  # last: whoever waits on the reply finds the panel already settled

    def _restore_to_input(self, message: ConversationEntry) -> None:
        """A withheld message back in the input box and its images attached again, unless the user typed or
        attached something meanwhile."""
        if self._closed:
            return
        if not self.input.value.strip():
            self.input.value = message.content
        if not self._attach.files():
            self._attach.restore(message.images)

    def _sync_buttons(self) -> None:
        if self._closed:
            return
        busy = self.busy
        self.send_button.disabled = busy
        self.stop_button.disabled = not busy
        self.retry_button.disabled = busy or not self._conversation.has_user_message

    def _set_status(self, text: str, *, error: bool = False, only_if_empty: bool = False) -> None:
        if not self._closed:
            self._status_line.show(text, error=error, only_if_empty=only_if_empty)

    # --- widget events ----------------------------------------------------------------------------------------
    def _may_send(self) -> bool:
        if self.busy:
            self._set_status("Still answering — press Stop, or wait, before sending")
        return not self.busy

    def _ui_call(self, verb: Callable[[], object]) -> None:
        """Run a verb for a button: a refusal becomes the status line, never a traceback in the log."""
        try:
            verb()
        except (RuntimeError, ValueError) as err:
            self._set_status(str(err), error=True)

    def _on_widget_comm(self, change: dict[str, Any]) -> None:
        if change["new"] is None and not self._closed:
            self.close()
