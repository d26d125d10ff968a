"""``compare`` over both real models on llama.cpp's server: every row answered, speeds measured, no errors."""

from __future__ import annotations

import pandas as pd
import pytest
from real_server import MODELS

from lm_notebook import LMStudioClient, compare

PROMPTS = {
    "capital": "What is the capital of France? Answer in one word.",
    "math": "What is 2+2?",
    "colors": "Name three primary colors.",
}


@pytest.fixture(scope="module")
def frame(real_base_url: str) -> pd.DataFrame:
    with LMStudioClient(real_base_url, timeout=120) as client:
        return compare(PROMPTS, list(MODELS), client=client, temperature=0, seed=42, max_tokens=24, progress=False)


def test_every_row_is_answered(frame: pd.DataFrame) -> None:
    assert len(frame) == len(PROMPTS) * len(MODELS)
    assert sorted(set(frame["model"])) == sorted(MODELS)
    assert list(frame["status"]) == ["ok"] * len(frame), frame[["model", "prompt_name", "error"]]
    assert frame["error"].isna().all()
    assert all(isinstance(r, str) and r.strip() for r in frame["response"])
    # queued, not cut: llama.cpp's server is configured with interrupt_requests=false (see real_server.py), so a
    # waiting request does not end the running stream early without a finish_reason
    assert set(frame["finish_reason"]) <= {"stop", "length"}
    assert (frame["served_model"] == frame["model"]).all()
    capital = frame[frame["prompt_name"] == "capital"]
    assert all("paris" in r.lower() for r in capital["response"]), capital["response"]


def test_speeds_are_measured(frame: pd.DataFrame) -> None:
    for _, row in frame.iterrows():
        assert 0 < row["ttft_s"] <= row["latency_s"] < 60, row
        assert row["tokens_per_s"] > 0, row
    # llama.cpp's server sends no usage in a stream, so the token counts are unknown rather than wrong
    for col in ("completion_tokens", "prompt_tokens"):
        values = [v for v in frame[col] if not pd.isna(v)]
        assert all(v > 0 for v in values), values


def test_same_answers_as_the_client_alone(frame: pd.DataFrame, real_client: LMStudioClient) -> None:
    row = frame[(frame["prompt_name"] == "math") & (frame["model"] == MODELS[0])].iloc[0]
    alone = real_client.chat(PROMPTS["math"], model=MODELS[0], temperature=0, seed=42, max_tokens=24)
    assert row["response"] == alone.content


def test_an_unknown_model_fails_only_its_own_rows(real_base_url: str) -> None:
    with LMStudioClient(real_base_url, timeout=120) as client:
        df = compare(
            {"math": PROMPTS["math"]}, [MODELS[0], "no-such-model"], client=client, temperature=0, max_tokens=8,
            progress=False,
        )
    by_model = df.set_index("model")
    assert by_model.loc[MODELS[0], "status"] == "ok"
    assert by_model.loc["no-such-model", "status"] == "error"
    assert by_model.loc["no-such-model", "error_type"] == "ModelNotFoundError"
