"""The chat panel's attach control: an ipywidgets ``FileUpload`` for images, whose files go with the next message
sent from the panel (then it empties)."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any

import ipywidgets as widgets

from lm_notebook.client.types import SentImage


class ImageAttach:
    """The 📎 control: pick images (several at once); they are sent with the next message, then forgotten."""

    def __init__(self) -> None:
        self.upload = widgets.FileUpload(accept="image/*", multiple=True, description="Image",
                                         tooltip="Attach images for a vision model (sent with the next message)")
        self.upload.add_class("lmnb-attach")
        self.upload.layout.width = "96px"

    @property
    def widget(self) -> Any:
        return self.upload

    def files(self) -> list[bytes]:
        """The images picked so far, as bytes (ipywidgets 8 keeps each file's ``content`` as a memoryview)."""
        return [bytes(item["content"]) for item in self.upload.value]

    def clear(self) -> None:
        self.upload.value = ()


    def restore(self, images: tuple[SentImage, ...]) -> None:
        """Attach ``images`` again (as they were sent), as if picked: a refused message's images are not lost."""
        now = datetime.now(timezone.utc)
        self.upload.value = tuple(
            {"name": image.source, "type": image.mime, "size": image.size_bytes, "last_modified": now,
             "content": memoryview(base64.b64decode(image.data_url.partition(",")[2]))}
            for image in images
        )
