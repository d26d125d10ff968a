"""The magics over several servers: ``%config LMMagics.endpoints``, ``%lm_models --all`` and ``%%lm_compare --all``,
in a real IPython shell against two fake servers over loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from magic_shell import recorder
from traitlets import TraitError

from lm_notebook.testing import MockLMStudioServer, ModelSpec


@pytest.fixture
def two() -> Iterator[dict[str, MockLMStudioServer]]:
    with MockLMStudioServer(models=[ModelSpec("alpha", reply_tokens=4), ModelSpec("shared", reply_tokens=4)]) as a, \
            MockLMStudioServer(models=[ModelSpec("beta", reply_tokens=4), ModelSpec("shared", reply_tokens=4)]) as b:
        yield {"laptop": a, "gpu": b}


def test_lm_models_all_lists_each_endpoint(ip: InteractiveShell, two: dict[str, MockLMStudioServer]) -> None:
    urls = {name: s.url for name, s in two.items()}
    ip.run_line_magic("config", f"LMMagics.endpoints = {urls!r}")
    ip.run_line_magic("lm_models", "--all -o listed")
    listed = ip.user_ns.pop("listed")
    assert {name: [m.id for m in ms] for name, ms in listed.items()} == {"laptop": ["alpha", "shared"],
                                                                        "gpu": ["beta", "shared"]}
    text = recorder(ip).sent[-1]["content"]["data"]["text/plain"]
    assert "== laptop ==" in text and "== gpu ==" in text and two["gpu"].url in text
    line = " ".join(f"{n}={u}" for n, u in urls.items())
    ip.run_line_magic("lm_models", f"-o again --all {line}")
    assert list(ip.user_ns.pop("again")) == ["laptop", "gpu"]


def test_lm_models_all_never_shows_a_password_in_a_url(ip: InteractiveShell,
                                                        two: dict[str, MockLMStudioServer]) -> None:
    secret_url = two["laptop"].url.replace("http://", "http://user:hunter2@")
    ip.run_line_magic("lm_models", f"--all laptop={secret_url}")
    data = recorder(ip).sent[-1]["content"]["data"]
    assert "hunter2" not in data["text/plain"] and "hunter2" not in data["text/html"]
    assert two["laptop"].url in data["text/plain"]


def test_lm_models_all_without_endpoints_says_how(ip: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="No endpoints to list"):
        ip.run_line_magic("lm_models", "--all")
    with pytest.raises(UsageError, match="unrecognized arguments"):
        ip.run_line_magic("lm_models", "http://127.0.0.1:1")  # endpoints go after --all


def test_a_bad_endpoints_setting_is_refused(ip: InteractiveShell) -> None:
    magics = ip.magics_manager.registry["LMMagics"]
    with pytest.raises(TraitError, match=r"LMMagics\.endpoints must be"):
        magics.endpoints = 42
    with pytest.raises(TraitError, match="twice"):
        magics.endpoints = ["http://127.0.0.1:1", "http://127.0.0.1:1"]
    assert magics.endpoints is None


def test_lm_compare_all_spreads_over_the_endpoints(ip: InteractiveShell, two: dict[str, MockLMStudioServer]) -> None:
    with pytest.raises(UsageError, match=r"LMMagics\.endpoints, which is not set"):
        ip.run_cell_magic("lm_compare", "--all --no-progress", "Hi")
    ip.magics_manager.registry["LMMagics"].endpoints = {name: s.url for name, s in two.items()}
    ip.run_cell_magic("lm_compare", "--all -t 0 --no-progress", "Hi\nBye")
    df: pd.DataFrame = ip.user_ns.pop("_lm_compare")
    assert list(dict.fromkeys(df.model)) == ["alpha", "shared", "beta"] and (df.status == "ok").all()
    assert set(df[df.model == "beta"].endpoint) == {"gpu"} and set(df[df.model == "alpha"].endpoint) == {"laptop"}


def test_lm_compare_all_with_a_pinned_judge(ip: InteractiveShell, two: dict[str, MockLMStudioServer]) -> None:
    """A judge pinned to the one endpoint configured grades; a pin that cannot work says which endpoint and why."""
    gpu = two["gpu"]
    ip.magics_manager.registry["LMMagics"].endpoints = {"gpu": gpu.url}
    ip.run_cell_magic("lm_compare", "--all -m beta -t 0 --no-progress --check 'judge:Ok?' --judge-model gpu/shared",
                      "Hi")
    df: pd.DataFrame = ip.user_ns.pop("_lm_compare")
    assert df["check_judge"].notna().all(), df["check_notes"].tolist()
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("lm_compare", "--all -m beta --no-progress --check 'judge:Ok?' --judge-model gpu/shard",
                          "Hi")
    assert str(err.value) == (f'--check judge: The judge of check judge, "gpu/shard", is pinned to endpoint gpu at '
                              f'{gpu.url}, which does not list shard (it lists: beta, shared). Did you mean '
                              '"gpu/shared"? Fix the id, or download shard on gpu.')
