"""``%lm_bench`` in a real kernel (through jupyter_client) against the fake server: the summary is the cell's result,
the rows are kept in ``_lm_bench``, and a bad line is one line."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kernel_driver import Kernel, kernel_for

from lm_notebook.testing import MockLMStudioServer, ModelSpec


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    spec = ModelSpec("m", reply_tokens=6, loaded=True, parallel=2)
    with MockLMStudioServer(models=[spec]) as server, kernel_for(server.url) as k:
        assert k.run("%load_ext lm_notebook").status == "ok"
        yield k


def test_the_summary_is_the_result_and_the_rows_are_kept(kernel: Kernel) -> None:
    run = kernel.run("%lm_bench m -c 1,2 -r 2 --no-progress")
    assert run.status == "ok", run.text()
    result = run.of_type("execute_result")[-1]["content"]["data"]["text/plain"]
    assert "output_tokens_per_s" in result and "concurrency" in result
    check = kernel.run("print(len(_lm_bench), sorted(set(_lm_bench.concurrency)))")
    assert "5 [1, 2]" in check.text()


def test_a_bad_line_is_one_line(kernel: Kernel) -> None:
    run = kernel.run("%lm_bench m -c two")
    assert run.status == "error" and "-c takes positive numbers" in run.text()
    assert "Traceback" not in run.text()
