"""Stop in a real kernel (through jupyter_client) against the fake server: a loop of comparisons ends at the first,
and ``%%lm_compare`` shows the table so far, then ends with one line — what a notebook's Stop button does."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from kernel_driver import ANSI, Kernel, Run, kernel_for

from lm_notebook.testing import CHAT_PATHS, MockLMStudioServer, ModelSpec

SLOW = "slow-model"  # loaded; every answer outlasts the test (5 minutes): only the interrupt ends a cell waiting on it
CHAT = CHAT_PATHS  # either chat route


@pytest.fixture(scope="module")
def server() -> Iterator[MockLMStudioServer]:
    with MockLMStudioServer(models=[ModelSpec(SLOW, loaded=True, tokens_per_second=20, reply_tokens=6000)]) as fake:
        yield fake


@pytest.fixture(scope="module")
def kernel(server: MockLMStudioServer) -> Iterator[Kernel]:
    with kernel_for(server.url) as k:
        assert k.run("%load_ext lm_notebook\nimport lm_notebook").status == "ok"
        yield k


def run_and_stop(kernel: Kernel, server: MockLMStudioServer, code: str, *, once_sent: int) -> Run:
    """Run ``code``; press Stop (interrupt the kernel) once ``once_sent`` more answers were asked of the server."""
    before = len(server.wait_for_requests(0, path=CHAT))
    runs: list[Run] = []
    cell = threading.Thread(target=lambda: runs.append(kernel.run(code, timeout=60)))
    cell.start()
    server.wait_for_requests(before + once_sent, path=CHAT, timeout=60)
    kernel.km.interrupt_kernel()
    cell.join(timeout=60)
    assert runs, "the cell did not end after Stop"
    return runs[0]


def one_line_error(run: Run) -> tuple[str, str]:
    (error,) = run.of_type("error")
    lines = [ANSI.sub("", line) for line in error["content"]["traceback"]]
    assert len(lines) == 1, lines
    return error["content"]["ename"], lines[0]


def test_stop_ends_a_loop_of_comparisons_at_the_first(kernel: Kernel, server: MockLMStudioServer) -> None:
    # "nope" is not on the server: its three rows are settled before anything is sent, so three rows are finished
    code = (
        "calls = []\n"
        "for i in range(3):\n"
        "    calls.append(i)\n"
        f"    lm_notebook.compare(['a', 'b', 'c'], [{SLOW!r}, 'nope'], progress=False)\n"
    )
    run = run_and_stop(kernel, server, code, once_sent=3)
    assert run.status == "error"  # so "Run all" stops here too
    ename, line = one_line_error(run)
    assert ename == "ComparisonInterrupted"
    assert line.startswith("ComparisonInterrupted: compare() stopped: 3 of 6 rows finished, 3 cancelled")
    assert "lm_notebook.last_comparison()" in line and "cache=" not in line
    after = kernel.run("from lm_notebook.comparison import last_comparison\n"
                       "print(calls, sorted(last_comparison().status.value_counts().items()))")
    assert after.status == "ok"
    assert after.of_type("stream")[0]["content"]["text"] == "[0] [('cancelled', 3), ('error', 3)]\n"


def test_stop_in_lm_compare_shows_the_table_so_far_then_ends_the_cell(
    kernel: Kernel, server: MockLMStudioServer
) -> None:
    run = run_and_stop(kernel, server, f"%%lm_compare -m {SLOW},nope --no-progress -o partial\nQ one\nQ two",
                       once_sent=2)
    assert run.status == "error"
    (table,) = run.of_type("display_data")
    html = table["content"]["data"]["text/html"]
    assert "Q one" in html and "⏹ cancelled" in html and "ModelNotFoundError" in html
    ename, line = one_line_error(run)
    assert ename == "ComparisonInterrupted"
    assert line == (
        "ComparisonInterrupted: %%lm_compare stopped: 2 of 4 rows finished; the table so far is shown above, and "
        "every row is in _lm_compare and partial."
    )
    after = kernel.run("from lm_notebook.comparison import last_comparison\n"
                       "print(partial is _lm_compare is last_comparison(), len(partial))")
    assert after.of_type("stream")[0]["content"]["text"] == "True 4\n"
