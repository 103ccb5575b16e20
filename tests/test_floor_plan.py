"""The floor plan (DEVELOPING.md, "Floor plan"), read from the import graph.

Every ``import`` / ``from ... import`` of every ``.py`` file under ``dassl/``, ``trainers/``,
``datasets/`` and ``tools/`` (function-level imports included; relative imports resolved) is
checked against the rules below, so that a method stays one file that composes parts and a
lower floor never reaches up.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Callable, Dict, List, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("dassl", "trainers", "datasets", "tools")
#: Modules of trainers/ that are neither a method nor a floor: the package (registration) and
#: the config registry (``extend_cfg`` imports every method to register its node).
TRAINERS_INFRASTRUCTURE = {"trainers", "trainers.config"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> Set[str]:
    """The absolute names of every module ``path`` imports (``from a import b`` yields ``a``
    and ``a.b``: ``b`` may be a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def import_graph() -> Dict[str, Set[str]]:
    """``{module: the project modules it imports}`` for every scanned file."""
    files = [p for top in SCANNED for p in sorted((REPO / top).rglob("*.py"))]
    modules = {module_name(p): p for p in files}
    graph: Dict[str, Set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in imported_modules(path) if m in modules}
    return graph


def is_method(name: str) -> bool:
    """A method module: ``trainers.<x>`` that is not a floor (common, parts) nor infrastructure."""
    parts = name.split(".")
    return (
        parts[0] == "trainers"
        and len(parts) >= 2
        and parts[1] not in ("common", "parts")
        and name not in TRAINERS_INFRASTRUCTURE
    )


def in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def is_reader(name: str) -> bool:
    """A dataset reader: any module of ``datasets/``."""
    return in_package(name, "datasets")


RULES: List[Tuple[str, Callable[[str], bool], Callable[[str, str], bool]]] = [
    ("a method module imports another method module",
     is_method, lambda src, dst: is_method(dst) and dst != src),
    ("dassl/ (the engine) imports trainers/, datasets/ or tools/",
     lambda m: in_package(m, "dassl"), lambda src, dst: not in_package(dst, "dassl")),
    ("trainers/common imports trainers/parts or a method",
     lambda m: in_package(m, "trainers.common"),
     lambda src, dst: in_package(dst, "trainers.parts") or is_method(dst)),
    ("trainers/parts imports a method",
     lambda m: in_package(m, "trainers.parts"), lambda src, dst: is_method(dst)),
    ("a dataset reader (datasets/) imports something other than dassl/ and datasets/",
     is_reader, lambda src, dst: not (in_package(dst, "dassl") or in_package(dst, "datasets"))),
]


def violations(graph: Dict[str, Set[str]]) -> Dict[str, List[str]]:
    found: Dict[str, List[str]] = {rule: [] for rule, _, _ in RULES}
    for src, targets in graph.items():
        for rule, applies, forbidden in RULES:
            if applies(src):
                found[rule].extend(f"{src} -> {dst}" for dst in sorted(targets) if forbidden(src, dst))
    return found


GRAPH = import_graph()


@pytest.mark.parametrize("rule", [rule for rule, _, _ in RULES])
def test_the_floor_plan_holds(rule):
    assert violations(GRAPH)[rule] == [], f"{rule}: see DEVELOPING.md, 'Floor plan'"


def test_the_graph_is_read():
    """The scan sees the floors and the known edges (a broken scan would pass every rule)."""
    assert "trainers.parts.vl_prompts" in GRAPH["trainers.ivlp"]
    assert "trainers.common.trainer" in GRAPH["trainers.coop"]
    assert "trainers.common.model" in GRAPH["trainers.parts.knowledge_guidance"]
    assert "dassl.engine" in GRAPH["trainers.common.trainer"] or "dassl.engine.trainer" in GRAPH["trainers.common.trainer"]
    assert is_method("trainers.sempt") and is_method("trainers.coop")
    assert not is_method("trainers.parts.fusion") and not is_method("trainers.config")


def test_each_rule_catches_its_violation():
    """Every rule fires on a graph that breaks it."""
    broken = {
        "trainers.tcp": {"trainers.kgcoop"},
        "dassl.engine.trainer": {"trainers.common.model"},
        "trainers.common.model": {"trainers.parts.vl_prompts"},
        "trainers.parts.vl_prompts": {"trainers.ivlp"},
        "datasets.caltech101": {"tools.synthetic.render"},
    }
    found = violations(broken)
    assert all(found[rule] for rule, _, _ in RULES), found


def test_relative_imports_are_resolved():
    part = REPO / "trainers" / "parts" / "knowledge_guidance.py"
    assert {"trainers.common.model", "trainers.common.prompt_learner"} <= imported_modules(part)
