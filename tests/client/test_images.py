"""``images=``: every input kind sent as a data URL to a vision model over loopback HTTP against the fake server (sync
and async twins), downscaling, refusals before sending, and the vision check."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from lm_notebook import (
    AsyncLMStudioClient,
    InvalidRequestError,
    LMStudioClient,
    LMStudioRequestError,
    ModelNotFoundError,
)
from lm_notebook.client.image_formats import sniff
from lm_notebook.client.images import images_hash, prepare_images
from lm_notebook.client.native_types import Route
from lm_notebook.testing import MockLMStudioServer

VISION = "google/gemma-3-4b"
TEXT_ONLY = "qwen2.5-7b-instruct"


def encoded(size: tuple[int, int], fmt: str = "PNG", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "teal").save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def call(mode: str, url: str, method: str, *args: Any, route: Route = "openai", **kw: Any) -> Any:
    """``method`` of a client for ``url``; on the OpenAI route unless asked (these tests read its messages)."""
    kw.setdefault("model", VISION) if method != "send_message" else None
    if mode == "sync":
        with LMStudioClient(url, model=VISION, route=route) as client:
            if method == "stream_chat":
                with client.stream_chat(*args, **kw) as stream:
                    return stream.result()
            return getattr(client, method)(*args, **kw)

    async def run() -> Any:
        async with AsyncLMStudioClient(url, model=VISION, route=route) as client:
            if method == "stream_chat":
                async with client.stream_chat(*args, **kw) as stream:
                    return await stream.result()
            return await getattr(client, method)(*args, **kw)

    return asyncio.run(run())


def sent_images(server: MockLMStudioServer) -> list[dict[str, Any]]:
    """The images of the last chat request, as OpenAI's parts (the native route's items said so)."""
    body = server.requests[-1].json
    if "input" in body:  # LM Studio 0.4's native route
        return [{"type": "image_url", "image_url": {"url": i["data_url"]}} for i in body["input"]
                if i["type"] == "image"]
    return [part for part in body["messages"][-1]["content"] if part["type"] == "image_url"]


def inputs(tmp_path: Path) -> dict[str, tuple[Any, str, tuple[int, int]]]:
    """Every accepted kind: the input, the type it is sent as, its size."""
    import matplotlib

    matplotlib.use("Agg")
    from IPython.display import Image as IPythonImage
    from matplotlib.figure import Figure

    png = tmp_path / "chart.png"
    png.write_bytes(encoded((64, 48)))
    gif = tmp_path / "anim.gif"
    gif.write_bytes(encoded((20, 10), "GIF"))
    figure = Figure(figsize=(2, 1), dpi=50)
    figure.add_subplot().plot([1, 2, 3])
    return {
        "str path": (str(png), "image/png", (64, 48)),
        "Path": (png, "image/png", (64, 48)),
        "png bytes": (encoded((30, 20)), "image/png", (30, 20)),
        "jpeg bytes": (encoded((30, 20), "JPEG"), "image/jpeg", (30, 20)),
        "webp bytes": (encoded((30, 20), "WEBP"), "image/webp", (30, 20)),
        "gif path (converted)": (gif, "image/png", (20, 10)),
        "PIL image": (Image.new("RGBA", (16, 8)), "image/png", (16, 8)),
        "numpy grey uint8": (np.zeros((12, 10), dtype=np.uint8), "image/png", (10, 12)),
        "numpy rgb uint8": (np.full((12, 10, 3), 200, dtype=np.uint8), "image/png", (10, 12)),
        "numpy rgba float": (np.full((6, 4, 4), 0.5), "image/png", (4, 6)),
        "matplotlib Figure": (figure, "image/png", (100, 50)),
        "IPython Image": (IPythonImage(data=encoded((9, 7))), "image/png", (9, 7)),
    }


def test_every_kind_of_input_arrives_as_a_data_url(lmstudio_mock: MockLMStudioServer, tmp_path: Path) -> None:
    for name, (item, mime, (width, height)) in inputs(tmp_path).items():
        result = call("sync", lmstudio_mock.url, "chat", "What is in the picture?", images=[item])
        (part,) = sent_images(lmstudio_mock)
        url = part["image_url"]["url"]
        assert url.startswith(f"data:{mime};base64,"), name
        header = sniff(base64.b64decode(url.partition(",")[2]))
        assert header is not None and (header.width, header.height) == (width, height), name
        assert result.content.startswith(f"I see an image of {width}×{height} pixels"), name
        assert result.images[0].mime == mime and not result.images[0].downscaled, name


def test_images_go_with_the_last_user_message_in_each_call(lmstudio_mock: MockLMStudioServer, mode: str) -> None:
    png = encoded((40, 30))
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    for method, args in (("chat", ([*history, {"role": "user", "content": "And this?"}],)),
                         ("stream_chat", ("What is it?",)), ("send_message", ("Describe it.",))):
        kw: dict[str, Any] = {"images": [png, png]}
        if method == "send_message":
            kw["conversation_history"] = history
        result = call(mode, lmstudio_mock.url, method, *args, **kw)
        messages = lmstudio_mock.requests[-1].json["messages"]
        assert [m["content"] for m in messages[:-1]] == (["Hi", "Hello!"] if method != "stream_chat" else [])
        text, *images = messages[-1]["content"]
        assert text["type"] == "text" and [i["type"] for i in images] == ["image_url", "image_url"], method
        assert result.content.startswith("I see 2 images: 40×30 pixels (PNG), 40×30 pixels (PNG)."), method
        assert len(result.images) == 2


def test_a_large_image_is_downscaled_keeping_its_aspect_and_the_result_says_so(
    lmstudio_mock: MockLMStudioServer, tmp_path: Path
) -> None:
    big = tmp_path / "photo.jpg"
    big.write_bytes(encoded((3000, 1000), "JPEG"))
    result = call("sync", lmstudio_mock.url, "chat", "What is it?", images=[big])
    sent = result.images[0]
    assert (sent.width, sent.height, sent.mime) == (2048, 683, "image/jpeg") and sent.downscaled
    assert sent.note == "photo.jpg: downscaled from 3000×1000 to 2048×683 JPEG"
    assert result.content.startswith("I see an image of 2048×683 pixels (JPEG)")
    small = call("sync", lmstudio_mock.url, "chat", "What is it?", images=[big], max_image_edge=300)
    assert (small.images[0].width, small.images[0].height) == (300, 100)
    whole = call("sync", lmstudio_mock.url, "chat", "What is it?", images=[big], max_image_edge=None)
    assert (whole.images[0].width, whole.images[0].height) == (3000, 1000) and not whole.images[0].downscaled


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("missing.png", r"images\[0\] is the path 'missing.png', which does not exist"),
        (".", "which is a folder, not a file"),
        (42, r"images\[0\] is 42 \(int\), not an image\. Accepted: a path"),
        (b"GIF-ish nonsense", r"is not an image that can be read"),
        (np.zeros((4, 4, 2), dtype=np.uint8), "an image array is H×W"),
        (np.full((4, 4), 3.5), "float images must be in 0–1"),
        (np.zeros((4, 4), dtype=np.int64), "pass uint8"),
        ("data:text/plain;base64,aGk=", "is a data URL that is not a base64 image"),
        (42.0, "not an image"),
    ],
)
def test_unreadable_inputs_are_refused_before_sending(
    lmstudio_mock: MockLMStudioServer, item: Any, message: str
) -> None:
    with LMStudioClient(lmstudio_mock.url, model=VISION) as client:
        for method in (client.chat, client.stream_chat):
            with pytest.raises(LMStudioRequestError, match=message):
                method("What is it?", images=[item])
    assert lmstudio_mock.requests == []


def test_an_ipython_image_link_is_refused() -> None:
    from IPython.display import Image as IPythonImage

    with pytest.raises(LMStudioRequestError, match=r"a link to 'https://example\.com/x\.png': download it"):
        prepare_images([IPythonImage(url="https://example.com/x.png")])


def test_without_pillow_png_jpeg_and_webp_still_work_and_the_rest_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (png, jpeg, webp) = (encoded((5, 4)), encoded((5, 4), "JPEG"), encoded((5, 4), "WEBP", "RGBA"))
    lossless = encoded((5, 4), "WEBP", "RGBA")
    refused = ((encoded((5, 4), "GIF"), "is not a PNG, JPEG or WebP image, and converting it"),
               (encoded((3000, 10)), "is 3000×10, larger than max_image_edge=2048, and downscaling it"),
               (np.zeros((3, 3), dtype=np.uint8), "becomes a PNG with Pillow"))
    monkeypatch.setitem(sys.modules, "PIL", None)
    sent = prepare_images([png, jpeg, webp, lossless])
    assert [(i.mime, i.width, i.height) for i in sent] == [("image/png", 5, 4), ("image/jpeg", 5, 4),
                                                           ("image/webp", 5, 4), ("image/webp", 5, 4)]
    for item, why in refused:
        with pytest.raises(LMStudioRequestError, match=r"needs Pillow, which is not installed: pip install "
                                                       r"'lm_notebook\[images\]'") as info:
            prepare_images([item])
        assert why in info.value.message


def test_a_bad_max_image_edge_is_refused() -> None:
    for bad in (0, -5, 2.5, True):
        with pytest.raises(LMStudioRequestError, match="max_image_edge must be a positive number"):
            prepare_images([encoded((5, 5))], bad)  # type: ignore[arg-type]


def test_one_image_on_its_own_and_the_hash_of_images() -> None:
    png = encoded((5, 5))
    (one,) = prepare_images(png)
    assert images_hash([one]) == images_hash(prepare_images([png])) != images_hash(prepare_images([encoded((6, 5))]))
    assert images_hash([]) == ""


# --- which models can see ------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.4", "0.3"])
def test_a_model_without_vision_is_refused_before_sending_naming_the_vision_models(version: str) -> None:
    with MockLMStudioServer(version=version) as server, LMStudioClient(server.url, model=TEXT_ONLY) as client:
        for method in (client.chat, lambda *a, **kw: client.stream_chat(*a, **kw).result()):
            with pytest.raises(LMStudioRequestError) as info:
                method("What is it?", images=[encoded((5, 5))])
            assert info.value.message.startswith(f'Model "{TEXT_ONLY}" on {server.url} cannot see images')
            assert f'Vision models on this server: {VISION}. Pass model="{VISION}"' in info.value.message
        assert [r.path for r in server.requests if "chat" in r.path] == []


def test_when_the_server_does_not_say_the_images_are_sent_and_its_refusal_explained() -> None:
    with MockLMStudioServer() as server, LMStudioClient(server.url, model=TEXT_ONLY) as client:
        for path in ("/api/v1/models", "/api/v0/models"):
            server.set_fault("500", path=path)  # no capabilities to read: only /v1/models answers, with ids
        with pytest.raises(InvalidRequestError) as info:
            client.chat("What is it?", images=[encoded((5, 5))])
        assert "cannot see images" in info.value.message and info.value.status_code == 400
        assert info.value.server_message == "Model does not support images. Please use a model that does."


def test_the_fake_server_refuses_a_bad_data_url_with_a_400(lmstudio_mock: MockLMStudioServer) -> None:
    for url, problem in (("https://example.com/cat.png", "is not a data URL"),
                         ("data:image/png;base64,!!!", "the base64 does not decode"),
                         ("data:image/png;base64," + base64.b64encode(b"not a png").decode(), "is not a PNG")):
        answer = httpx.post(f"{lmstudio_mock.url}/v1/chat/completions", timeout=30, json={
            "model": VISION, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What?"}, {"type": "image_url", "image_url": {"url": url}}]}]})
        assert answer.status_code == 400 and problem in json.dumps(answer.json()), url


def test_one_array_or_picture_on_its_own_is_one_image() -> None:
    # a numpy array is iterable (its rows): given alone it must still be one image, not one per row
    (sent,) = prepare_images(np.zeros((5, 7, 3), dtype=np.uint8))  # type: ignore[arg-type]
    assert (sent.width, sent.height) == (7, 5)
    (pic,) = prepare_images(Image.new("RGB", (9, 4)))  # type: ignore[arg-type]
    assert (pic.width, pic.height) == (9, 4)


def test_repeated_image_requests_read_vision_from_one_model_list() -> None:
    # the model list is read once per client, not once (or twice, streamed) per image request
    with MockLMStudioServer() as server, LMStudioClient(server.url, model=VISION) as client:
        for _ in range(2):
            assert "5×5" in client.chat("What is it?", images=[encoded((5, 5))]).content
            with client.stream_chat("And now?", images=[encoded((5, 5))]) as stream:
                assert "5×5" in stream.result().content
        listings = [r.path for r in server.requests if r.method == "GET" and "models" in r.path]
        assert listings == ["/api/v1/models"]
        with pytest.raises(LMStudioRequestError, match="cannot see images"):
            client.chat("What is it?", model=TEXT_ONLY, images=[encoded((5, 5))])
        assert [r.path for r in server.requests if r.method == "GET" and "models" in r.path] == listings


def test_an_unknown_model_error_makes_the_next_image_request_list_again() -> None:
    with MockLMStudioServer() as server, LMStudioClient(server.url, model=VISION) as client:
        def listings() -> int:
            return sum(1 for r in server.requests if r.method == "GET" and r.path == "/api/v1/models")

        client.chat("What is it?", images=[encoded((5, 5))])
        before = listings()
        with pytest.raises(ModelNotFoundError):
            client.chat("Hi", model="no-such-model")
        during = listings()
        client.chat("What is it?", images=[encoded((5, 5))])
        assert listings() == during + 1 and during >= before
