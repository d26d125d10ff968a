"""What ``%lm_models`` shows: the models LM Studio has, one row each, as text and as an HTML table (pure)."""

from __future__ import annotations

import html
from typing import Any

from lm_notebook.client.types import ModelInfo

Bundle = dict[str, Any]

_MODEL_COLUMNS = ("", "id", "type", "state", "format", "quantization", "arch", "context", "abilities", "slots")

FAKE_SERVER_CAPTION = (
    "These models are the bundled fake LM Studio server's: its answers are canned. Set LMSTUDIO_BASE_URL "
    "(or %config LMMagics.base_url) to reach your LM Studio."
)


def _context_cell(model: ModelInfo) -> str:
    if model.loaded_context_length and model.max_context_length and model.loaded and (
        model.loaded_context_length != model.max_context_length
    ):
        return f"{model.loaded_context_length} of {model.max_context_length}"
    value = model.context_length
    return str(value) if value else "—"


def _abilities_cell(model: ModelInfo) -> str:
    """What the model can do beyond text, as the server reports it (``/api/v1/models``'s capabilities)."""
    shown = [name for name, flag in (("vision", model.vision), ("tools", model.trained_for_tool_use)) if flag]
    if shown:
        return ", ".join(shown)
    return "—" if model.vision is None and model.trained_for_tool_use is None else "text"


def model_table(
    models: list[ModelInfo], *, current: str | None, base_url: str, fake_server: bool = False
) -> Bundle:
    """What ``%lm_models`` shows: one row per model, the current one marked ``▶``.

    ``fake_server``: the server is the bundled fake one; a caption says so, and how to reach a real LM Studio.
    """
    caption = [FAKE_SERVER_CAPTION] if fake_server else []
    if not models:
        text = (
            f"LM Studio at {base_url} has no models. Download one in LM Studio's Discover tab or with "
            "`lms get <model>`, then load it in the Developer tab or with `lms load <model>`."
        )
        paragraphs = [text, *caption]
        return {
            "text/plain": "\n".join(paragraphs),
            "text/html": "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs),
        }
    rows = [
        (
            "▶" if current is not None and (m.id == current or current in m.instance_ids) else "",
            m.id,
            m.type or "—",
            m.state or "—",
            m.format or "—",
            m.quantization or "—",
            m.arch or "—",
            _context_cell(m),
            _abilities_cell(m),
            str(m.parallel) if m.parallel is not None and m.loaded else "—",
        )
        for m in models
    ]
    widths = [max(len(str(r[i])) for r in [_MODEL_COLUMNS, *rows]) for i in range(len(_MODEL_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [_MODEL_COLUMNS, *rows]]
    note = f"{len(models)} model{'s' if len(models) != 1 else ''} at {base_url}"
    if current is None:
        note += " · no current model: choose one with %lm_use MODEL"
    embedders = [m.id for m in models if m.type in ("embeddings", "embedding")]
    if embedders:  # they cannot chat: what they are for
        plural = "s" if len(embedders) > 1 else ""
        note += f" · embedding model{plural} (client.embed, similar_to): {', '.join(embedders)}"
    plain = "\n".join([*lines, note, *caption])
    head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in _MODEL_COLUMNS)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td style='text-align:left'>{'<b>' + html.escape(c) + '</b>' if r[0] and i == 1 else html.escape(c)}</td>"
            for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    rich = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table><p><sub>{html.escape(note)}</sub></p>"
    rich += "".join(f"<p><b>{html.escape(c)}</b></p>" for c in caption)
    return {"text/plain": plain, "text/html": rich}
