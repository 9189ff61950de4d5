"""Lint and format checks, run by the test command so CI enforces them (contributors: .pre-commit-config.yaml).

ruff (lint + format) for the Python code, snakefmt for the Snakefile and the rules, and Snakemake's own
``--lint`` for the workflow. Each is the real tool at the version pinned in requirements.lock. Two structural
checks read the code with ``ast``: no function in ``pass/`` over 60 lines (loops of one screen) and no import
circle among the package's modules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PYTHON_PATHS = ["pass", "tests", "bench"]
SNAKE_PATHS = ["Snakefile", "workflow/rules"]


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "args", [["check", *PYTHON_PATHS], ["format", "--check", *PYTHON_PATHS]], ids=["ruff-check", "ruff-format"]
)
def test_ruff(args):
    proc = _run(str(BIN / "ruff"), *args)
    assert proc.returncode == 0, (
        f"`ruff {' '.join(args)}` failed (fix: ruff check --fix / ruff format):\n" + (proc.stdout + proc.stderr)[-4000:]
    )


def test_snakefmt():
    proc = _run(str(BIN / "snakefmt"), "--check", *SNAKE_PATHS)
    assert proc.returncode == 0, (
        "snakefmt would reformat (fix: snakefmt Snakefile workflow/rules):\n" + (proc.stdout + proc.stderr)[-4000:]
    )


def test_snakemake_lint():
    proc = _run(sys.executable, "-m", "snakemake", "--lint", "--configfile", "config/test.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations, your workflow is in a good condition!" in out, out[-4000:]


# ----------------------------------------------------------------------------- structure: loops of one screen, no import circle
PACKAGE_DIR = REPO / "pass"
PACKAGE = "passprune"  # pass/ is installed under this import name (pyproject.toml, package-dir)
MAX_FUNCTION_LINES = 60


def _sources(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package by its dotted import name (``pass/a/b.py`` -> ``passprune.a.b``)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        modules[".".join((package, *parts))] = path
    return modules


def long_functions(root: Path = PACKAGE_DIR, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``file:line name (n lines)`` for every function or method, nested ones included, longer than ``limit``.

    Length counts from the ``def`` line to the last line of the body (decorators excluded), as ast reports it.
    """
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    offenders.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({n} lines)")
    return offenders


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_nodes(body: list[ast.stmt]):
    """The import statements a module runs when it is imported: its top level, ``if``/``try``/``with`` blocks and
    class bodies, and ``if TYPE_CHECKING:`` blocks too (a cycle that only type hints need is still a cycle
    between the two concepts); not function bodies, whose imports are deliberately lazy."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from _import_time_nodes(
                    [c for c in getattr(node, field, []) if isinstance(c, (ast.stmt, ast.excepthandler))]
                )


def import_graph(root: Path = PACKAGE_DIR, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports at import time (see :func:`_import_time_nodes`).

    ``from X import name`` points at the submodule ``X.name`` when there is one, else at ``X``; relative imports
    are resolved against the importing module's package. Modules outside the package are left out.
    """
    sources = _sources(root, package)
    graph: dict[str, set[str]] = {}
    for module, path in sources.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = set()
        for node in _import_time_nodes(ast.parse(path.read_text(), filename=str(path)).body):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in sources else base)
        graph[module] = {e for e in edges if e in sources and e != module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, one per import edge that closes one, each as the shortest loop through that edge.

    Modules are on a circle exactly when they share a strongly connected component (Tarjan); naming each closing
    edge's loop (``a -> b -> a``) rather than the whole component tells the reader which import to move.
    """
    cycles = set()
    for component in _components(graph):
        for u in component:
            for v in graph[u] & component:
                loop = [u, *_shortest_path(graph, v, u, component)]
                k = loop.index(min(loop[:-1]))
                cycles.add(tuple(loop[k:-1] + loop[:k] + [loop[k]]))
    return [list(c) for c in sorted(cycles)]


def _components(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

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
            component = set()
            while not component or w != v:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def _shortest_path(graph: dict[str, set[str]], start: str, goal: str, members: set[str]) -> list[str]:
    """Breadth-first path ``start .. goal`` inside one component (one exists: its modules reach each other)."""
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        if path[-1] == goal:
            return path
        for w in sorted(graph[path[-1]] & members - seen):
            seen.add(w)
            paths.append([*path, w])
    raise AssertionError(f"{goal} is not reachable from {start}")


def test_no_long_functions():
    offenders = long_functions()
    assert not offenders, (
        f"functions over {MAX_FUNCTION_LINES} lines (split them into parts of about 40, each with a docstring "
        "that says why):\n  " + "\n  ".join(offenders)
    )


def test_no_import_cycles():
    cycles = import_cycles(import_graph())
    assert not cycles, (
        "import cycles among passprune modules (imports run at import time, `if TYPE_CHECKING:` ones included; move "
        "the shared piece into a module both import, or import lazily inside the function that needs it):\n  "
        + "\n  ".join(" -> ".join(c) for c in cycles)
    )


def test_structure_checks_catch_offenders(tmp_path):
    """The two checks above can fail: a long function and import circles are reported by name, while lazy imports
    inside functions and imports of names (not submodules) from a package's ``__init__`` are not circles."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("from . import b\n\n\ndef f():\n" + "    x = 1\n" * 60)
    (pkg / "b.py").write_text("import typing\n\nif typing.TYPE_CHECKING:\n    from .a import f\n")
    (pkg / "c.py").write_text("def g():\n    from . import d\n")
    (pkg / "d.py").write_text("from .c import g\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "e.py").write_text("try:\n    from ..sub import e2\nexcept ImportError:\n    pass\n")
    (pkg / "sub" / "e2.py").write_text("class K:\n    import pkg.sub.e\n")
    assert long_functions(pkg) == ["pkg/a.py:4 f (61 lines)"]
    graph = import_graph(pkg, "pkg")
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.a"},
        "pkg.c": set(),
        "pkg.d": {"pkg.c"},
        "pkg.sub": set(),
        "pkg.sub.e": {"pkg.sub.e2"},
        "pkg.sub.e2": {"pkg.sub.e"},
    }
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"], ["pkg.sub.e", "pkg.sub.e2", "pkg.sub.e"]]
    triangle = {"x": {"y", "z"}, "y": {"x"}, "z": {"y"}, "w": {"x"}}  # two circles share x -> y
    assert import_cycles(triangle) == [["x", "y", "x"], ["x", "z", "y", "x"]]
