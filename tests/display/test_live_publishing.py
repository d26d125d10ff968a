"""Live frames in a kernel (issue 17): sent as the kernel's display publisher sends a display, without its flush of
stdout and stderr (two round trips to the kernel's IO thread a frame); the first output goes through ``display``.

The publisher here has what ipykernel's ``ZMQDisplayPublisher`` has (a session, a socket, the cell's parent header,
a topic) and, like it, flushes the streams in ``publish``: the test counts those flushes and reads the messages sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.displaypub import DisplayPublisher
from stream_view_doubles import installed_publisher

from lm_notebook.client.stream import StreamPart
from lm_notebook.display.answer import NotebookStreamView, stream_into


class Session:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, dict[str, Any], Any]] = []

    def msg(self, msg_type: str, content: dict[str, Any], parent: Any = None) -> dict[str, Any]:
        return {"msg_type": msg_type, "content": content, "parent_header": parent}

    def send(self, socket: Any, msg: dict[str, Any], ident: Any = None) -> None:
        self.sent.append((socket, msg, ident))


class KernelLikePublisher(DisplayPublisher):
    """ipykernel's publisher, as far as the views see it: ``publish`` flushes the streams first, then sends."""

    def __init__(self) -> None:
        super().__init__()
        self.session = Session()
        self.pub_socket = object()
        self.topic = b"display_data"
        self.parent_header = {"header": {"msg_id": "the-cell"}}
        self.flushes = 0

    def publish(self, data: Any, metadata: Any = None, source: Any = None, *, transient: Any = None,
                update: bool = False, **kw: Any) -> None:
        self.flushes += 1  # sys.stdout.flush() and sys.stderr.flush(), each a round trip to the IO thread
        msg = self.session.msg("update_display_data" if update else "display_data",
                               {"data": data, "metadata": metadata or {}, "transient": transient or {}},
                               parent=self.parent_header)
        self.session.send(self.pub_socket, msg, ident=self.topic)

    def clear_output(self, wait: bool = False) -> None:
        self.session.send(self.pub_socket, self.session.msg("clear_output", {"wait": wait}), ident=self.topic)


class Parts:
    def __init__(self, parts: list[StreamPart]) -> None:
        self._parts = parts

    def iter_parts(self) -> Iterator[StreamPart]:
        return iter(self._parts)

    def close(self) -> None:
        pass

    def result(self) -> Any:
        return None


@pytest.fixture
def kernel_publisher() -> Iterator[KernelLikePublisher]:
    with installed_publisher(KernelLikePublisher()) as pub:
        yield pub


def test_live_frames_skip_the_stream_flush_and_keep_the_cells_parent(kernel_publisher: KernelLikePublisher) -> None:
    view = NotebookStreamView("markdown", "qwen", interval=0.001)
    stream_into(Parts([StreamPart("content", f"word{i} ") for i in range(50)]), view)  # type: ignore[arg-type]
    messages = [msg for _, msg, _ in kernel_publisher.session.sent if msg["msg_type"] != "clear_output"]
    assert len(messages) >= 2, "the first output and at least the first token's frame"
    assert kernel_publisher.flushes == 1, "only the first output went through publish (and its flush)"
    first, *frames = messages
    assert first["msg_type"] == "display_data" and "waiting for the first token" in str(first["content"]["data"])
    for msg in frames:
        assert msg["parent_header"] == {"header": {"msg_id": "the-cell"}}
        assert msg["content"]["transient"]["display_id"] in view._display_ids
    assert frames[0]["msg_type"] == "update_display_data" and "word0" in frames[0]["content"]["data"]["text/markdown"]
    assert all(ident == b"display_data" for _, _, ident in kernel_publisher.session.sent)
