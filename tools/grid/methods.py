"""The methods the benchmark can run: every ``scripts/<folder>/method.sh`` and its ``TRAINER=``.

A method added later (its folder with ``method.sh`` and the five scripts) is found
without any change here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
PROTOCOL_SCRIPTS = ("base2new_train.sh", "base2new_test.sh", "xd_train.sh", "xd_test.sh", "fewshot.sh")
_TRAINER_LINE = re.compile(r"^\s*TRAINER=([A-Za-z0-9_]+)\s*(#.*)?$", re.MULTILINE)


@dataclass(frozen=True)
class Method:
    """One method: ``folder`` under ``scripts/`` and the registered ``trainer`` name."""

    folder: str
    trainer: str

    def script(self, name: str) -> Path:
        return SCRIPTS / self.folder / name


def discover_methods(scripts_dir: Path = SCRIPTS) -> List[Method]:
    """Every method folder with a ``method.sh`` that sets ``TRAINER=``, sorted by folder."""
    methods = []
    for method_sh in sorted(scripts_dir.glob("*/method.sh")):
        match = _TRAINER_LINE.search(method_sh.read_text())
        if match is None:
            raise ValueError(f"{method_sh} sets no TRAINER=<name>; every method.sh must name its trainer")
        methods.append(Method(method_sh.parent.name, match.group(1)))
    return methods


def select_methods(names: Sequence[str], available: Sequence[Method]) -> List[Method]:
    """The methods named (trainer name, e.g. ``CoOp``, or folder, e.g. ``coop``; any case).

    ``all`` (or no name) selects every method.
    """
    if not names or [n.lower() for n in names] == ["all"]:
        return list(available)
    chosen: List[Method] = []
    for name in names:
        found = [m for m in available if name.lower() in (m.trainer.lower(), m.folder.lower())]
        if not found:
            choices = ", ".join(f"{m.trainer} ({m.folder})" for m in available)
            raise ValueError(f"unknown method '{name}' in --methods; available: {choices}, or all")
        if found[0] not in chosen:
            chosen.append(found[0])
    return chosen
