"""A saved ``%%lm`` cell holds its answer once (issue 10, item 23), in a real kernel against the fake server.

nbclient (what ``jupyter nbconvert --execute`` runs, and a frontend's rules) executes a notebook; the saved ``.ipynb``
and its HTML hold each answer once, no empty placeholder. Strict nbval then checks the saved notebook live, reading
through ``notebooks/conftest.py``'s frontend replay; without it (the control) nbval sees the live display and fails.
A stopped answer, replayed as a frontend keeps it, is the partial answer and the one-line error.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import pytest
from kernel_driver import kernel_for
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from nbformat.v4 import new_code_cell, new_notebook

from lm_notebook.display.frontend import CellOutputs
from lm_notebook.testing import MockLMStudioServer, ModelSpec

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
MODEL = "qwen2.5-7b-instruct"
CELLS: list[tuple[str, list[str]]] = [
    (f"%load_ext lm_notebook\n%lm_use {MODEL}", []),
    ("%%lm\nExplain tides", []),
    ("%%lm -o ans -f text --max-tokens 30\nShort one", []),
    ("%%lm -f code\nWrite code", []),
    ("%%lm -m openai/gpt-oss-20b\nThink about primes", []),
    ("%%lm -m nope\nHi", ["raises-exception"]),
]
STREAMED = [1, 2, 3, 4]


def notebooks_conftest() -> ModuleType:
    """notebooks/conftest.py as a module: its fake server is the one nbval runs the notebooks against."""
    spec = importlib.util.spec_from_file_location("notebooks_conftest", NOTEBOOKS / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CountingClient(NotebookClient):
    """nbclient, counting the iopub message types it applied."""

    seen: dict[str, int]

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        self.seen[msg["msg_type"]] = self.seen.get(msg["msg_type"], 0) + 1
        return super().process_message(msg, cell, cell_index)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, int]]]:
    """The notebook of CELLS, executed by nbclient against the notebooks' fake server and saved."""
    path = tmp_path_factory.mktemp("saved") / "lm.ipynb"
    nb = new_notebook(cells=[new_code_cell(src, metadata={"tags": tags} if tags else {}) for src, tags in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with notebooks_conftest().fake_server() as server:
        previous = os.environ.get("LMSTUDIO_BASE_URL")
        os.environ["LMSTUDIO_BASE_URL"] = server.url
        try:
            client = CountingClient(nb, timeout=120, kernel_name="python3", allow_errors=True)
            client.seen = {}
            client.execute()
        finally:
            if previous is None:
                os.environ.pop("LMSTUDIO_BASE_URL", None)
            else:
                os.environ["LMSTUDIO_BASE_URL"] = previous
    nbformat.write(nb, path)
    yield path, client.seen


def test_a_saved_cell_holds_the_answer_once(saved: tuple[Path, dict[str, int]]) -> None:
    path, seen = saved
    assert seen.get("update_display_data", 0) >= len(STREAMED), "the answers should have been shown live"
    assert seen.get("clear_output", 0) >= len(STREAMED)
    cells = nbformat.read(path, as_version=4).cells
    for i in STREAMED:
        (output,) = cells[i].outputs  # exactly one output: the final answer
        assert output["output_type"] == "execute_result", cells[i].source
        assert "▌" not in str(output["data"]) and " tokens · first token " in output["data"]["text/plain"]
    assert [o["output_type"] for o in cells[5].outputs] == ["error"]


def test_the_html_of_a_saved_notebook_shows_each_answer_once(saved: tuple[Path, dict[str, int]]) -> None:
    path, _ = saved
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(path, as_version=4))
    cells = re.split(r'<div\s+class="jp-Cell jp-CodeCell', body)[1:]
    assert len(cells) == len(CELLS)
    for i in STREAMED:
        assert cells[i].count('class="jp-OutputArea-child') == 1, CELLS[i][0]
        assert cells[i].count(" tokens · first token ") == 1, CELLS[i][0]  # the answer's footer: the answer, once


def nbval(folder: Path, notebook: Path, *extra: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """Strict nbval on ``notebook`` from ``folder``; ``{"Cell N": "PASSED" | "FAILED"}``."""
    (folder / "pytest.ini").write_text("[pytest]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(folder / "pytest.ini"), "--rootdir", str(folder),
         "-p", "no:cacheprovider", "--nbval", "-rA", "-q", *extra, str(notebook)],
        capture_output=True, text=True, cwd=folder, timeout=300, check=False, env={**os.environ, **(env or {})},
    )
    results = {m.group(2): m.group(1) for m in re.finditer(r"^(PASSED|FAILED) \S+::(Cell \d+)", proc.stdout, re.M)}
    assert results, proc.stdout + proc.stderr
    return results


def test_strict_nbval_checks_the_saved_notebook_through_the_replay(
    saved: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    path, _ = saved
    notebook = tmp_path / "lm.ipynb"
    shutil.copy(path, notebook)
    shutil.copy(NOTEBOOKS / "conftest.py", tmp_path / "conftest.py")
    shutil.copy(NOTEBOOKS / "sanitize.cfg", tmp_path / "sanitize.cfg")
    assert set(nbval(tmp_path, notebook).values()) == {"PASSED"}

    # the control: the same run without the replay sees the live display as well as the answer
    with notebooks_conftest().fake_server() as server:
        bare = nbval(tmp_path, notebook, "--noconftest", "--nbval-sanitize-with", str(tmp_path / "sanitize.cfg"),
                     env={"LMSTUDIO_BASE_URL": server.url})
    assert {bare[f"Cell {i}"] for i in STREAMED} == {"FAILED"}
    assert bare["Cell 0"] == "PASSED"


@pytest.fixture(scope="module")
def slow_server() -> Iterator[MockLMStudioServer]:
    # an answer that outlasts the test (over 8 minutes): only an interrupt ends a cell streaming it
    with MockLMStudioServer(models=[ModelSpec("slow-model", loaded=True, tokens_per_second=40,
                                              reply_tokens=20_000)]) as fake:
        yield fake


def test_a_stopped_cell_keeps_the_partial_answer_with_its_count_and_the_error(slow_server: MockLMStudioServer) -> None:
    with kernel_for(slow_server.url) as kernel:
        assert kernel.run("%load_ext lm_notebook").status == "ok"
        run = kernel.run("%%lm -m slow-model\nA long story", interrupt_when="tokens · streaming")
    assert run.interrupted_at is not None, "the answer never started streaming"
    cell = CellOutputs()
    for message in run.messages:
        cell.add(message)
    outputs = cell.outputs()
    assert [o["output_type"] for o in outputs] == ["display_data", "error"]
    footer = outputs[0]["data"]["text/markdown"].rsplit("<sub>", 1)[1]
    assert re.fullmatch(r"slow-model · ≈\d+ tokens? · first token [\d.]+ s( · [\d.]+ tok/s)? · stopped( · fake server)?"
                        r"</sub>", footer), footer
