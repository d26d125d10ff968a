"""%%lm_compare in a real IPython shell, against the fake server."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from lm_notebook import LMStudioClient, set_client
from lm_notebook.comparison import ComparisonInterrupted, last_comparison
from lm_notebook.comparison.views import ComparisonTable
from lm_notebook.magics.compare import CompareMagics, cell_prompts, register
from lm_notebook.testing import CHAT_PATHS, MockLMStudioServer, ModelSpec


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
    assert not [r for r in server.requests if r.is_chat]


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


def test_without_a_model_the_advice_is_the_magics(shell: tuple[InteractiveShell, MockLMStudioServer]) -> None:
    ip, server = shell
    previous = set_client(LMStudioClient(server.url))  # no current model
    try:
        with pytest.raises(UsageError, match=r"No model to compare: pass -m model-a,model-b, or .* %lm_use MODEL"):
            ip.run_cell_magic("lm_compare", "--no-progress", "Hi")
    finally:
        set_client(previous)


def test_a_model_given_twice_is_a_usage_error(shell: tuple[InteractiveShell, MockLMStudioServer]) -> None:
    ip, _ = shell
    with pytest.raises(UsageError, match="'alpha' more than once"):
        ip.run_cell_magic("lm_compare", "-m alpha,beta,alpha --no-progress", "Hi")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_stop_shows_the_table_so_far_then_ends_the_cell() -> None:
    # "slow" answers for minutes; "nope" is not on the server, so its two rows are settled before anything is sent
    models = [ModelSpec("slow", loaded=True, tokens_per_second=20, reply_tokens=6000)]
    with MockLMStudioServer(models=models) as server, LMStudioClient(server.url, model="slow") as client:
        previous = set_client(client)
        ip = InteractiveShell.instance()
        register(ip)

        def press_stop() -> None:  # what Ctrl-C or the Stop button sends, once both answers are asked for
            server.wait_for_requests(2, path=CHAT_PATHS)
            os.kill(os.getpid(), signal.SIGINT)

        stop = threading.Thread(target=press_stop)
        try:
            stop.start()
            with capture_output() as shown, pytest.raises(ComparisonInterrupted) as stopped:
                ip.run_cell_magic("lm_compare", "-m slow,nope --no-progress -o partial", "Q one\nQ two")
        finally:
            stop.join()
            set_client(previous)
    (table,) = shown.outputs
    assert "Q one" in table.data["text/html"] and "⏹ cancelled" in table.data["text/html"]
    df = stopped.value.frame
    assert ip.user_ns["partial"] is df and ip.user_ns["_lm_compare"] is df and last_comparison() is df
    assert sorted(df.status) == ["cancelled", "cancelled", "error", "error"]
    assert stopped.value._render_traceback_() == [
        "\x1b[0;31mComparisonInterrupted\x1b[0m: %%lm_compare stopped: 2 of 4 rows finished; the table so far is "
        "shown above, and every row is in _lm_compare and partial."
    ]
    ip.user_ns.pop("partial", None)


def test_lm_compare_follows_the_configured_base_url() -> None:
    # the shared client points at nothing; %config LMMagics.base_url names the running server, as for %%lm
    from lm_notebook.magics import register as register_all
    from lm_notebook.magics.lm import LMMagics

    with MockLMStudioServer(models=[ModelSpec("alpha", reply_tokens=4, loaded=True)]) as server:
        previous = set_client(LMStudioClient("http://127.0.0.1:9", model="alpha"))
        ip = InteractiveShell.instance()
        register_all(ip)
        magics = ip.magics_manager.registry["LMMagics"]
        assert isinstance(magics, LMMagics)
        old_url = magics.base_url
        try:
            magics.base_url = server.url
            out = ip.run_cell_magic("lm_compare", "-m alpha -t 0", "Say hi\n")
            assert isinstance(out, ComparisonTable)
            assert (ip.user_ns["_lm_compare"].status == "ok").all()
            assert server.wait_for_requests(1, path=CHAT_PATHS)
        finally:
            magics.base_url = old_url
            ip.user_ns.pop("_lm_compare", None)
            set_client(previous)
