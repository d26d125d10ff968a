"""What nbval collects from a live run equals what Jupyter saves, even though the answer was repainted live.

nbval 0.11 ignores ``update_display_data``; a frontend (and nbclient, which saves notebooks) applies it. A notebook is
executed with nbclient (the saved form), then checked by nbval in strict mode in a separate pytest run (the live
form). A naive live display — one display updated to the answer — is the control: nbval must reject it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from lm_notebook.testing import MockLMStudioServer, default_models

ROOT = Path(__file__).resolve().parent.parent
SANITIZE = ROOT / "notebooks" / "sanitize.cfg"

LM_CELLS: list[tuple[str, list[str]]] = [
    ("%load_ext lm_notebook\n%lm_use qwen2.5-7b-instruct", []),
    ("%%lm\nExplain tides", []),
    ("%%lm -o ans -f text --max-tokens 30\nShort one", []),
    ("ans.finish_reason", []),
    ("%%lm -m openai/gpt-oss-20b\nThink about primes", []),
    ("%%lm -f code\nWrite code", []),
    ("%%lm --no-stream\nNo streaming", []),
    ("%%lm -m nope\nHi", ["raises-exception"]),
]
NAIVE_CELL = (
    "from IPython.display import Markdown, display\n"
    "handle = display(Markdown('*thinking…*'), display_id=True)\n"
    "handle.update(Markdown('The final answer.'))"
)


class RecordingClient(NotebookClient):
    """nbclient, counting the iopub message types it applied."""

    seen: dict[str, int]

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        self.seen[msg["msg_type"]] = self.seen.get(msg["msg_type"], 0) + 1
        return super().process_message(msg, cell, cell_index)


@pytest.fixture(scope="module")
def server() -> Iterator[MockLMStudioServer]:
    models = [dataclasses.replace(m, tokens_per_second=300.0) for m in default_models()]
    with MockLMStudioServer(models=models) as fake:
        yield fake


def make_notebook(cells: list[tuple[str, list[str]]]) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_code_cell(src, metadata={"tags": tags} if tags else {}) for src, tags in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def execute(nb: nbformat.NotebookNode, url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    monkeypatch.setenv("LMSTUDIO_BASE_URL", url)
    client = RecordingClient(nb, timeout=60, kernel_name="python3", allow_errors=True)
    client.seen = {}
    client.execute()
    return client.seen


def nbval(paths: list[Path], url: str, tmp_path: Path) -> dict[str, str]:
    """Run strict nbval on ``paths``; ``{"name.ipynb::Cell N": "PASSED" | "FAILED"}``."""
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\n")
    env = {**os.environ, "LMSTUDIO_BASE_URL": url}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ini), "--rootdir", str(tmp_path), "-p", "no:cacheprovider",
         "--nbval", "--nbval-sanitize-with", str(SANITIZE), "-rA", "-q", *map(str, paths)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240, check=False,
    )
    results = dict(
        (m.group(2), m.group(1)) for m in re.finditer(r"^(PASSED|FAILED) (\S+::Cell \d+)", proc.stdout, re.M)
    )
    assert results, proc.stdout + proc.stderr
    return results


def test_saved_outputs_equal_what_nbval_collects_live(
    server: MockLMStudioServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = make_notebook(LM_CELLS)
    seen = execute(good, server.url, monkeypatch)
    assert seen.get("update_display_data", 0) >= 10, "the answers should really have been repainted live"
    for cell in good.cells[1:3]:  # a streamed cell saves [placeholder, answer]
        assert cell.outputs[0]["data"] == {"text/plain": ""}
        assert cell.outputs[1]["output_type"] == "execute_result"
    nbformat.write(good, tmp_path / "lm.ipynb")

    naive = make_notebook([(NAIVE_CELL, [])])
    execute(naive, server.url, monkeypatch)
    assert naive.cells[0].outputs[0]["data"]["text/markdown"] == "The final answer."  # what a user saves
    nbformat.write(naive, tmp_path / "naive.ipynb")

    results = nbval([tmp_path / "lm.ipynb", tmp_path / "naive.ipynb"], server.url, tmp_path)
    lm_results = {k: v for k, v in results.items() if k.startswith("lm.ipynb")}
    assert len(lm_results) == len(LM_CELLS)
    assert set(lm_results.values()) == {"PASSED"}, lm_results
    assert results["naive.ipynb::Cell 0"] == "FAILED"  # the control: nbval sees the first display, not the update


def test_the_quickstart_states_how_to_reach_lm_studio_and_is_run() -> None:
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    assert "LMSTUDIO_BASE_URL" in nb.cells[0].source
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "store the outputs of a full run"
    sources = "\n".join(c.source for c in code)
    for magic in ("%load_ext lm_notebook", "%lm_models", "%lm_use", "%%lm", "-o answer", "--chat", "%lm_reset"):
        assert magic in sources
