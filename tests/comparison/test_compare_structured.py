"""compare() with images per prompt and with schema=: image counts and hashes in the rows (and in the cache key),
parsed / valid / schema_error columns, and each model's valid rate in summary — over loopback against the fake
server."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image
from pydantic import BaseModel

from lm_notebook import LMStudioRequestError, summary
from lm_notebook.comparison.api import COLUMNS, acompare, compare
from lm_notebook.testing import MockLMStudioServer, ModelSpec


class Person(BaseModel):
    name: str
    age: int


def png(size: tuple[int, int], colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def server() -> Any:
    models = [ModelSpec("alpha", reply_tokens=8), ModelSpec("beta", reply_tokens=8),
              ModelSpec("eye", type="vlm")]
    with MockLMStudioServer(models=models) as srv:
        yield srv


def chats(server: MockLMStudioServer) -> list[Any]:
    return [r for r in server.requests if r.is_chat]


def test_a_schema_adds_parsed_valid_and_the_error_and_summary_ranks_models_by_valid_rate(
    server: MockLMStudioServer,
) -> None:
    server.set_fault("break_schema", model="beta")
    df = compare(["Who wrote Emma?", "Who wrote Ulysses?"], ["alpha", "beta"], client=_client(server),
                 schema=Person, temperature=0, progress=False)
    at = list(df.columns).index("response")
    assert list(df.columns)[at:at + 4] == ["response", "parsed", "valid", "schema_error"]
    alpha, beta = df[df.model == "alpha"], df[df.model == "beta"]
    assert all(isinstance(p, Person) for p in alpha.parsed) and alpha.valid.tolist() == [True, True]
    assert beta.parsed.isna().all() and beta.valid.tolist() == [False, False]
    assert beta.schema_error.iloc[0] == "Field required (at $.name)"
    assert all(r.chat_body["response_format"]["json_schema"]["name"] == "Person" for r in chats(server))
    stats = summary(df)
    assert stats.loc["alpha", "valid_rate"] == 1.0 and stats.loc["beta", "valid_rate"] == 0.0
    assert "valid_rate" not in summary(compare("Hi", ["alpha"], client=_client(server), progress=False))


def test_cached_answers_are_checked_again(server: MockLMStudioServer, tmp_path: Path) -> None:
    cache = tmp_path / "answers.sqlite"
    first = compare(["Who?"], ["alpha"], client=_client(server), schema=Person, temperature=0, cache=cache,
                    progress=False)
    again = compare(["Who?"], ["alpha"], client=_client(server), schema=Person, temperature=0, cache=cache,
                    progress=False)
    assert again.cached.all() and len(chats(server)) == 1
    assert again.parsed.iloc[0] == first.parsed.iloc[0] and again.valid.iloc[0]


def test_the_async_twin_takes_a_schema_too(server: MockLMStudioServer) -> None:
    df = asyncio.run(acompare(["Who?"], ["alpha"], client=_client(server), schema={
        "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}, progress=False))
    assert df.valid.tolist() == [True] and isinstance(df.parsed.iloc[0], dict)


def test_images_per_prompt_go_with_their_prompt_and_the_rows_count_and_hash_them(server: MockLMStudioServer) -> None:
    red, blue = png((30, 20)), png((30, 20), "blue")
    prompts = {"red": {"prompt": "What colour?", "images": [red]},
               "both": {"prompt": "Compare.", "images": [red, blue]}, "none": "Say hi."}
    df = compare(prompts, ["eye"], client=_client(server), temperature=0, progress=False)
    assert list(df.columns) == ["prompt_name", "prompt", "images", "images_hash", *COLUMNS[2:]]
    assert df.images.tolist() == [1, 2, 0] and df.images_hash.iloc[2] == ""
    assert len(set(df.images_hash)) == 3
    assert df.response.iloc[0].startswith("I see an image of 30×20 pixels (PNG).")
    assert df.response.iloc[1].startswith("I see 2 images")
    last = [r.chat_body["messages"][-1]["content"] for r in chats(server)]  # either route's body, in /v1's words
    sent = {c[0]["text"] if isinstance(c, list) else c: c for c in last}
    assert [p["type"] for p in sent["Compare."]] == ["text", "image_url", "image_url"] and sent["Say hi."] == "Say hi."


def test_a_dataframe_names_its_images_column(server: MockLMStudioServer, tmp_path: Path) -> None:
    chart = tmp_path / "chart.png"
    chart.write_bytes(png((12, 10)))
    frame = pd.DataFrame({"question": ["What is it?", "And this?"], "pictures": [[chart], str(chart)]})
    df = compare(frame, ["eye"], client=_client(server), template="{question}", images_column="pictures",
                 progress=False)
    assert "pictures" not in df.columns and df.images.tolist() == [1, 1]
    assert df.images_hash.nunique() == 1 and df.question.tolist() == ["What is it?", "And this?"]


def test_cached_answers_match_their_images(server: MockLMStudioServer, tmp_path: Path) -> None:
    cache = tmp_path / "answers.sqlite"

    def run(image: bytes) -> pd.DataFrame:
        return compare({"q": {"prompt": "What colour?", "images": [image]}}, ["eye"], client=_client(server),
                       temperature=0, cache=cache, progress=False)

    assert not run(png((8, 8))).cached.iloc[0]
    assert run(png((8, 8))).cached.iloc[0]  # the same image: the same answer
    other = run(png((8, 8), "green"))
    assert not other.cached.iloc[0] and len(chats(server)) == 2


def test_bad_image_inputs_are_refused_before_sending(server: MockLMStudioServer) -> None:
    client = _client(server)
    with pytest.raises(LMStudioRequestError, match=r"Prompt 'q': images\[0\] is the path 'nope.png'"):
        compare({"q": {"prompt": "What?", "images": ["nope.png"]}}, ["eye"], client=client, progress=False)
    with pytest.raises(ValueError, match=r"Prompt 'q' is a dict without a 'prompt' field"):
        compare({"q": {"text": "What?"}}, ["eye"], client=client, progress=False)
    with pytest.raises(ValueError, match="images_column= names a column of a DataFrame"):
        compare({"q": "What?"}, ["eye"], client=client, images_column="x", progress=False)
    with pytest.raises(ValueError, match=r"images_column='x' is not a column"):
        compare(pd.DataFrame({"prompt": ["a"]}), ["eye"], client=client, images_column="x", progress=False)
    with pytest.raises(LMStudioRequestError, match="schema= or response_format=, not both"):
        compare("Hi", ["alpha"], client=client, schema=Person, response_format={"type": "text"}, progress=False)
    assert chats(server) == []


def _client(server: MockLMStudioServer) -> Any:
    from lm_notebook import LMStudioClient

    return LMStudioClient(server.url, timeout=10)


def test_max_image_edge_downscales_the_prompts_images(server: MockLMStudioServer, tmp_path: Path) -> None:
    chart = tmp_path / "chart.png"
    chart.write_bytes(png((80, 40)))
    frame = pd.DataFrame({"question": ["What is it?"], "pictures": [str(chart)]})
    df = compare(frame, ["eye"], client=_client(server), template="{question}", images_column="pictures",
                 max_image_edge=20, progress=False)
    assert df.response.iloc[0].startswith("I see an image of 20×10 pixels")
    df = compare({"q": {"prompt": "And this?", "images": [png((80, 40))]}}, ["eye"], client=_client(server),
                 max_image_edge=40, progress=False)
    assert df.response.iloc[0].startswith("I see an image of 40×20 pixels")
    with pytest.raises(LMStudioRequestError, match="max_image_edge must be a positive number of pixels"):
        compare("Hi", ["eye"], client=_client(server), max_image_edge=0, progress=False)
