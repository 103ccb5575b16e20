"""The synthetic world's tools import each other in one direction only (issue 18: check_story and
pretrain_tiny_clip imported each other), and its reader imports no tool."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Set

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "tools.synthetic"


def imported_names(path: Path, package: str) -> Set[str]:
    """Every module name ``path`` (a module of ``package``) imports, function-level and
    relative imports included."""
    names: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            parent = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(parent + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def synthetic_tools_graph() -> Dict[str, Set[str]]:
    modules = {f"{PACKAGE}.{p.stem}": p for p in (REPO / "tools" / "synthetic").glob("*.py") if p.stem != "__init__"}
    return {name: imported_names(path, PACKAGE) & set(modules) for name, path in modules.items()}


def reaches(graph: Dict[str, Set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), list(graph[start])
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return False


def test_no_module_of_tools_synthetic_imports_itself_back():
    graph = synthetic_tools_graph()
    assert {"tools.synthetic.check_story", "tools.synthetic.pretrain_tiny_clip"} <= set(graph)
    circles = sorted(name for name in graph if reaches(graph, name, name))
    assert circles == [], f"import circles through {circles}: move what both need into a module both import"


def test_the_reader_imports_no_tool():
    imported = imported_names(REPO / "datasets" / "synthetic.py", "datasets")
    assert {name.split(".")[0] for name in imported} <= {"dassl", "os"}, imported
