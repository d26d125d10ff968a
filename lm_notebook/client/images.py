"""Images as a request part: ``images=`` on ``chat``, ``stream_chat`` and ``send_message`` (pure; no network).

Each input — a path (``str`` or ``Path``), ``bytes``, a ``PIL.Image.Image``, a numpy array (H×W, H×W×3 or H×W×4;
uint8, or float in 0–1), a matplotlib ``Figure`` or an ``IPython.display.Image`` — becomes a base64 data URL: the
file's own bytes when it is a PNG, JPEG or WebP no larger than ``max_image_edge`` pixels a side, else a PNG (a JPEG
or WebP stays one) made by Pillow, downscaled keeping its aspect. They go with the last user message, as
``image_url`` content parts on ``/v1``. Anything that cannot be read is refused before anything is sent, naming
the input and the accepted kinds. Pillow (``lm_notebook[images]``) is imported only when an input needs it.

>>> sent = prepare_images(["chart.png"], max_edge=2048)   # doctest: +SKIP
>>> sent[0].width, sent[0].downscaled                     # doctest: +SKIP
(640, False)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lm_notebook.client.errors import LMStudioRequestError
from lm_notebook.client.image_formats import ImageHeader, sniff
from lm_notebook.client.types import SentImage

DEFAULT_MAX_IMAGE_EDGE = 2048
PILLOW_EXTRA = "pip install 'lm_notebook[images]'"
ACCEPTED_IMAGES = (
    "Accepted: a path (str or Path) to a PNG, JPEG or WebP file (other formats with Pillow), the bytes of one, a "
    "PIL.Image.Image, a numpy array (H×W, H×W×3 or H×W×4; uint8, or float in 0–1), a matplotlib Figure, or an "
    "IPython.display.Image."
)
_EXTENSIONS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}  # Pillow's format names

# what ``images=`` takes: a path, bytes, or an image object (PIL, numpy, matplotlib, IPython)
ImageInput = str | os.PathLike[str] | bytes | Any


def prepare_images(images: Iterable[ImageInput] | None, max_edge: int | None = DEFAULT_MAX_IMAGE_EDGE
                   ) -> tuple[SentImage, ...]:
    """Every input read, checked and encoded (see the module docstring); refused with its position if it cannot
    be. ``max_edge``: the longest side allowed, in pixels (None: never downscale)."""
    if images is None:
        return ()
    if (isinstance(images, (str, bytes, bytearray, os.PathLike)) or not isinstance(images, Iterable)
            or hasattr(images, "__array_interface__")):  # a numpy array is one picture, not a list of its rows
        images = [images]  # one image on its own is a list of one
    if max_edge is not None and (isinstance(max_edge, bool) or not isinstance(max_edge, int) or max_edge < 1):
        raise LMStudioRequestError(f"max_image_edge must be a positive number of pixels (or None), not {max_edge!r}.")
    return tuple(prepare_image(item, f"images[{i}]", max_edge) for i, item in enumerate(images))


def prepare_image(item: ImageInput, where: str, max_edge: int | None) -> SentImage:
    if isinstance(item, SentImage):  # prepared already (a front end showed it first): sent as it is
        return item
    if isinstance(item, (str, os.PathLike)):
        data, label = _read_path(item, where)
        return _from_bytes(data, label, where, max_edge)
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        return _from_bytes(data, f"bytes ({len(data):,} B)", where, max_edge)
    module = type(item).__module__
    if module.startswith("PIL.") and callable(getattr(item, "save", None)):
        return _from_pil(item, f"PIL image {item.width}×{item.height}", max_edge, original=None)
    if hasattr(item, "__array_interface__") and hasattr(item, "shape") and hasattr(item, "dtype"):
        return _from_array(item, where, max_edge)
    if module.startswith("matplotlib") and callable(getattr(item, "savefig", None)):
        buffer = io.BytesIO()
        item.savefig(buffer, format="png")
        return _from_bytes(buffer.getvalue(), "matplotlib Figure", where, max_edge)
    if module.startswith("IPython") and hasattr(item, "data"):
        return _from_ipython(item, where, max_edge)
    raise LMStudioRequestError(f"{where} is {_shown(item)} ({type(item).__name__}), not an image. {ACCEPTED_IMAGES}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_path(item: str | os.PathLike[str], where: str) -> tuple[bytes, str]:
    text = os.fspath(item)
    if isinstance(text, str) and text.startswith("data:"):
        return _data_url_bytes(text, where), "data URL"
    path = Path(text).expanduser()
    label = path.name or text
    if not path.is_file():
        problem = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise LMStudioRequestError(f"{where} is the path {text!r}, which {problem} (looked for {path.resolve()}). "
                                   f"{ACCEPTED_IMAGES}")
    try:
        return path.read_bytes(), label
    except OSError as exc:
        raise LMStudioRequestError(f"{where}: could not read {text!r} ({exc.strerror or exc}).") from exc


def _data_url_bytes(url: str, where: str) -> bytes:
    head, _, payload = url.partition(",")
    if not head.startswith("data:image/") or not head.endswith(";base64"):
        raise LMStudioRequestError(f"{where} is a data URL that is not a base64 image ({head[:40]!r}). "
                                   f"{ACCEPTED_IMAGES}")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise LMStudioRequestError(f"{where} is a data URL whose base64 does not decode ({exc}).") from exc


def _sent(data: bytes, header: ImageHeader, label: str, original: tuple[int, int] | None = None) -> SentImage:
    encoded = base64.b64encode(data).decode("ascii")
    width, height = original or (header.width, header.height)
    return SentImage(
        source=label, mime=header.mime, width=header.width, height=header.height, original_width=width,
        original_height=height, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()[:12],
        data_url=f"data:{header.mime};base64,{encoded}",
    )


def _too_big(header: ImageHeader, max_edge: int | None) -> bool:
    return max_edge is not None and max(header.width, header.height) > max_edge


def _from_bytes(data: bytes, label: str, where: str, max_edge: int | None) -> SentImage:
    header = sniff(data)
    if header is not None and not _too_big(header, max_edge):
        return _sent(data, header, label)
    why = (f"is {header.width}×{header.height}, larger than max_image_edge={max_edge}, and downscaling it"
           if header is not None else "is not a PNG, JPEG or WebP image, and converting it")
    image_module = _pillow(f"{where} ({label}) {why}")
    try:
        with image_module.open(io.BytesIO(data)) as opened:
            opened.load()
            image = opened.copy()
    except Exception as exc:  # PIL.UnidentifiedImageError, a truncated file, ...: Pillow cannot read it
        raise LMStudioRequestError(
            f"{where} ({label}) is not an image that can be read ({type(exc).__name__}: {exc}). {ACCEPTED_IMAGES}"
        ) from exc
    keep = header.mime if header is not None else None
    return _from_pil(image, label, max_edge, original=None, keep_mime=keep)


def _pillow(why: str) -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise LMStudioRequestError(f"{why} needs Pillow, which is not installed: {PILLOW_EXTRA}.") from exc
    return Image


def _from_pil(image: Any, label: str, max_edge: int | None, *, original: tuple[int, int] | None,
              keep_mime: str | None = None) -> SentImage:
    image_module = _pillow(f"{label}")
    size = original or (image.width, image.height)
    if max_edge is not None and max(image.width, image.height) > max_edge:
        image = image.copy()
        image.thumbnail((max_edge, max_edge), image_module.Resampling.LANCZOS)
    mime = keep_mime if keep_mime in ("image/jpeg", "image/webp") else "image/png"
    if mime == "image/jpeg" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    elif image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=_EXTENSIONS[mime], **({"quality": 90} if mime == "image/jpeg" else {}))
    data = buffer.getvalue()
    return _sent(data, ImageHeader(mime, image.width, image.height), label, size)


def _from_array(array: Any, where: str, max_edge: int | None) -> SentImage:
    shape = tuple(array.shape)
    label = f"numpy array {'×'.join(map(str, shape))}"
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (3, 4)) or 0 in shape:
        raise LMStudioRequestError(f"{where} is a {label}: an image array is H×W (grey), H×W×3 (RGB) or H×W×4 "
                                   f"(RGBA). {ACCEPTED_IMAGES}")
    kind = array.dtype.kind
    if kind == "f":
        low, high = float(array.min()), float(array.max())
        if not (low >= 0.0 and high <= 1.0):  # also refuses NaN
            raise LMStudioRequestError(
                f"{where} is a float {label} with values from {low:g} to {high:g}: float images must be in 0–1 "
                "(divide by 255, or pass .astype('uint8') for 0–255 values)."
            )
        array = (array * 255).round().astype("uint8")
    elif str(array.dtype) != "uint8":
        raise LMStudioRequestError(f"{where} is a {label} of {array.dtype}: pass uint8 (0–255) or float (0–1) "
                                   "values.")
    image_module = _pillow(f"{where} ({label}) becomes a PNG with Pillow, and this")
    image = image_module.fromarray(array)
    return _from_pil(image, label, max_edge, original=None)


def _from_ipython(item: Any, where: str, max_edge: int | None) -> SentImage:
    data = item.data
    if isinstance(data, (bytes, bytearray)):
        return _from_bytes(bytes(data), "IPython Image", where, max_edge)
    url = getattr(item, "url", None)
    raise LMStudioRequestError(
        f"{where} is an IPython.display.Image with no image data"
        + (f" (a link to {url!r}: download it and pass the file)" if url else "")
        + f". {ACCEPTED_IMAGES}"
    )


def with_images(messages: Sequence[dict[str, Any]], images: Sequence[SentImage]) -> list[dict[str, Any]]:
    """``messages`` with ``images`` as ``image_url`` parts after the text of the last user message."""
    out = [dict(m) for m in messages]
    if not images:
        return out
    for message in reversed(out):
        if message.get("role") == "user":
            content = message.get("content")
            text = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
            message["content"] = [*text, *(image.as_part() for image in images)]
            return out
    raise LMStudioRequestError("images= goes with the last user message, and these messages have none: add one "
                               '({"role": "user", "content": "What is in this picture?"}).')


def images_in(messages: Iterable[Any]) -> int:
    """How many image parts ``messages`` carry (``image_url`` parts, or native ``image`` items)."""
    count = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            count += sum(1 for part in content if isinstance(part, dict) and part.get("type") in ("image_url", "image"))
    return count


def images_hash(images: Sequence[SentImage]) -> str:
    """A short hash of the images' bytes, in order ("" for none): equal images, equal hash."""
    if not images:
        return ""
    return hashlib.sha256("".join(i.sha256 for i in images).encode()).hexdigest()[:12]
