"""%lm_bench in a real IPython shell, against the fake server over loopback (and loaded with %load_ext lm_notebook in
a real kernel by tests/magics/test_magics_kernel.py's driver)."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from lm_notebook import LMStudioClient, set_client
from lm_notebook.magics.bench import levels, register
from lm_notebook.testing import MockLMStudioServer, ModelSpec


@pytest.fixture
def shell() -> Iterator[tuple[InteractiveShell, MockLMStudioServer]]:
    with MockLMStudioServer(models=[ModelSpec("alpha", reply_tokens=6, loaded=True, parallel=4)]) as server:
        previous = set_client(LMStudioClient(server.url, model="alpha"))
        ip = InteractiveShell.instance()
        register(ip)
        register(ip)  # twice is harmless
        try:
            yield ip, server
        finally:
            for name in ("_lm_bench", "bench"):
                ip.user_ns.pop(name, None)
            set_client(previous)


def test_levels() -> None:
    assert levels("1,2, 4,8") == [1, 2, 4, 8]
    for bad in ("", "a,b", "1,0", "-1"):
        with pytest.raises(UsageError, match="-c takes positive numbers"):
            levels(bad)


def test_the_summary_per_level_and_the_rows_kept(shell: tuple[InteractiveShell, MockLMStudioServer]) -> None:
    ip, server = shell
    out = ip.run_line_magic("lm_bench", "alpha -c 1,2 -r 3 -n 20 --no-progress -o bench")
    assert isinstance(out, pd.DataFrame) and out.index.tolist() == [1, 2] and out.requests.tolist() == [3, 3]
    df: pd.DataFrame = ip.user_ns["bench"]
    assert ip.user_ns["_lm_bench"] is df and len(df) == 1 + 3 + 3 and (df.max_tokens == 20).all()
    assert all(r.chat_body["max_tokens"] == 20 for r in server.requests if r.is_chat)


def test_the_current_model_is_the_default(shell: tuple[InteractiveShell, MockLMStudioServer]) -> None:
    ip, _ = shell
    ip.run_line_magic("lm_bench", "-c 1 -r 1 --warmup 0 --no-progress")
    assert ip.user_ns["_lm_bench"].model.tolist() == ["alpha"]


@pytest.mark.parametrize(
    ("line", "message"),
    [("alpha -c x", "-c takes"), ("alpha -o 1x", "variable name"), ("nope -c 1", "not available"),
     ("alpha -r 0", "requests must be"), ("alpha --bogus", "unrecognized")],
)
def test_bad_usage_is_a_one_line_usage_error(
    shell: tuple[InteractiveShell, MockLMStudioServer], line: str, message: str
) -> None:
    ip, server = shell
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic("lm_bench", line)
    assert not [r for r in server.requests if r.is_chat]


def test_without_a_model_the_advice_is_the_magics(shell: tuple[InteractiveShell, MockLMStudioServer]) -> None:
    ip, server = shell
    previous = set_client(LMStudioClient(server.url))
    try:
        with pytest.raises(UsageError, match="No model to benchmark"):
            ip.run_line_magic("lm_bench", "--no-progress")
    finally:
        set_client(previous)
