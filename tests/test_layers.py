"""The house's rule, read from the code: folders are layers, and a module imports only from the layers below it.

``client`` ← ``display`` ← ``comparison``, ``chat`` ← ``magics`` ← the package root (``__init__``, ``cli``).
``testing`` imports only ``client``, and nothing but ``cli`` (and the tests) imports ``testing``. Every import counts:
module level, inside functions, and under ``TYPE_CHECKING``. The checker is tested on a made-up package too, so it is
known to fail when someone adds an upward import or a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lm_notebook"

# rank of each layer; a module may import a lower rank, or its own folder
RANKS = {"client": 0, "display": 1, "comparison": 2, "chat": 2, "magics": 3, "": 4}
SIDE = "testing"  # beside the house: built on client, used only by the command line and the tests
# third-party packages the core must never import (it has to work in a plain process and stay cheap)
NOT_IN_CORE = ("IPython", "ipywidgets", "pandas", "traitlets", "matplotlib", "nest_asyncio", "tqdm")


@dataclass(frozen=True)
class Import:
    source: str  # dotted module name of the importer
    target: str  # dotted name imported (a module, or a name inside one)
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path) -> Iterator[Import]:
    """Every import statement in every module under ``root``, wherever it stands in the file."""
    for path in sorted(root.rglob("*.py")):
        source = module_name(root, path)
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(source, alias.name, node.lineno)
            elif isinstance(node, ast.Call) and _dynamic_import(node) is not None:
                # importlib.import_module("pkg.x") / __import__("pkg.x") with a literal name imports as surely
                yield Import(source, str(_dynamic_import(node)), node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = source.split(".") if is_package else source.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    # ``from pkg import sub`` imports the module pkg.sub when it exists; the name otherwise
                    yield Import(source, f"{base}.{alias.name}" if base else alias.name, node.lineno)


def _dynamic_import(node: ast.Call) -> str | None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def resolve(target: str, modules: set[str]) -> str | None:
    """The project module an imported name belongs to (the longest module prefix), or None if it is not ours."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def layer(module: str) -> str:
    """The folder a module lives in (``""`` for the package root and the modules beside ``__init__``)."""
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and (parts[1] in RANKS or parts[1] == SIDE) else ""


def problems(root: Path) -> list[str]:
    """Upward imports, imports of the test server, heavy imports in the core, and cycles: one line each."""
    modules = {module_name(root, p) for p in root.rglob("*.py")}
    name = root.name
    found: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports_of(root):
        src_layer = layer(imp.source)
        top = imp.target.split(".")[0]
        if src_layer == "client" and top in NOT_IN_CORE:
            found.append(f"{imp.source}:{imp.line} imports {imp.target}: the core must not import {top}")
        target = resolve(imp.target, modules)
        if target is None or target == imp.source:
            continue
        graph[imp.source].add(target)
        dst_layer = layer(target)
        if target == name and imp.source != name:
            found.append(f"{imp.source}:{imp.line} imports the package root {name}: import the module that defines it")
            continue
        if dst_layer == SIDE and src_layer != SIDE and imp.source != f"{name}.cli":
            found.append(f"{imp.source}:{imp.line} imports {target}: only the tests and the command line use testing")
        elif src_layer == SIDE and dst_layer not in (SIDE, "client"):
            found.append(f"{imp.source}:{imp.line} imports {target}: testing is built on client only")
        elif (
            src_layer != dst_layer
            and src_layer in RANKS
            and dst_layer in RANKS
            and RANKS[dst_layer] >= RANKS[src_layer]
        ):
            found.append(
                f"{imp.source}:{imp.line} imports {target}: {dst_layer or 'the root'} is not below "
                f"{src_layer or 'the root'}"
            )
    found += [f"import cycle: {' → '.join(c)}" for c in cycles(graph)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan's algorithm, iterative enough for a small graph)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append([*sorted(group), min(group)])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_the_package_keeps_its_layers_and_has_no_cycles() -> None:
    assert problems(PACKAGE) == []


def test_the_conversation_model_imports_no_widgets() -> None:
    # transitively, through our own modules too: the chat's data model must be testable without ipywidgets
    modules = {module_name(PACKAGE, p) for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for imp in imports_of(PACKAGE):
        edges.setdefault(imp.source, set()).add(resolve(imp.target, modules) or imp.target)
    seen, todo = set(), ["lm_notebook.chat.conversation"]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += [t for t in edges.get(m, ()) if t in modules or t.split(".")[0] == "ipywidgets"]
    assert not any(m.split(".")[0] == "ipywidgets" for m in seen), sorted(seen)


def test_importing_the_conversation_model_loads_no_widgets_at_run_time() -> None:
    # at run time too: importing a module runs its packages' __init__ first, which the static walk does not follow
    code = (
        "import sys, lm_notebook.chat.conversation\n"
        "print(sorted(m for m in ('ipywidgets', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_only_init_and_the_command_line_sit_at_the_root() -> None:
    # checks.py: the public ``lm_notebook.checks`` (#13), only re-exporting comparison/checks.py and judge.py
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "checks.py", "cli.py"]
    for folder in ("client", "display", "magics", "chat", "comparison", "testing"):
        assert (PACKAGE / folder / "__init__.py").is_file(), folder


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"client/core.py": "def f():\n    from pkg.display import view\n"}, "display is not below client"),
        ({"client/core.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.magics.lm\n"},
         "magics is not below client"),
        ({"chat/panel.py": "from pkg.comparison.run import go\n"}, "comparison is not below chat"),
        ({"client/core.py": "import pandas\n"}, "the core must not import pandas"),
        ({"display/view.py": "from pkg.testing import server\n"}, "only the tests and the command line"),
        ({"testing/server.py": "from pkg.display import view\n"}, "testing is built on client only"),
        ({"chat/a.py": "from pkg.chat import b\n", "chat/b.py": "def f():\n    from .a import x\n"},
         "import cycle: pkg.chat.a → pkg.chat.b → pkg.chat.a"),
        ({"display/view.py": "from pkg import thing\n"}, "imports the package root"),
        ({"client/core.py": "import importlib\nimportlib.import_module('pkg.magics.lm')\n"},
         "magics is not below client"),
    ],
)
def test_the_checker_catches_what_the_rule_forbids(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    base = {f"{d}/__init__.py": "" for d in ("client", "display", "chat", "comparison", "magics", "testing")}
    base |= {"__init__.py": "", "display/view.py": "", "magics/lm.py": "", "comparison/run.py": "",
             "testing/server.py": ""}
    root = _write(tmp_path, base | files)
    found = problems(root)
    assert any(expected in p for p in found), found
    # and the same tree without the offending files is clean
    clean = _write(tmp_path / "clean", base)
    assert problems(clean) == []
