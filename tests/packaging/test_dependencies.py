"""Every third-party import is declared in setup.py, for the area that imports it.

A fresh virtual environment gets exactly what ``setup.py`` declares: a module that
imports an undeclared package works on a developer's machine and fails for a user.
This walks every ``.py`` file of the repository and checks each absolute import
against ``install_requires`` (any area) or the extras its area is installed with.
Imports guarded by ``try: ... except ImportError`` and ``pytest.importorskip`` are
optional and not required.
"""
from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
SKIP_DIRS = {"__pycache__", "build", "dist", "output", "data"}
# Which extras each top-level folder is installed with (besides install_requires).
AREA_EXTRAS: Dict[str, Tuple[str, ...]] = {
    "tests": ("test",),
    "bench": ("test",),
}
# The only module allowed to import OpenAI's clip package directly (it filters the
# pkg_resources warning that import raises); everything else imports it from there.
CLIP_SHIM = "trainers/common/openai_clip.py"


def _setup_requirements() -> Tuple[List[str], Dict[str, List[str]]]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup":
            kwargs = {k.arg: k.value for k in node.keywords}
            install = ast.literal_eval(kwargs["install_requires"])
            extras = ast.literal_eval(kwargs.get("extras_require", ast.Dict(keys=[], values=[])))
            return install, extras
    raise AssertionError("setup.py has no setup(...) call")


def _normalize(requirement: str) -> str:
    name = re.split(r"[<>=!~;\[\s]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def python_files() -> Iterator[Path]:
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO)
        if any(part.startswith(".") or part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
            continue
        yield path


def _local_names() -> Set[str]:
    """Top-level names that are this repository's own packages and modules."""
    names = {p.stem for p in REPO.glob("*.py")}
    names |= {p.name for p in REPO.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    return names


def _is_import_error_guard(handler: ast.ExceptHandler) -> bool:
    caught = handler.type
    names = [caught] if not isinstance(caught, ast.Tuple) else list(caught.elts)
    return any(getattr(n, "id", "") in ("ImportError", "ModuleNotFoundError") for n in names)


def required_imports(path: Path) -> List[Tuple[str, int]]:
    """``(top-level module, line)`` of every absolute import that is not optional."""
    tree = ast.parse(path.read_text(), filename=str(path))
    optional_nodes: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_is_import_error_guard(h) for h in node.handlers):
            for stmt in node.body:
                optional_nodes.update(id(n) for n in ast.walk(stmt))
    found = []
    for node in ast.walk(tree):
        if id(node) in optional_nodes:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def test_every_third_party_import_is_declared():
    install, extras = _setup_requirements()
    declared_core = {_normalize(r) for r in install}
    providers = metadata.packages_distributions()
    local = _local_names()
    problems = []
    for path in python_files():
        rel = path.relative_to(REPO)
        area = rel.parts[0] if len(rel.parts) > 1 else ""
        allowed = set(declared_core)
        for extra in AREA_EXTRAS.get(area, ()):
            allowed |= {_normalize(r) for r in extras.get(extra, [])}
        for module, line in required_imports(path):
            if module in sys.stdlib_module_names or module in local or module == "__future__":
                continue
            dists = {_normalize(d) for d in providers.get(module, [])}
            if not dists:
                problems.append(f"{rel}:{line} imports {module!r}, which no installed distribution provides")
            elif not dists & allowed:
                where = "install_requires" + "".join(f' or extras_require["{e}"]' for e in AREA_EXTRAS.get(area, ()))
                problems.append(f"{rel}:{line} imports {module!r} (distribution {sorted(dists)[0]}), "
                                f"not declared in setup.py's {where}")
    assert not problems, "Undeclared dependencies:\n" + "\n".join(problems)


def test_the_check_sees_an_undeclared_import(tmp_path):
    """The walker must catch a plain import and skip an ImportError-guarded one."""
    module = tmp_path / "m.py"
    module.write_text("import os\nimport yaml\ntry:\n    import tensorboard\nexcept ImportError:\n    pass\n"
                      "def f():\n    from scipy.io import loadmat\n")
    assert [m for m, _ in required_imports(module)] == ["os", "yaml", "scipy"]


def test_clip_is_imported_only_through_the_shim():
    offenders = []
    for path in python_files():
        rel = path.relative_to(REPO).as_posix()
        if rel == CLIP_SHIM:
            continue
        offenders += [f"{rel}:{line}" for module, line in required_imports(path) if module == "clip"]
    assert not offenders, (
        f"import clip through {CLIP_SHIM} ('from trainers.common.openai_clip import clip'), "
        f"which filters its pkg_resources warning: {offenders}")


@pytest.mark.parametrize("command", [
    [sys.executable, "-W", "default", "-c", "import trainers.common"],
])
def test_importing_the_clip_pieces_prints_no_warning(command):
    import subprocess

    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pkg_resources" not in result.stderr, result.stderr


def test_the_attribute_generator_loads_the_attribute_module_only():
    """The generator's start does not pay for torch, the engine or every trainer."""
    import subprocess

    probe = ("import sys, tools.generate_attributes; "
             "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('trainers', 'torch', 'dassl', 'clip'))))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["trainers", "trainers.parts", "trainers.parts.attributes"]
