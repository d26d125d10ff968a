"""The fake server's eyes: image parts in a chat request decoded and checked as LM Studio does.

``image_url`` parts on ``/v1`` (and ``image`` items with a ``data_url`` on the native route) must carry a base64
data URL of a PNG, JPEG or WebP image: anything else is a 400. A model without vision refuses images with LM
Studio's own error. What a vision model saw is said at the start of its reply ("I see an image of 640×480 pixels
(PNG)."), so tests can tell the image arrived whole.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lm_notebook.client.image_formats import ImageHeader, sniff
from lm_notebook.testing import error_bodies as errors
from lm_notebook.testing.catalogue import ModelSpec
from lm_notebook.testing.faults import ErrorStyle


class ImageRefused(Exception):
    """The request's images cannot be taken: answer with ``reply``."""

    def __init__(self, reply: errors.ErrorReply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def has_vision(spec: ModelSpec) -> bool:
    return spec.type == "vlm" or "vision" in spec.capabilities


def _urls(messages: Iterable[Any]) -> Iterable[tuple[str, Any]]:
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if not isinstance(part, Mapping):
                continue
            where = f"messages[{i}].content[{j}]"
            if part.get("type") == "image_url":
                inner = part.get("image_url")
                yield where, inner.get("url") if isinstance(inner, Mapping) else inner
            elif part.get("type") == "image":
                yield where, part.get("data_url", part.get("image_url"))


def _decoded(where: str, url: Any, style: ErrorStyle) -> ImageHeader:
    if not isinstance(url, str) or not url.startswith("data:"):
        raise ImageRefused(errors.bad_image(f"{where} is not a data URL (a local server does not fetch links)", style))
    head, _, payload = url.partition(",")
    if not head.startswith("data:image/") or not head.endswith(";base64"):
        raise ImageRefused(errors.bad_image(f"{where} is not a base64 image data URL ({head[:40]})", style))
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRefused(errors.bad_image(f"{where}: the base64 does not decode", style)) from None
    header = sniff(data)
    if header is None:
        raise ImageRefused(errors.bad_image(f"{where} is not a PNG, JPEG or WebP image", style))
    return header


def images_seen(spec: ModelSpec, messages: Sequence[Any], style: ErrorStyle) -> list[ImageHeader]:
    """Every image the request carries, decoded; :class:`ImageRefused` for a bad one, or for images sent to a model
    without vision."""
    urls = list(_urls(messages))
    if not urls:
        return []
    if not has_vision(spec):
        raise ImageRefused(errors.no_vision())
    return [_decoded(where, url, style) for where, url in urls]


def seen_note(images: Sequence[ImageHeader]) -> str:
    """The sentence a vision model's reply starts with: what it saw."""
    sizes = [f"{i.width}×{i.height} pixels ({i.mime.removeprefix('image/').upper()})" for i in images]
    if len(sizes) == 1:
        return f"I see an image of {sizes[0]}. "
    return f"I see {len(sizes)} images: {', '.join(sizes)}. "
