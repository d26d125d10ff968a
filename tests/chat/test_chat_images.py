"""Images in the chat panel: ``chat.send(text, images=[...])`` and the attach control, thumbnails in the conversation,
``to_markdown()`` (data URLs) and ``to_dataframe()`` (a count) — against the fake server over loopback HTTP."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from panel_page import page_text
from PIL import Image

from lm_notebook import ChatPanel, LMStudioClient
from lm_notebook.chat.widgets import SUBMIT_MARK
from lm_notebook.testing import MockLMStudioServer

VISION = "google/gemma-3-4b"


def png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "olive").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def vision_panel(lmstudio_mock: MockLMStudioServer) -> Iterator[ChatPanel]:
    with LMStudioClient(lmstudio_mock.url, timeout=30) as client, ChatPanel(client, model=VISION) as chat:
        yield chat


def chat_bodies(server: MockLMStudioServer) -> list[dict[str, object]]:
    return [r.chat_body for r in server.requests if r.is_chat]


def test_send_with_images_shows_thumbnails_and_the_model_sees_them(
    vision_panel: ChatPanel, lmstudio_mock: MockLMStudioServer
) -> None:
    result = vision_panel.send("What is in the picture?", images=[png((48, 24))]).wait(30)
    assert result is not None and result.content.startswith("I see an image of 48×24 pixels (PNG).")
    user_view = vision_panel._messages_box.children[0]
    assert '<img src="data:image/png;base64,' in user_view.children[-1].value
    # the next turn still carries the picture: the model sees the whole conversation
    second = vision_panel.send("And its colour?").wait(30)
    assert second is not None
    first_user = chat_bodies(lmstudio_mock)[-1]["messages"][0]  # type: ignore[index]
    assert [p["type"] for p in first_user["content"]] == ["text", "image_url"]
    markdown = vision_panel.to_markdown()
    assert "### You\n\nWhat is in the picture?\n\n![bytes (" in markdown and "](data:image/png;base64," in markdown
    frame = vision_panel.to_dataframe()
    assert frame["images"].tolist() == [1, 0, 0, 0]


def test_the_attach_control_sends_its_images_with_the_typed_message_then_empties(
    vision_panel: ChatPanel, lmstudio_mock: MockLMStudioServer
) -> None:
    assert vision_panel.attach.accept == "image/*" and vision_panel.attach.multiple
    picked = {"name": "a.png", "type": "image/png", "size": 10, "content": memoryview(png((8, 6))),
              "last_modified": datetime.now(timezone.utc)}
    vision_panel.attach.value = (picked,)  # what the browser's file picker syncs
    vision_panel.input.value = "Describe it" + SUBMIT_MARK  # Enter in the page
    reply = vision_panel.replies[-1]
    assert reply.wait(30) is not None and reply.content.startswith("I see an image of 8×6 pixels")
    assert vision_panel.attach.value == ()  # sent once, then forgotten
    last = chat_bodies(lmstudio_mock)[-1]["messages"][-1]  # type: ignore[index]
    assert [p["type"] for p in last["content"]] == ["text", "image_url"]


def test_a_bad_image_or_a_model_without_vision_is_said_in_the_panel(
    panel: ChatPanel, lmstudio_mock: MockLMStudioServer
) -> None:
    with pytest.raises(ValueError, match=r"images\[0\] is 42 \(int\), not an image"):
        panel.send("What?", images=[42])
    assert panel.history == []
    reply = panel.send("What?", images=[png((4, 4))])  # the panel's model, qwen2.5-7b-instruct, has no vision
    assert reply.wait(30) is None and "cannot see images" in str(reply.error)
    assert f"Vision models on this server: {VISION}" in page_text(panel.widget)
    assert chat_bodies(lmstudio_mock) == []


def test_a_refused_image_does_not_poison_later_turns_and_comes_back_to_the_input(
    panel: ChatPanel, lmstudio_mock: MockLMStudioServer
) -> None:
    reply = panel.send("What is this?", images=[png((4, 4))])  # qwen2.5-7b-instruct has no vision
    assert reply.wait(30) is None and "cannot see images" in str(reply.error)
    # the prompt and its image are back, ready to send to a vision model; nothing refused is in the history
    assert panel.input.value == "What is this?"
    (restored,) = panel.attach.value
    assert restored["type"] == "image/png" and bytes(restored["content"]).startswith(b"\x89PNG")
    assert panel.history == []
    assert "will not be sent with later messages" in page_text(panel.widget)
    panel.input.value = ""
    panel.attach.value = ()
    later = panel.send("Just text now").wait(30)  # the same model answers: the refused image is not sent again
    assert later is not None and later.content
    (body,) = chat_bodies(lmstudio_mock)
    assert body["messages"] == [{"role": "user", "content": "Just text now"}]
    # Retry of a withheld message sends it again (asked for): switch to a vision model first
    panel.send("Look again", images=[png((6, 6))]).wait(30)
    panel.model = VISION
    again = panel.retry().wait(30)
    assert again is not None and again.content.startswith("I see an image of 6×6 pixels")


def test_the_panel_downscales_to_its_max_image_edge(lmstudio_mock: MockLMStudioServer) -> None:
    with LMStudioClient(lmstudio_mock.url, timeout=30) as client, \
            ChatPanel(client, model=VISION, max_image_edge=16) as chat:
        result = chat.send("What?", images=[png((64, 32))]).wait(30)
    assert result is not None and result.content.startswith("I see an image of 16×8 pixels")
    with LMStudioClient(lmstudio_mock.url, timeout=30) as client, pytest.raises(Exception, match="max_image_edge"):
        ChatPanel(client, model=VISION, max_image_edge=0)
