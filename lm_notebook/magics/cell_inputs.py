"""What ``%%lm -i NAME`` and ``--schema NAME`` name: the user's variables (or, for an image, a file), resolved and
checked before anything is sent, each problem one line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError

from lm_notebook.client.errors import LMStudioRequestError
from lm_notebook.client.images import DEFAULT_MAX_IMAGE_EDGE, prepare_images
from lm_notebook.client.schemas import AnswerSchema
from lm_notebook.client.types import SentImage


def cell_images(names: Sequence[str] | None, user_ns: Mapping[str, Any],
                max_image_edge: int | None = DEFAULT_MAX_IMAGE_EDGE) -> tuple[SentImage, ...]:
    """Each ``-i NAME``: a variable holding an image (or a list of images), else a path to an image file; read and
    encoded now (downscaled to ``max_image_edge``), so a bad one stops the cell before anything is sent (and the
    thumbnails show what goes)."""
    if max_image_edge is not None and max_image_edge < 1:
        raise UsageError(f"--max-image-edge must be a positive number of pixels, not {max_image_edge}.")
    items: list[Any] = []
    for name in names or ():
        if name in user_ns:
            value = user_ns[name]
            items.extend(value if isinstance(value, (list, tuple)) else [value])
        elif Path(name).expanduser().is_file():
            items.append(name)
        else:
            raise UsageError(
                f"-i {name}: there is no variable {name!r} and no file {name!r} (looked in {Path.cwd()}). Pass a "
                "variable holding an image (a matplotlib Figure, PIL image, numpy array, bytes) or a file's path."
            )
    try:
        return prepare_images(items, max_image_edge)
    except LMStudioRequestError as err:
        raise UsageError(f"-i: {err}") from None


def cell_schema(name: str | None, user_ns: Mapping[str, Any]) -> AnswerSchema | None:
    """``--schema NAME``: the variable's pydantic model class or JSON-schema dict, checked."""
    if name is None:
        return None
    if name not in user_ns:
        raise UsageError(f"--schema {name}: there is no variable {name!r}. Define a pydantic model class (class "
                         f"{name}(BaseModel): ...) or a JSON-schema dict with that name first.")
    try:
        return AnswerSchema.of(user_ns[name])
    except LMStudioRequestError as err:
        raise UsageError(f"--schema {name}: {err}") from None
