"""The prompt forms ``compare`` accepts, shaped into a list of :class:`~lm_notebook.compare_schedule.PromptItem`.

A string, a list of strings, a dict ``{name: prompt}``, a DataFrame with a ``template`` (or a ``prompt`` column), or
``(DataFrame, template)``. A DataFrame's columns are carried into the result (renamed ``<name>_input`` where they clash
with :data:`~lm_notebook.compare_rows.COLUMNS`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lm_notebook.client.errors import LMStudioRequestError
from lm_notebook.client.images import DEFAULT_MAX_IMAGE_EDGE, images_hash, prepare_images, with_images
from lm_notebook.client.interpolation import InterpolationError, fields, fill, reference_name
from lm_notebook.client.types import SentImage
from lm_notebook.comparison.rows import COLUMNS
from lm_notebook.comparison.schedule import PromptItem, made
from lm_notebook.comparison.scoring_columns import SCORE_COLUMNS


@dataclass(frozen=True)
class PromptInputs:
    """The prompts to send, and the columns a DataFrame of inputs brings to the result."""

    items: list[PromptItem]
    input_columns: list[str]  # a DataFrame input's columns, in order (renamed when they clash with ours)
    # prompts given as a DataFrame: its columns carried into the rows, each as named there → as named in a row
    frame_columns: Mapping[str, str] | None = None


def prompt_inputs(prompts: Any, template: str | None, images_column: str | None = None,
                  max_image_edge: int | None = DEFAULT_MAX_IMAGE_EDGE) -> PromptInputs:
    """Normalise the prompt forms: a string, a list, a dict, a DataFrame (+ template), (DataFrame, template). A dict's
    value may be ``{"prompt": ..., "images": [...]}``; a DataFrame's images are in ``images_column``. Images are
    downscaled to ``max_image_edge`` (as ``chat(max_image_edge=...)`` does)."""
    prepare_images((), max_image_edge)  # a bad edge is refused even when no prompt has images
    if isinstance(prompts, tuple) and len(prompts) == 2 and isinstance(prompts[0], pd.DataFrame):
        if template is not None:
            raise ValueError("Give the template once: either (df, template) or template=..., not both.")
        prompts, template = prompts
    if isinstance(prompts, pd.DataFrame):
        return with_image_columns(_frame_items(prompts, template, images_column, max_image_edge))
    if images_column is not None:
        raise ValueError("images_column= names a column of a DataFrame of inputs; with a dict, give each prompt "
                         'its images: {"name": {"prompt": "...", "images": [...]}}.')
    if template is not None:
        raise ValueError("template= goes with a DataFrame of inputs: compare(df, models, template='... {column} ...').")
    if isinstance(prompts, str):
        prompts = [prompts]
    if isinstance(prompts, Mapping):
        items = [_item(name, value, max_image_edge) for name, value in prompts.items()]
    elif isinstance(prompts, Sequence):
        items = [_item(i, value, max_image_edge) for i, value in enumerate(prompts)]
    else:
        raise TypeError(
            "prompts must be a string, a list of strings, a dict {name: prompt}, or a DataFrame with a template, "
            f"not {type(prompts).__name__}."
        )
    if not items:
        raise ValueError("No prompts given: pass at least one.")
    fields = list(dict.fromkeys(k for item in items for k in (item.columns or {})))
    return with_image_columns(PromptInputs(items, fields))


def _item(name: Hashable, value: Any, max_image_edge: int | None) -> PromptItem:
    """A prompt given as text, or as a dict with its text under ``prompt``, its images under ``images``, and other
    fields (``expected``…) that become columns of the result."""
    if not isinstance(value, Mapping):
        return made(PromptItem, name=name, text=_checked_text(value, name), columns=None, images=())
    if "prompt" not in value:
        raise ValueError(f"Prompt {name!r} is a dict without a 'prompt' field: {{'prompt': '...', 'expected': ...}}.")
    fields = {input_column(k): v for k, v in value.items() if k not in ("prompt", "images")}
    images = _images(value.get("images"), name, max_image_edge)
    return PromptItem(name, _checked_text(value["prompt"], name), fields or None, images)


def input_column(name: Hashable) -> str:
    """An input field's column in the result: renamed ``<name>_input`` when it would clash with one of ours (the
    result's columns, and ``check_*``, where the checks' scores go)."""
    text = str(name)
    clashes = text in COLUMNS or text in SCORE_COLUMNS or text.startswith("check_")
    return f"{text}_input" if clashes else text


def _images(value: Any, name: Hashable, max_image_edge: int | None) -> tuple[SentImage, ...]:
    """A prompt's images, read and checked now (before anything is sent); none for None or NaN."""
    if value is None or (isinstance(value, float) and value != value):
        return ()
    try:
        return prepare_images(value, max_image_edge)
    except LMStudioRequestError as err:
        raise LMStudioRequestError(f"Prompt {name!r}: {err.message}") from None


def with_image_columns(inputs: PromptInputs) -> PromptInputs:
    """When any prompt has images, every row says how many, and a short hash of them (``images``,
    ``images_hash``): rows and cached answers are matched to the images they were asked about."""
    if not any(item.images for item in inputs.items):
        return inputs
    items = [dataclasses.replace(item, columns={**(item.columns or {}), "images": len(item.images),
                                                "images_hash": images_hash(item.images)})
             for item in inputs.items]
    kept = [c for c in inputs.input_columns if c not in ("images", "images_hash")]
    return PromptInputs(items, [*kept, "images", "images_hash"], inputs.frame_columns)


def _checked_text(text: Any, name: Hashable) -> str:
    if not isinstance(text, str):
        raise TypeError(f"Prompt {name!r} must be a string, not {type(text).__name__}.")
    return text


def _frame_items(df: pd.DataFrame, template: str | None, images_column: str | None,
                 max_image_edge: int | None) -> PromptInputs:
    if len(df) == 0:
        raise ValueError("The DataFrame of prompts is empty.")
    if template is None and "prompt" not in df.columns:
        raise ValueError(
            "A DataFrame of inputs needs a template that builds each prompt from its columns, e.g. "
            f"compare(df, models, template='Summarize: {{{df.columns[0]}}}'), or a 'prompt' column."
        )
    if images_column is not None and images_column not in df.columns:
        raise ValueError(f"images_column={images_column!r} is not a column; the columns are "
                         f"{[str(c) for c in df.columns]}.")
    renamed = {str(c): input_column(c) for c in df.columns}
    keep = [c for c in df.columns if (template is not None or str(c) != "prompt") and c != images_column]
    if template is not None:
        _check_template(template, [str(c) for c in df.columns])
    items = []
    for label, row in df.iterrows():
        values = {str(k): v for k, v in row.items()}
        if template is None:
            text = _checked_text(values["prompt"], label)
        else:
            try:
                # the same rule as %%lm: {column} is filled, braces that name nothing (JSON) are sent as written
                text = fill(template, values, hidden=())
            except InterpolationError as exc:
                raise ValueError(f"Row {label!r}: {exc}") from None
        images = _images(row[images_column], label, max_image_edge) if images_column is not None else ()
        items.append(PromptItem(label, text, {renamed[str(c)]: row[c] for c in keep}, images))
    return PromptInputs(items, [renamed[str(c)] for c in keep], {str(c): renamed[str(c)] for c in keep})


def _check_template(template: str, columns: list[str]) -> None:
    """A bare ``{name}`` that is no column is a typo here (the namespace is just the columns): say so up front."""
    named = [name for name in map(reference_name, fields(template)) if name is not None]
    if not named:
        raise ValueError(
            f"The template {template!r} fills nothing from the columns {columns}: refer to one as {{column}} "
            "(braces that name no column are sent as written)."
        )
    for name in named:
        if name not in columns:
            raise ValueError(
                f"The template refers to {{{name}}}, which is not a column; the columns are {columns}. "
                "Write {{" + name + "}} for literal braces."
            )


def chat_messages(text: str, system: str | None, images: Sequence[SentImage] = ()) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": text})
    return with_images(messages, images) if images else messages

