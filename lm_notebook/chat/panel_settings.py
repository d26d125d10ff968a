"""The chat panel's settings as properties: the model, temperature, token limit and system prompt the next answer is
asked with, each read from its control and checked where it is set (a value the panel cannot use is refused with the
rule, never clamped; the rules are :mod:`~lm_notebook.chat.controls`'s).

:class:`PanelSettings` is a base of :class:`~lm_notebook.chat.panel.ChatPanel`, which builds the controls it reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as widgets

from lm_notebook.chat.controls import (
    MaxTokensInput,
    ModelPicker,
    TemperatureSlider,
    checked_max_tokens,
    checked_model_id,
    checked_temperature,
)
from lm_notebook.client.errors import LMStudioRequestError

DEFAULT_TEMPERATURE = 0.7


def checked_integrations(
    integrations: Sequence[str | Mapping[str, Any]] | None, with_tools: bool
) -> list[str | Mapping[str, Any]]:
    """``ChatPanel(integrations=...)`` as a list, or ``LMStudioRequestError`` saying what is wrong with it."""
    if integrations is None:
        return []
    if isinstance(integrations, (str, Mapping)):
        integrations = [integrations]  # one id alone is one integration, not its letters
    items = list(integrations)
    bad = [i for i in items if not (isinstance(i, Mapping) or (isinstance(i, str) and i.strip()))]
    if bad:
        raise LMStudioRequestError(
            f"integrations takes LM Studio plugin ids such as 'mcp/playwright' (or the native route's dicts), not "
            f"{bad[0]!r}."
        )
    if items and with_tools:
        raise LMStudioRequestError(
            "tools= (functions the panel runs, on the OpenAI route) and integrations= (MCP tools LM Studio runs, on "
            "its native route) cannot be combined in one panel: pass one or the other."
        )
    return items


class PanelSettings:
    """``model``, ``temperature``, ``max_tokens``, ``system`` and the ``params`` they make, over the controls."""

    # built by the panel
    _models: ModelPicker
    temperature_slider: TemperatureSlider
    max_tokens_input: MaxTokensInput
    system_input: widgets.Textarea
    extra_params: dict[str, Any]

    @staticmethod
    def _checked_settings(model: str | None, params: dict[str, Any]) -> tuple[str | None, float, int]:
        """The constructor's model, temperature and max_tokens (the last two popped from ``params``; None = the
        default), checked: ``LMStudioRequestError`` for a value the panel cannot use."""
        temperature = params.pop("temperature", None)
        temperature = DEFAULT_TEMPERATURE if temperature is None else checked_temperature(temperature)
        max_tokens = params.pop("max_tokens", None)
        max_tokens = -1 if max_tokens is None else checked_max_tokens(max_tokens)
        return (None if model is None else checked_model_id(model)), temperature, max_tokens

    @property
    def model(self) -> str | None:
        return self._models.model

    @model.setter
    def model(self, model_id: str | None) -> None:
        self._models.model = None if model_id is None else checked_model_id(model_id)

    @property
    def temperature(self) -> float:
        return float(self.temperature_slider.value)

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.temperature_slider.value = checked_temperature(value)

    @property
    def max_tokens(self) -> int:
        """The longest answer in tokens; -1 = no limit."""
        return int(self.max_tokens_input.value)

    @max_tokens.setter
    def max_tokens(self, value: int) -> None:
        self.max_tokens_input.value = checked_max_tokens(value)

    @property
    def system(self) -> str:
        return str(self.system_input.value)

    @system.setter
    def system(self, text: str | None) -> None:
        self.system_input.value = text or ""

    @property
    def params(self) -> dict[str, Any]:
        """The chat parameters the next answer is asked with."""
        return {**self.extra_params, "temperature": self.temperature, "max_tokens": self.max_tokens}
