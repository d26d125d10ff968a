"""The magics' shell: a real ``InteractiveShell`` with freshly loaded magics on the fake server (real loopback HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell
from magic_shell import Recorder

from lm_notebook import LMStudioClient, set_client
from lm_notebook.testing import MockLMStudioServer


@pytest.fixture(scope="session")
def ipython() -> InteractiveShell:
    return InteractiveShell.instance()


@pytest.fixture
def ip(ipython: InteractiveShell, lmstudio_mock: MockLMStudioServer, monkeypatch: pytest.MonkeyPatch,
       capsys: pytest.CaptureFixture[str]) -> Iterator[InteractiveShell]:
    """A shell with freshly loaded magics, a recording display publisher and the shared client on the fake server."""
    monkeypatch.setenv("LMSTUDIO_BASE_URL", lmstudio_mock.url)
    set_client(LMStudioClient(lmstudio_mock.url, timeout=10))
    ipython.config.pop("LMMagics", None)  # %config in an earlier test must not leak into this one
    ipython.run_line_magic("unload_ext", "lm_notebook")
    ipython.run_line_magic("load_ext", "lm_notebook")
    saved = ipython.display_pub
    ipython.display_pub = Recorder()
    capsys.readouterr()
    try:
        yield ipython
    finally:
        ipython.display_pub = saved
        for name in ("ans", "models", "data", "topic", "items", "c"):
            ipython.user_ns.pop(name, None)
        set_client(None)
