"""compare's templates follow the same brace rule as %%lm: JSON braces are sent as written, {{ }} are literal."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from lm_notebook import LMStudioClient
from lm_notebook.comparison.inputs import prompt_inputs
from lm_notebook.testing import MockLMStudioServer, ModelSpec


@pytest.fixture
def server() -> Iterator[MockLMStudioServer]:
    with MockLMStudioServer(models=[ModelSpec("alpha")]) as s:
        yield s


def test_json_braces_in_a_template_are_sent_as_written(server: MockLMStudioServer) -> None:
    from lm_notebook import compare

    template = 'Return {"summary": "..."} for: {text}'
    with LMStudioClient(server.url) as client:
        df = compare(pd.DataFrame({"text": ["cats purr"]}), ["alpha"], client=client, template=template,
                     progress=False)
    assert df.prompt.tolist() == ['Return {"summary": "..."} for: cats purr']
    sent = [r.chat_body["messages"][-1]["content"] for r in server.requests if r.is_chat]
    assert sent == ['Return {"summary": "..."} for: cats purr']


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{text}} is {text}", "{text} is a"),
        ("{{{text}}}", "{a}"),
        ("{text!r:>5}", "  'a'"),
        ('{"k": {"v": {text}}}', '{"k": {"v": a}}'),
    ],
)
def test_the_brace_rule_matches_lm(template: str, expected: str) -> None:
    assert [i.text for i in prompt_inputs(pd.DataFrame({"text": ["a"]}), template).items] == [expected]


def test_a_name_that_is_no_column_is_refused_with_the_columns() -> None:
    with pytest.raises(ValueError, match=r"refers to \{txet\}, which is not a column; the columns are \['text'\]"):
        prompt_inputs(pd.DataFrame({"text": ["a"]}), "Summarize {txet}")
    with pytest.raises(ValueError, match="fills nothing from the columns"):
        prompt_inputs(pd.DataFrame({"text": ["a"]}), '{"only": "json"}')
