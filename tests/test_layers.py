"""Imports run one way: no two packages of gdrdd import each other, directly or through others, and no stage
imports the jobs (``gdrdd/jobs``) or the command-line glue (``gdrdd/cli.py``) above it.

Every ``import`` statement counts, including those inside functions (a lazy import is still a dependency). The
nodes are gdrdd's sub-packages and top-level modules; the root ``gdrdd/__init__.py`` is left out: it only
defines ``__version__`` and forwards ``gdrdd.load``/``gdrdd.export`` on first use.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "gdrdd"
ABOVE_THE_STAGES = {"jobs", "cli"}


def node_of(path: Path, root: Path = ROOT) -> str:
    """The package (or top-level module) a file of gdrdd belongs to."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else path.stem


def imported_nodes(path: Path, root: Path = ROOT) -> set[str]:
    """The gdrdd packages and top-level modules (of the package at ``root``) that ``path`` imports; the root
    package itself is not a node."""
    found = set()
    for statement in ast.walk(ast.parse(path.read_text())):
        if isinstance(statement, ast.Import):
            names = [alias.name for alias in statement.names]
        elif isinstance(statement, ast.ImportFrom) and statement.level == 0 and statement.module:
            # ``from gdrdd import distilled`` names a module; ``from gdrdd.data import spec`` a package
            names = ([f"gdrdd.{alias.name}" for alias in statement.names] if statement.module == "gdrdd"
                     else [statement.module])
        else:
            assert not isinstance(statement, ast.ImportFrom), f"{path}: relative import; gdrdd imports absolutely"
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "gdrdd" and len(parts) > 1 and ((root / parts[1]).is_dir()
                                                            or (root / f"{parts[1]}.py").is_file()):
                found.add(parts[1])
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        if path == root / "__init__.py":
            continue
        node = node_of(path, root)
        graph.setdefault(node, set()).update(imported_nodes(path, root) - {node})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" on the current path, "done" when finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_detects_direct_and_indirect_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_imported_nodes_sees_lazy_and_from_gdrdd_imports(tmp_path):
    package = tmp_path / "gdrdd"
    (package / "data").mkdir(parents=True)
    (package / "jobs").mkdir()
    (package / "cli.py").write_text("x = 1\n")
    module = package / "data" / "reader.py"
    module.write_text("import os\n\ndef f():\n    from gdrdd.jobs import build\n    from gdrdd import cli\n")
    assert imported_nodes(module, package) == {"jobs", "cli"}


def test_no_package_imports_another_that_imports_it_back():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"gdrdd's packages import each other: {' -> '.join(cycle)}"


def test_stages_do_not_import_the_jobs():
    above = {stage: sorted(targets & ABOVE_THE_STAGES) for stage, targets in import_graph().items()
             if stage not in ABOVE_THE_STAGES and targets & ABOVE_THE_STAGES}
    assert not above, f"stages that import the jobs or cli.py: {above}"
