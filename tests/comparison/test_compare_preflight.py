"""What a comparison settles before sending, with plain values: refused models, their rows, cache keys."""

from __future__ import annotations

from lm_notebook.client.errors import ModelNotFoundError
from lm_notebook.client.types import ModelInfo
from lm_notebook.comparison.preflight import known_model, refusal, refused_rows, request_key
from lm_notebook.comparison.schedule import plan_requests

URL = "http://127.0.0.1:1234"
INFOS = {
    "qwen2.5-7b-instruct": ModelInfo("qwen2.5-7b-instruct", type="llm", quantization="Q4_K_M", format="gguf",
                                     instance_ids=("qwen2.5-7b-instruct", "qwen2.5-7b-instruct:2")),
    "nomic-embed": ModelInfo("nomic-embed", type="embeddings"),
}


def test_ids_instances_and_variants_of_listed_models_are_known() -> None:
    assert known_model("qwen2.5-7b-instruct", INFOS)
    assert known_model("qwen2.5-7b-instruct:2", INFOS) and known_model("qwen2.5-7b-instruct:3", INFOS)
    assert known_model("qwen2.5-7b-instruct@q8_0", INFOS)
    assert not known_model("qwen-7b", INFOS)


def test_an_unknown_model_is_refused_with_every_field_set() -> None:
    err = refusal("qwen-7b", INFOS, URL)
    assert isinstance(err, ModelNotFoundError)
    assert err.model == "qwen-7b" and err.available == ["nomic-embed", "qwen2.5-7b-instruct"]
    assert err.status_code == 404 and err.body is None and err.server_message == "" and err.partial is None
    assert str(err) == err.message
    assert URL in err.message and 'Did you mean "qwen2.5-7b-instruct"?' in err.message


def test_an_embedding_model_is_refused_and_a_language_model_is_not() -> None:
    err = refusal("nomic-embed", INFOS, URL)
    assert isinstance(err, ModelNotFoundError) and err.model == "nomic-embed" and err.status_code == 400
    assert "embedding model: it cannot chat" in str(err) and str(err) == err.message
    assert refusal("qwen2.5-7b-instruct", INFOS, URL) is None


def test_without_a_listing_nothing_is_refused() -> None:
    assert refusal("anything", {}, URL) is None


def test_refused_rows_are_errors_never_sent() -> None:
    specs = plan_requests(["a", "b"], ["qwen2.5-7b-instruct", "qwen-7b"])
    rows = refused_rows(specs, INFOS, URL)
    assert sorted(rows) == [s.index for s in specs if s.model == "qwen-7b"]
    for outcome in rows.values():
        assert outcome.status == "error" and outcome.error_type == "ModelNotFoundError"
        assert outcome.attempts == 0 and outcome.started_at is None and outcome.error and URL in outcome.error


def test_the_cache_key_follows_the_request_and_the_models_build() -> None:
    spec, other_repeat = plan_requests(["a"], ["qwen2.5-7b-instruct"], repeats=2)
    messages = [{"role": "user", "content": "a"}]
    info = INFOS["qwen2.5-7b-instruct"]
    key = request_key(spec, messages, {"temperature": 0}, info)
    assert key == request_key(spec, messages, {"temperature": 0.0}, info)
    assert key != request_key(other_repeat, messages, {"temperature": 0}, info)
    assert key != request_key(spec, messages, {"temperature": 0}, ModelInfo("qwen2.5-7b-instruct", quantization="Q8_0"))
    assert key != request_key(spec, messages, {"temperature": 0}, None)
