"""``%lm_unload`` and ``%lm_download`` in a real kernel (through jupyter_client) against the fake server: what a
frontend receives when the model is not loaded, or the download is paused in LM Studio."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from kernel_driver import ANSI, Kernel, Run, kernel_for

from lm_notebook.testing import MockLMStudioServer

MODEL = "qwen2.5-7b-instruct"
NEW = "ibm/granite-4-micro"
STATUS = "/api/v1/models/download/status/"


@pytest.fixture(scope="module")
def server() -> Iterator[MockLMStudioServer]:
    with MockLMStudioServer() as fake:
        yield fake


@pytest.fixture(scope="module")
def kernel(server: MockLMStudioServer) -> Iterator[Kernel]:
    with kernel_for(server.url) as k:
        assert k.run("%load_ext lm_notebook").status == "ok"
        yield k


def test_unloading_a_model_that_is_not_loaded_is_one_line_naming_what_is_loaded(
        kernel: Kernel, server: MockLMStudioServer) -> None:
    assert server.loaded_models() == [MODEL]
    run = kernel.run("%lm_unload google/gemma-3-4b")
    assert run.status == "error"
    (error,) = run.of_type("error")
    assert [ANSI.sub("", line) for line in error["content"]["traceback"]] == [
        f"LMStudioAPIError: google/gemma-3-4b is not loaded on LM Studio at {server.url} (loaded: {MODEL}); "
        "%lm_ps shows what is loaded."
    ]


def test_a_download_paused_in_lm_studio_ends_the_cell_saying_so(kernel: Kernel, server: MockLMStudioServer) -> None:
    server.downloads.seconds = 600  # longer than the test: only the pause ends the watch
    runs: list[Run] = []
    cell = threading.Thread(target=lambda: runs.append(kernel.run(f"%lm_download {NEW}", timeout=120)))
    cell.start()
    server.wait_until(lambda: any(r.path.startswith(STATUS) for r in server.requests), timeout=60)  # it watches
    server.downloads.pause()  # the user pauses it in LM Studio
    cell.join(120)
    assert runs, "the cell did not end once the download was paused"
    (run,) = runs
    assert run.status == "ok"
    shown = [str(m["content"]["data"]["text/plain"]) for m in run.of_type("display_data", "update_display_data")]
    assert shown[-1].startswith(f"Paused {NEW} ░░░░░░░░░░ 0 % · "), shown[-1]
    assert shown[-1].endswith(f"Resume it in LM Studio (its downloads panel), then %lm_download {NEW} again "
                              "follows it."), shown[-1]
