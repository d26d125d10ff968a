"""Run the example notebooks (``pytest --nbval notebooks``) against the bundled fake LM Studio server.

Each notebook gets a fresh server, started before nbval starts that notebook's kernel, and ``LMSTUDIO_BASE_URL``
points at it, so the notebooks talk to it exactly as they would to LM Studio — and one notebook's model loads never
show in another's stored outputs. ``sanitize.cfg`` (next to this file) masks what truly varies between runs —
timings and the server's port — and is used unless ``--nbval-sanitize-with`` names another file.

nbval reads the kernel's messages as they come; a frontend (and nbclient, which saves notebooks) applies
``clear_output`` and ``update_display_data`` to them. ``%%lm`` shows its answer live in a display it updates, then
clears it when the answer comes, so a saved cell holds the answer once; here nbval reads each cell through
:class:`~lm_notebook.display.frontend.FrontendReplay`, so it collects what the frontend kept, as strictly as ever.

To refresh the stored outputs after changing a notebook: ``python notebooks/conftest.py [notebook.ipynb ...]``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

from lm_notebook.display.frontend import FrontendReplay
from lm_notebook.testing import MockLMStudioServer, default_models

HERE = Path(__file__).resolve().parent
SANITIZE = HERE / "sanitize.cfg"
# fast enough for a quick test run, slow enough that answers really stream (several repaints per answer)
TOKENS_PER_SECOND = 400.0

_server: MockLMStudioServer | None = None
_previous_url: str | None = None


# evaluate.ipynb's questions: some models answer them right, some at length, some wrong, so its checks find both
EVALUATE_ANSWERS = {
    ("qwen2.5-7b-instruct", "What is the capital of France?"): "Paris.",
    ("qwen2.5-7b-instruct", "What is 17 times 3?"): "51",
    ("qwen2.5-7b-instruct", "Which planet is the largest?"): "Jupiter.",
    ("google/gemma-3-4b", "What is the capital of France?"):
        "The capital of France is Paris, a city on the Seine known for its museums, its cafés and the Eiffel Tower.",
    ("google/gemma-3-4b", "What is 17 times 3?"): "51",
    ("google/gemma-3-4b", "Which planet is the largest?"): "Saturn.",
}


# models that take a while to load, per notebook: the quickstart shows a load's progress (its saved output lists
# every step: the fake reports each one whatever the machine's load, and the seconds are sanitized)
LOAD_SECONDS: dict[str, dict[str, float]] = {
    "quickstart.ipynb": {"google/gemma-3-4b": 1.0, "openai/gpt-oss-20b": 0.5},
}


def fake_server(notebook: str | None = None) -> MockLMStudioServer:
    """The fake LM Studio the notebooks are validated against (default models, paced like a fast laptop; the
    models of ``LOAD_SECONDS[notebook]`` load in that many seconds)."""
    loads = LOAD_SECONDS.get(notebook or "", {})
    models = [dataclasses.replace(m, tokens_per_second=TOKENS_PER_SECOND, load_time=loads.get(m.id, m.load_time))
              for m in default_models()]
    server = MockLMStudioServer(models=models)
    for (model, prompt), reply in EVALUATE_ANSWERS.items():
        server.answer(model, prompt, reply)
    # tools.ipynb's compare: gemma's tool calls break the schema, so the summary's ranking has something to rank
    server.set_fault("tool_bad_arguments", model="google/gemma-3-4b")
    return server


def _nbval_on(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False))


def _fresh_server(notebook: str) -> None:
    global _server
    if _server is not None:
        _server.stop()
    _server = fake_server(notebook).start()
    os.environ["LMSTUDIO_BASE_URL"] = _server.url  # the notebook's kernel inherits it


def pytest_configure(config: pytest.Config) -> None:
    global _previous_url
    if not _nbval_on(config):
        return
    _previous_url = os.environ.get("LMSTUDIO_BASE_URL")
    if getattr(config.option, "nbval_sanitize_with", None) is None:
        config.option.nbval_sanitize_with = str(SANITIZE)


_current_notebook: object = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> object:
    """Before the first cell of each notebook (nbval starts its kernel in this setup), start a fresh server; once
    the kernel is up, have nbval read it as a frontend would."""
    global _current_notebook
    if _nbval_on(item.config) and item.parent is not _current_notebook:
        _current_notebook = item.parent
        _fresh_server(Path(str(item.path)).name)
    outcome = yield
    kernel = getattr(item.parent, "kernel", None)
    if kernel is not None:
        read_as_a_frontend(kernel)
    return outcome


def read_as_a_frontend(kernel: object) -> None:
    """Make nbval's kernel (``nbval.kernel.RunningKernel``) hand on each cell's iopub messages as a frontend keeps
    them. Both of nbval's readers (the cell's outputs, and the wait for idle after an error) go through
    ``get_message``, so both read through one replay. A second call does nothing."""
    if getattr(kernel, "_lm_notebook_replay", None) is not None:
        return
    read = kernel.get_message  # type: ignore[attr-defined]
    replay = FrontendReplay(lambda timeout: read("iopub", timeout=timeout))

    def get_message(stream: str, timeout: float | None = None) -> dict[str, object]:
        return replay(timeout) if stream == "iopub" else read(stream, timeout=timeout)

    kernel.get_message = get_message  # type: ignore[attr-defined]
    kernel._lm_notebook_replay = replay  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    global _server
    if _server is None:
        return
    _server.stop()
    _server = None
    if _previous_url is None:
        os.environ.pop("LMSTUDIO_BASE_URL", None)
    else:
        os.environ["LMSTUDIO_BASE_URL"] = _previous_url


def execute_notebook(path: Path, base_url: str, timeout: int = 120) -> object:
    """Run ``path`` top to bottom in a fresh kernel talking to ``base_url``; returns the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    previous = os.environ.get("LMSTUDIO_BASE_URL")
    os.environ["LMSTUDIO_BASE_URL"] = base_url
    try:
        # coalesce_streams: a cell's prints are saved as one output, however the kernel's flushes split them (nbval
        # joins them too before comparing)
        NotebookClient(nb, timeout=timeout, kernel_name="python3", coalesce_streams=True,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        if previous is None:
            os.environ.pop("LMSTUDIO_BASE_URL", None)
        else:
            os.environ["LMSTUDIO_BASE_URL"] = previous
    return nb


def main(argv: list[str]) -> int:
    import nbformat

    paths = [Path(a) for a in argv] or sorted(HERE.glob("*.ipynb"))
    for path in paths:
        with fake_server(path.name) as server:  # a fresh server per notebook, as in the nbval run
            nb = execute_notebook(path, server.url)
        nbformat.write(nb, path)
        sys.stdout.write(f"refreshed {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
