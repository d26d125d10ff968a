"""The package's public surface as a user meets it: every exported name imports, the lazy ones are listed and typed
for a type checker (``reveal_type(compare)`` is the function, not ``Any``), and ``import lm_notebook`` stays cheap."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lm_notebook

ROOT = Path(__file__).resolve().parent.parent
LAZY = ("ChatPanel", "acompare", "benchmark", "benchmark_summary", "compare", "comparison_table", "plot_benchmark",
        "plot_summary", "summary")


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported yet) and return what it printed."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_every_exported_name_imports() -> None:
    for name in lm_notebook.__all__:
        assert getattr(lm_notebook, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from lm_notebook import *", namespace)  # the star import a user may write
    assert set(lm_notebook.__all__) <= set(namespace)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        lm_notebook.nothing_here  # noqa: B018


def test_dir_lists_the_lazy_names_before_they_are_imported() -> None:
    out = _python(
        """
        import sys, lm_notebook
        print(sorted(name for name in dir(lm_notebook) if not name.startswith("_")))
        print("pandas" in sys.modules)
        """
    )
    listed, pandas_loaded = out.splitlines()
    for name in (*LAZY, *lm_notebook.__all__, "load_ipython_extension"):
        assert repr(name) in listed, name
    assert pandas_loaded == "False"  # listing them did not import them


def test_import_lm_notebook_does_not_import_pandas_ipywidgets_or_ipython() -> None:
    out = _python(
        """
        import sys, lm_notebook
        print(sorted(m for m in ("pandas", "ipywidgets", "IPython", "matplotlib") if m in sys.modules))
        """
    )
    assert out.strip() == "[]"


SNIPPET = """\
from lm_notebook import ChatPanel, LMStudioClient, acompare, compare, comparison_table, plot_summary, summary

reveal_type(compare)
reveal_type(acompare)
reveal_type(summary)
reveal_type(comparison_table)
reveal_type(plot_summary)
reveal_type(ChatPanel)
reveal_type(LMStudioClient)
"""


def test_a_type_checker_sees_the_real_types(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy comes with the test extra")
    snippet = tmp_path / "user_code.py"
    snippet.write_text(SNIPPET)
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--cache-dir", str(tmp_path / "cache"),
         "--no-error-summary", str(snippet)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    revealed = dict(re.findall(r":(\d+): note: Revealed type is \"(.*)\"", out.stdout))
    assert len(revealed) == 7, out.stdout + out.stderr
    compare_t, acompare_t, summary_t, table_t, plot_t, panel_t, client_t = (revealed[str(n)] for n in range(3, 10))
    frame = "pandas.core.frame.DataFrame"
    assert compare_t.startswith("def (prompts: str | typing.Sequence[str]") and compare_t.endswith(f") -> {frame}")
    # tools= takes functions of any signature: Callable[..., object], which mypy spells with Any
    assert "Any" not in compare_t.replace("def (*Any, **Any) -> object", ""), compare_t
    assert "template: str | None =" in compare_t
    assert re.search(r"client: lm_notebook\.client\.[\w.]*LMStudioClient \| ", compare_t), compare_t
    assert acompare_t.endswith(f"-> typing.Coroutine[Any, Any, {frame}]")  # the Any's are the coroutine's own
    assert acompare_t.rsplit(" -> ", 1)[0] == compare_t.rsplit(" -> ", 1)[0]  # the same arguments
    assert summary_t == f"def (df: {frame}) -> {frame}"
    assert table_t.startswith(f"def (df: {frame}, *")
    assert table_t.endswith("-> lm_notebook.comparison.views.ComparisonTable")
    assert plot_t.endswith("-> matplotlib.figure.Figure")
    assert re.fullmatch(r"def \(.*\) -> lm_notebook\.chat\.[\w.]*ChatPanel", panel_t), panel_t
    assert re.fullmatch(r"def \(.*\) -> lm_notebook\.client\.[\w.]*LMStudioClient", client_t), client_t
    assert "error:" not in out.stdout, out.stdout  # the snippet itself type-checks
