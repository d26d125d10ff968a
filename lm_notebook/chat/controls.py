"""The chat panel's controls that have behaviour of their own: the Model list, the settings, the message input, the
status line.

:class:`ModelPicker` fills its list from LM Studio in a background thread, keeps the user's pick and remembers which
models are loaded; :class:`TemperatureSlider` and :class:`MaxTokensInput` refuse a value out of their range (ipywidgets
would clamp it silently); :class:`MessageInput` turns Enter and the Send button into one "send this text";
:class:`StatusLine` is written from several threads. The panel composes them with the rest of its widgets.
"""

from __future__ import annotations

import contextlib
import html
import math
import numbers
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from traitlets import validate

from lm_notebook.chat.widgets import SUBMIT_MARK
from lm_notebook.client.clients import LMStudioClient
from lm_notebook.client.errors import LMStudioError, LMStudioRequestError, ModelNotFoundError, error_text, suggest_model
from lm_notebook.client.types import ModelInfo

EMBEDDING_TYPES = ("embeddings", "embedding")
LISTING_WAIT = 10.0  # seconds a caller waits for a model listing it asked for (or needs, with no model chosen)
TEMPERATURE_RANGE = (0.0, 2.0)  # the slider's range (OpenAI's too); the panel refuses what it could not show
MAX_TOKENS_LIMIT = 10_000_000  # the Max tokens box's top: far beyond any context length, so never a real limit
NOT_LOADED_STATES = ("not-loaded", "loading")
FAKE_SERVER_NOTICE = (
    "Connected to the bundled fake LM Studio server (canned answers, no real model). To reach your LM Studio, set "
    "LMSTUDIO_BASE_URL (or %config LMMagics.base_url) to its address, e.g. http://127.0.0.1:1234."
)

# what the picker says about a listing: (text, is_error, asked_for) — an automatic listing was not asked for
ListingReport = Callable[[str, bool, bool], None]


# --- the settings' rules (the constructor, the panel's properties and the widgets all refuse the same values) --------
def checked_temperature(value: object) -> float:
    """``value`` as a temperature, or ``LMStudioRequestError`` naming the allowed range."""
    low, high = TEMPERATURE_RANGE
    if (
        isinstance(value, bool) or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value)) or not low <= float(value) <= high
    ):
        raise LMStudioRequestError(
            f"temperature must be a number from {low:g} to {high:g}, not {value!r} (0.7 is the default; lower is "
            "steadier, higher more varied)."
        )
    return float(value)


def checked_max_tokens(value: object) -> int:
    """``value`` as a longest answer in tokens (-1 = no limit), or ``LMStudioRequestError`` naming the allowed range."""
    if (
        isinstance(value, bool) or not isinstance(value, numbers.Integral)
        or not (value == -1 or 1 <= int(value) <= MAX_TOKENS_LIMIT)
    ):
        raise LMStudioRequestError(
            f"max_tokens must be a whole number from 1 to {MAX_TOKENS_LIMIT:,}, or -1 for no limit, not {value!r}."
        )
    return int(value)


def checked_model_id(value: object) -> str:
    """``value`` as a model id (stripped), or ``LMStudioRequestError``: an empty id is not "the current model"."""
    if not isinstance(value, str) or not value.strip():
        raise LMStudioRequestError(
            f"model must be a model id such as \"qwen2.5-7b-instruct\", not {value!r}: leave it out (or None) to use "
            "the current model (%lm_use sets it); %lm_models or client.list_models() lists the ids."
        )
    return value.strip()


class TemperatureSlider(widgets.FloatSlider):  # type: ignore[misc]
    """The Temperature slider; a value set from code outside 0–2 (or NaN) is refused, not clamped."""

    def __init__(self, value: float) -> None:
        low, high = TEMPERATURE_RANGE
        super().__init__(
            value=value, min=low, max=high, step=0.05, description="Temperature", continuous_update=False,
            readout_format=".2f", style={"description_width": "initial"}, layout=widgets.Layout(width="260px"),
        )

    @validate("value")
    def _validate_value(self, proposal: dict[str, Any]) -> float:
        return checked_temperature(proposal["value"])


class MaxTokensInput(widgets.BoundedIntText):  # type: ignore[misc]
    """The Max tokens box; a value set from code below -1 or above the limit is refused, not clamped.

    0 stays possible (a user may type it on the way to 50): the answer it would ask for is refused when sent, in the
    panel, with the rule.
    """

    def __init__(self, value: int) -> None:
        super().__init__(
            value=value, min=-1, max=MAX_TOKENS_LIMIT, description="Max tokens", tooltip="-1 = no limit",
            style={"description_width": "initial"}, layout=widgets.Layout(width="170px"),
        )

    @validate("value")
    def _validate_value(self, proposal: dict[str, Any]) -> int:
        value = proposal["value"]
        if value != 0:
            checked_max_tokens(value)
        return int(value)

class ModelPicker:
    """The Model list and its ⟳ button: chat models only (loaded ones marked ●), filled in the background.

    A listing never overrides a model the user picked meanwhile; with no model chosen, it picks the first loaded one
    (else the first). ``report`` hears how each listing went, and that the chosen model is not listed. The picker
    remembers what the last listing said of each model (loaded or not) and whether the server is this project's fake
    one, so the panel can say so without asking the server again.
    """

    def __init__(self, client: LMStudioClient, model: str | None, report: ListingReport) -> None:
        self.client = client
        self._report = report
        self._lock = threading.Lock()
        self._model = model
        self._filler: int | None = None  # the thread refilling the list: its value changes are not the user's picks
        self._thread: threading.Thread | None = None
        self._listed: list[ModelInfo] | None = None  # the last listing that succeeded (every type)
        self._states: dict[str, str | None] = {}  # model id -> "loaded" / "not-loaded" / "loading" / None
        self.server_is_fake: bool | None = None  # None until the client knows (from the server's greeting)
        self._asked_who = False
        self.dropdown = widgets.Dropdown(
            options=[(model, model)] if model else [], value=model, description="Model",
            style={"description_width": "initial"}, layout=widgets.Layout(width="320px"),
        )
        self.refresh_button = widgets.Button(
            icon="refresh", tooltip="Reload the model list", layout=widgets.Layout(width="36px")
        )
        self.refresh_button.on_click(lambda _b: self.refresh(wait=False, announce=True))
        self.dropdown.observe(self._on_pick, names="value")

    @property
    def model(self) -> str | None:
        return self._model

    @model.setter
    def model(self, model_id: str | None) -> None:
        with self._lock:
            if model_id and model_id not in self.ids():
                self.dropdown.options = [*self.dropdown.options, (model_id, model_id)]
            self.dropdown.value = model_id
            self._model = model_id

    def ids(self) -> list[str]:
        return [value for _label, value in self.dropdown.options]

    def refresh(self, *, wait: bool, announce: bool) -> list[str]:
        """List the models again in the background; with ``wait``, return the ids once listed."""
        thread = threading.Thread(target=self._load, args=(announce,), name="lm_notebook-chat-models", daemon=True)
        self._thread = thread
        thread.start()
        if wait:
            thread.join(timeout=LISTING_WAIT)
        return self.ids()

    def await_listing(self) -> None:
        """With no model chosen yet, give the listing under way a moment to choose one."""
        thread = self._thread
        if thread is not None and self._model is None and thread is not threading.current_thread():
            thread.join(timeout=LISTING_WAIT)

    # --- what the last listing said --------------------------------------------------------------------------------
    def is_loading(self, model: str) -> bool:
        """True when the last listing said ``model`` is not loaded (so asking it loads it first)."""
        with self._lock:
            return self._states.get(model) in NOT_LOADED_STATES

    def mark_loaded(self, model: str) -> None:
        """``model`` answered: it is loaded now, whatever the last listing said."""
        with self._lock:
            if model in self._states:
                self._states[model] = "loaded"

    def check_listed(self, model: str) -> ModelNotFoundError | None:
        """List the models now (waiting for them) and say whether ``model`` is missing (None: listed, or unknown)."""
        self.refresh(wait=True, announce=False)
        return self.unknown_model_error(model)

    def unknown_model_error(self, model: str) -> ModelNotFoundError | None:
        """The error for a ``model`` the last listing does not have (None when it has it, or no listing came)."""
        with self._lock:
            listed = self._listed
        if listed is None or any(m.id == model or model in m.instance_ids for m in listed):
            return None
        ids = [m.id for m in listed]
        return ModelNotFoundError(
            unknown_model_text(model, ids, self.client.base_url), status_code=404, model=model, available=ids
        )

    # --- listing (background thread) -----------------------------------------------------------------------------
    def _load(self, announce: bool) -> None:
        try:
            models = self.client.list_models()
        except LMStudioError as err:
            self._report(f"Could not list models: {error_text(err)}", True, announce)
            return
        self._learn_who_answers()
        chat_models = [m for m in models if m.type not in EMBEDDING_TYPES]
        options = [(f"{m.id}  ●" if m.loaded else m.id, m.id) for m in chat_models]
        with self._lock:  # the user may have picked a model meanwhile: keep it
            self._listed = list(models)
            self._states = {m.id: m.state for m in models}
            before = current = self._model
            if current and current not in [value for _label, value in options]:
                options.append((current, current))
            if not current and chat_models:
                loaded = [m.id for m in chat_models if m.loaded]
                current = loaded[0] if loaded else chat_models[0].id
            self._filler = threading.get_ident()
            try:
                self.dropdown.options = options
                self.dropdown.value = current
            finally:
                self._filler = None
            # a pick that landed during the refill (on the widget's thread) was recorded, and the refill then set the
            # list back: the pick stands if its model is still listed
            picked = self._model
            if picked != before and picked in [value for _label, value in options]:
                current = picked
                self.dropdown.value = picked
            self._model = current
        missing = self.unknown_model_error(current) if current else None
        if missing is not None:
            self._report(missing.message, True, True)  # said even unasked: the next answer would fail
        else:
            self._report(f"{len(chat_models)} models · ● = loaded" if chat_models else "LM Studio lists no models",
                         False, announce)

    def _learn_who_answers(self) -> None:
        """Whether the server is this project's fake one, from the client (its greeting; asked once, here, in the
        background: never on the way to an answer)."""
        fake = getattr(self.client, "server_is_fake", None)
        if fake is None and not self._asked_who and hasattr(self.client, "server_is_fake"):
            self._asked_who = True
            with contextlib.suppress(LMStudioError):  # e.g. the client was closed meanwhile
                self.client.is_running()  # asks the greeting
            fake = getattr(self.client, "server_is_fake", None)
        self.server_is_fake = fake if isinstance(fake, bool) else None

    def _on_pick(self, change: dict[str, Any]) -> None:
        # the refilling thread's own changes are not picks; a pick from any other thread counts even during a refill
        if change["new"] is not None and self._filler != threading.get_ident():
            self._model = change["new"]


def unknown_model_text(model: str, ids: list[str], base_url: str) -> str:
    """What the panel says of a model id the server does not list (as ``%lm_use`` does, in the panel's words)."""
    if not ids:
        return (
            f'LM Studio at {base_url} has no model "{model}" and lists none: download one in LM Studio (Discover '
            "tab) or with `lms get <model>`."
        )
    guess = suggest_model(model, ids)
    hint = f' Did you mean "{guess}"?' if guess else ""
    shown = ", ".join(ids[:20]) + (" …" if len(ids) > 20 else "")
    return (
        f'LM Studio at {base_url} has no model "{model}".{hint} Available: {shown}. Pass one as ChatPanel(model=...) '
        "or pick it in the Model list."
    )


class StatusLine:
    """The panel's one line of status, as an HTML widget; written by the UI, the reader and the repaint thread.

    A ``notice`` (e.g. that the server is the bundled fake one) stays under whatever the line says.
    """

    def __init__(self) -> None:
        self.widget = widgets.HTML(value="")
        self.widget.add_class("lmnb-status")
        self._lock = threading.Lock()
        self._text = ""
        self._error = False
        self._notice = ""

    @property
    def text(self) -> str:
        return self._text

    def show(self, text: str, *, error: bool = False, only_if_empty: bool = False) -> None:
        """Show ``text`` (in red for an ``error``); with ``only_if_empty``, only on an empty line."""
        with self._lock:
            if only_if_empty and self._text:
                return
            self._text, self._error = text, error
            self._paint()

    @property
    def notice(self) -> str:
        return self._notice

    @notice.setter
    def notice(self, text: str) -> None:
        with self._lock:
            self._notice = text
            self._paint()

    def _paint(self) -> None:
        style = ' style="color:#b71c1c"' if self._error else ""
        value = f"<span{style}>{html.escape(self._text)}</span>"
        if self._notice:
            value += f'<br><span class="lmnb-notice">{html.escape(self._notice)}</span>'
        self.widget.value = value


class MessageInput:
    """The message box and the Send button: Enter sends, Shift+Enter starts a new line.

    The page's key handler marks a plain Enter with :data:`~lm_notebook.chat.widgets.SUBMIT_MARK` in the text (and
    routes Send the same way); this turns the mark into a call of ``send(text)``, after ``may_send()`` agrees (it
    says why not itself). A refused text stays in the box.
    """

    def __init__(self, send: Callable[[str], None], may_send: Callable[[], bool]) -> None:
        self._send = send
        self._may_send = may_send
        self.textarea = widgets.Textarea(
            value="", placeholder="Message — Enter sends, Shift+Enter starts a new line", rows=3,
            continuous_update=True, layout=widgets.Layout(width="100%"),
        )
        self.textarea.add_class("lmnb-input")
        self.send_button = widgets.Button(description="Send", icon="paper-plane", button_style="primary")
        self.send_button.add_class("lmnb-send")
        self.send_button.on_click(lambda _b: self._on_send_button())
        self.textarea.observe(self._on_value, names="value")

    def _on_value(self, change: dict[str, Any]) -> None:
        value = change["new"]
        if SUBMIT_MARK not in value:
            return
        text, _, rest = value.partition(SUBMIT_MARK)
        rest = rest.replace(SUBMIT_MARK, "")
        if not self._may_send() or not text.strip():
            self.textarea.value = text + rest
            return
        self.textarea.value = rest
        self._send(text)

    def _on_send_button(self) -> None:
        text = self.textarea.value.replace(SUBMIT_MARK, "")
        if not text.strip() or not self._may_send():
            return
        self.textarea.value = ""
        self._send(text)
