"""%%lm_compare --check in a real IPython shell, against the fake server; %lm_models marks the embedding models."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from lm_notebook import LMStudioClient, set_client
from lm_notebook.comparison.check_specs import check_from_spec
from lm_notebook.display.model_table import model_table
from lm_notebook.magics.compare import register
from lm_notebook.testing import MockLMStudioServer, ModelSpec


@pytest.fixture
def shell() -> Iterator[tuple[InteractiveShell, MockLMStudioServer]]:
    models = [ModelSpec("alpha", reply_tokens=6, loaded=True), ModelSpec("beta", reply_tokens=6)]
    with MockLMStudioServer(models=models) as server:
        server.answer("alpha", "What is 6 times 7?", "42")
        previous = set_client(LMStudioClient(server.url, model="alpha"))
        ip = InteractiveShell.instance()
        register(ip)
        try:
            yield ip, server
        finally:
            ip.user_ns.pop("_lm_compare", None)
            set_client(previous)


def test_checks_given_as_text_score_the_answers(shell: tuple[InteractiveShell, MockLMStudioServer]) -> None:
    ip, _ = shell
    table = ip.run_cell_magic("lm_compare", r"-m alpha,beta -t 0 --check 'contains:42' --check 'regex:^\d+$'",
                              "What is 6 times 7?\n")
    df: pd.DataFrame = ip.user_ns["_lm_compare"]
    assert df.set_index("model")["passed"].to_dict() == {"alpha": True, "beta": False}
    assert df["check_contains"].tolist() == [1.0, 0.0] and df["check_regex"].tolist() == [1.0, 0.0]
    assert table.frame.loc[0, "alpha"] == "42\n\n✓ passed · score 1.00"
    summary = ip.run_cell_magic("lm_compare", "-m alpha,beta -t 0 --check contains:42 --summary", "What is 6 times 7?")
    assert summary["pass_rate"].to_dict() == {"alpha": 1.0, "beta": 0.0}


@pytest.mark.parametrize(("spec", "words"), [
    ("nope:1", "unknown check 'nope'; the checks are contains, regex, equals"),
    ("contains", "--check contains needs an argument: --check 'contains:Paris'"),
    ("max_words:many", "max_words takes a number of words, not 'many'"),
    ("regex:(", "is not a regular expression"),
    # a cell's prompts carry no expected answer: these could never score, so they are refused up front
    ("equals", "--check equals needs an argument: --check 'equals:Paris' (the cell's prompts have no expected"),
    ("similar_to", "--check similar_to needs an argument: --check 'similar_to:Paris is the capital'"),
])
def test_a_bad_check_is_a_usage_error_before_anything_is_sent(
    shell: tuple[InteractiveShell, MockLMStudioServer], spec: str, words: str
) -> None:
    ip, server = shell
    server.clear_requests()
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
        ip.run_cell_magic("lm_compare", f"-m alpha --check '{spec}'", "Q")
    assert server.requests == []


def test_every_kind_of_text_check() -> None:
    kinds = ["contains:x", "regex:x", "equals:Paris", "is_json", "max_words:3", "similar_to:Paris",
             "judge:Is it right?"]
    made = [check_from_spec(s) for s in kinds]
    assert [c.name for c in made] == ["contains", "regex", "equals", "is_json", "max_words", "similar_to", "judge"]
    assert made[2].score("paris", {}) == (1.0, None) and made[4].score("a b c d", {})[0] == 0.0
    assert getattr(made[5], "reference", None) == "Paris" and getattr(made[6], "rubric", None) == "Is it right?"


def test_lm_models_marks_the_embedding_models(lmstudio_mock: MockLMStudioServer) -> None:
    with LMStudioClient(lmstudio_mock.url) as client:
        models = client.list_models()
    plain = model_table(models, current=None, base_url="http://x")["text/plain"]
    assert "embedding model (client.embed, similar_to): text-embedding-nomic-embed-text-v1.5" in plain
    llms = [m for m in models if m.type != "embeddings"]
    assert "embedding model" not in model_table(llms, current=None, base_url="http://x")["text/plain"]


def test_judge_model_names_the_judge_and_its_errors_speak_the_magics_words() -> None:
    models = [ModelSpec("alpha", reply_tokens=6, loaded=True), ModelSpec("grader"), ModelSpec("vec", type="embeddings"),
              ModelSpec("vec-2", type="embeddings")]
    with MockLMStudioServer(models=models) as server:
        server.answer("alpha", "What is 6 times 7?", "42")
        previous = set_client(LMStudioClient(server.url))  # no current model: the judge must be named
        ip = InteractiveShell.instance()
        register(ip)
        try:
            ip.run_cell_magic("lm_compare", "-m alpha -t 0 --check 'judge:Is it 42?' --judge-model grader",
                              "What is 6 times 7?")
            df: pd.DataFrame = ip.user_ns["_lm_compare"]
            assert [r.model for r in server.requests if r.is_chat] == ["alpha", "grader"]
            assert df["check_judge"].notna().all()
            cases = {
                "--check 'judge:Ok?' --judge-model gradr":
                    '--check judge: the model "gradr" is not on the server (it has: alpha, grader, vec, vec-2). '
                    'Did you mean "grader"? Name the model with --judge-model MODEL.',
                "--check 'judge:Ok?'":
                    "--check judge needs a model to grade: name one with --judge-model MODEL, or choose one with "
                    "%lm_use MODEL.",
                "--check 'judge:Ok?' --judge-model vec":
                    '--check judge: "vec" is an embedding model and cannot grade: name a language model with '
                    "--judge-model.",
                "--check similar_to:42":
                    "--check similar_to: the server has several embedding models: name one with --embedding-model "
                    "MODEL.",
                "--check similar_to:42 --embedding-model alpha":
                    '--check similar_to: "alpha" is a language model, not an embedding model: name an embedding '
                    "model with --embedding-model.",
                "--judge-model grader":
                    "--judge-model and --embedding-model go with a --check that uses them, e.g. --check 'judge:Is "
                    "it correct?' --judge-model MODEL.",
            }
            for options, message in cases.items():
                server.clear_requests()
                with pytest.raises(UsageError) as err:
                    ip.run_cell_magic("lm_compare", f"-m alpha {options}", "What is 6 times 7?")
                assert str(err.value) == message
                assert not [r for r in server.requests if r.is_chat]  # said before anything ran
            ip.run_cell_magic("lm_compare", "-m alpha --check similar_to:42 --embedding-model vec", "What is 6 x 7?")
            assert ip.user_ns["_lm_compare"]["check_similar_to"].notna().all()
        finally:
            ip.user_ns.pop("_lm_compare", None)
            set_client(previous)
