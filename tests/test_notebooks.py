"""The example notebooks as stored: each states how to reach LM Studio and holds the outputs of a full run.

That a saved ``%%lm`` cell holds its answer once, and that strict nbval checks it through the frontend replay of
``notebooks/conftest.py`` (with a control that fails without it), is tested in ``tests/display/test_saved_notebook.py``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def test_no_saved_cell_keeps_an_empty_placeholder_output() -> None:
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for index, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
            empty = [o for o in cell.get("outputs", []) if o.get("data") == {"text/plain": ""}]
            assert not empty, f"{path.name} code cell {index} keeps an empty output"


def test_the_quickstart_states_how_to_reach_lm_studio_and_is_run() -> None:
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    assert "LMSTUDIO_BASE_URL" in nb.cells[0].source
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "store the outputs of a full run"
    sources = "\n".join(c.source for c in code)
    for magic in ("%load_ext lm_notebook", "%lm_models", "%lm_use", "%%lm", "-o answer", "--chat", "%lm_reset"):
        assert magic in sources
