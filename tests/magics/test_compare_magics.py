"""%%lm_compare in a real IPython shell, against the fake server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from lm_notebook import LMStudioClient, set_client
from lm_notebook.comparison.views import ComparisonTable
from lm_notebook.magics.compare import CompareMagics, cell_prompts, register
from lm_notebook.testing import MockLMStudioServer, ModelSpec


@pytest.fixture
def shell() -> Iterator[tuple[InteractiveShell, MockLMStudioServer]]:
    models = [ModelSpec("alpha", reply_tokens=6, loaded=True), ModelSpec("beta", reply_tokens=6)]
    with MockLMStudioServer(models=models) as server:
        client = LMStudioClient(server.url, model="alpha")
        previous = set_client(client)
        ip = InteractiveShell.instance()
        register(ip)
        register(ip)  # twice is harmless
        try:
            yield ip, server
        finally:
            ip.user_ns.pop("_lm_compare", None)
            set_client(previous)


def test_cell_prompts() -> None:
    assert cell_prompts("  a \n\n b\n", single=False) == ["a", "b"]
    assert cell_prompts("  a \n\n b\n", single=True) == ["a \n\n b"]
    assert cell_prompts(" \n", single=True) == []


def test_one_prompt_per_line_across_models(shell: tuple[InteractiveShell, MockLMStudioServer]) -> None:
    ip, server = shell
    out = ip.run_cell_magic("lm_compare", "-m alpha,beta -t 0 -n 30 -o result", "Say hi\nName a colour\n")
    assert isinstance(out, ComparisonTable)
    assert list(out.frame.columns) == ["prompt", "alpha", "beta"]
    df: pd.DataFrame = ip.user_ns["result"]
    assert ip.user_ns["_lm_compare"] is df
    assert len(df) == 4 and (df.status == "ok").all()
    assert (df.temperature == 0).all() and (df.max_tokens == 30).all()
    assert server.counters.model("beta").loads == 1


def test_defaults_to_the_current_model_and_single_prompt(shell: tuple[InteractiveShell, MockLMStudioServer]) -> None:
    ip, _ = shell
    ip.run_cell_magic("lm_compare", "--single --no-progress -s 'Be brief.'", "line one\nline two")
    df: pd.DataFrame = ip.user_ns["_lm_compare"]
    assert df.model.tolist() == ["alpha"] and df.prompt.tolist() == ["line one\nline two"]
    assert df.system.tolist() == ["Be brief."]


def test_summary_flag_returns_the_summary(
    shell: tuple[InteractiveShell, MockLMStudioServer], capsys: pytest.CaptureFixture[str]
) -> None:
    ip, _ = shell
    out: Any = ip.run_cell_magic("lm_compare", "-m alpha --summary --no-progress", "Hi")
    assert list(out.index) == ["alpha"] and out.loc["alpha", "ok"] == 1


@pytest.mark.parametrize(
    ("line", "cell", "message"),
    [
        ("-m alpha", "  \n", "no prompt"),
        ("-m alpha -o 1x", "Hi", "variable name"),
        ("-m alpha -c zero", "Hi", "--concurrency"),
        ("-m alpha -r 0", "Hi", "--repeats"),
        ("-m , ", "Hi", "-m needs model ids"),
        ("--bogus", "Hi", "unrecognized"),
    ],
)
def test_bad_usage_is_a_one_line_usage_error(
    shell: tuple[InteractiveShell, MockLMStudioServer], line: str, cell: str, message: str
) -> None:
    ip, server = shell
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("lm_compare", line, cell)
    assert not [r for r in server.requests if r.path == "/v1/chat/completions"]


def test_an_unreachable_server_is_a_usage_error() -> None:
    with MockLMStudioServer() as srv:
        url = srv.url
    ip = InteractiveShell.instance()
    ip.register_magics(CompareMagics(shell=ip))
    previous = set_client(LMStudioClient(url, model="x", timeout=2))
    try:
        with pytest.raises(UsageError, match="not reachable"):
            ip.run_cell_magic("lm_compare", "--no-progress", "Hi")
    finally:
        set_client(previous)
