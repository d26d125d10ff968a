"""Images a prompt carried, as thumbnails (pure), and a parsed structured answer as a table or pretty JSON.

The thumbnails are the images' own data URLs, sized down by the browser (``max-height``): the notebook keeps what
was sent, with no file beside it. :class:`ThumbnailedView` shows them above a streamed answer in a cell; since the
live view is cleared when the answer comes (``clear_output(wait=True)``), it shows them again at that moment, so
the saved notebook holds them once, above the answer.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from typing import Any

from lm_notebook.client.accumulator import StreamPart
from lm_notebook.client.types import ChatResult, SentImage

Bundle = dict[str, Any]
THUMBNAIL_PX = 160


def thumbnail_html(images: Sequence[SentImage], *, height: int = THUMBNAIL_PX) -> str:
    tags = "".join(
        f'<img src="{image.data_url}" alt="{html.escape(image.source)}" title="{html.escape(image.note)}" '
        f'style="max-height: {height}px; max-width: {2 * height}px; margin: 0 6px 6px 0; border-radius: 4px">'
        for image in images
    )
    return f'<div class="lm-notebook-images">{tags}</div>'


def thumbnails_text(images: Sequence[SentImage]) -> str:
    return "\n".join(f"[image: {image.note}]" for image in images)


def thumbnails_bundle(images: Sequence[SentImage]) -> Bundle:
    """The images as one output: thumbnails in HTML, a line per image in text."""
    return {"text/plain": thumbnails_text(images), "text/html": thumbnail_html(images)}


def jsonable(value: Any) -> Any:
    """A parsed answer as plain JSON values (a pydantic instance through ``model_dump``)."""
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    return value


def parsed_markdown(value: Any, fence: Callable[[str, str], str]) -> tuple[str, str]:
    """A parsed answer as (Markdown, plain text): a pydantic instance of scalar fields as a field | value table,
    anything else (a dict schema's value, ``-f json``) as pretty JSON."""
    plain_value = jsonable(value)
    pretty = json.dumps(plain_value, indent=2, ensure_ascii=False, default=str)
    if plain_value is not value and isinstance(plain_value, dict) and plain_value and all(
        not isinstance(v, (dict, list)) for v in plain_value.values()
    ):
        rows = "\n".join(f"| {_cell(k)} | {_cell(json.dumps(v, ensure_ascii=False))} |" for k, v in plain_value.items())
        return f"| field | value |\n|---|---|\n{rows}", pretty
    return fence(pretty, "json"), pretty


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


class ThumbnailedView:
    """A cell's stream view with the prompt's images shown above it (see the module docstring); what
    :func:`~lm_notebook.display.answer.stream_into` drives (start, add, stop)."""

    def __init__(self, view: Any, images: Sequence[SentImage], *, again_at_stop: bool, show: Any) -> None:
        self._view = view
        self._bundle = thumbnails_bundle(images)
        self._again = again_at_stop
        self._show = show

    def start(self) -> None:
        self._show(self._bundle)
        self._view.start()

    def add(self, part: StreamPart) -> None:
        self._view.add(part)

    def stop(self) -> None:
        self._view.stop()
        if self._again:
            self._show(self._bundle)  # this output clears the live view and the first thumbnails: shown once

    def show_final(self, result: ChatResult, fmt: Any, *, parsed: Any = None, note: str | None = None) -> None:
        self._view.show_final(result, fmt, parsed=parsed, note=note)
