"""The registry of published numbers: ``results/published/*.csv``.

One row per method, dataset, protocol (and shot count for few-shot), with the columns
``method,dataset,protocol,backbone,shots,base,novel,hm,accuracy,source,note``:
``method`` is our registered trainer name, ``dataset`` our config name (``average`` for
the mean over a protocol's datasets), ``base/novel/hm`` for base-to-novel, ``accuracy``
otherwise, ``source`` the document and table the numbers were read from. A few-shot row
with an empty ``shots`` holds for every shot count (zero-shot CLIP).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .methods import REPO

REGISTRY = REPO / "results" / "published"
COLUMNS = ["method", "dataset", "protocol", "backbone", "shots", "base", "novel", "hm", "accuracy", "source", "note"]
NUMBER_COLUMNS = ("base", "novel", "hm", "accuracy")


@dataclass(frozen=True)
class PublishedRow:
    method: str
    dataset: str
    protocol: str
    backbone: str
    shots: Optional[int]
    base: Optional[float]
    novel: Optional[float]
    hm: Optional[float]
    accuracy: Optional[float]
    source: str
    note: str
    where: str  # file:line, for error messages

    def value(self, metric: str) -> Optional[float]:
        return getattr(self, metric)


def _number(text: str, where: str, column: str) -> Optional[float]:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: column '{column}' must be a number or empty, got {text!r}") from None


def load_registry(folder: Path = REGISTRY) -> List[PublishedRow]:
    """Every row of every CSV in ``folder``; a malformed file is an error naming file and line."""
    rows: List[PublishedRow] = []
    for path in sorted(Path(folder).glob("*.csv")):
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != COLUMNS:
                raise ValueError(f"{path}: header must be {','.join(COLUMNS)}, got {reader.fieldnames}")
            for line, record in enumerate(reader, start=2):
                where = f"{path.name}:{line}"
                shots = record["shots"].strip()
                rows.append(PublishedRow(
                    method=record["method"].strip(), dataset=record["dataset"].strip(),
                    protocol=record["protocol"].strip(), backbone=record["backbone"].strip(),
                    shots=int(shots) if shots else None,
                    **{c: _number(record[c], where, c) for c in NUMBER_COLUMNS},
                    source=record["source"].strip(), note=record["note"].strip(), where=where))
    return rows


class Published:
    """Look-ups into the registry: ``get(method, dataset, protocol, shots)``."""

    def __init__(self, rows: List[PublishedRow]) -> None:
        self.rows = rows
        self._index: Dict[Tuple[str, str, str, Optional[int]], PublishedRow] = {}
        for row in rows:
            key = (row.method, row.dataset, row.protocol, row.shots if row.protocol == "fewshot" else None)
            if key in self._index:
                raise ValueError(f"{row.where}: duplicate of {self._index[key].where} "
                                 f"(method, dataset, protocol{', shots' if row.protocol == 'fewshot' else ''})")
            self._index[key] = row

    @classmethod
    def load(cls, folder: Path = REGISTRY) -> "Published":
        return cls(load_registry(folder))

    def get(self, method: str, dataset: str, protocol: str, shots: Optional[int] = None) -> Optional[PublishedRow]:
        if protocol != "fewshot":
            return self._index.get((method, dataset, protocol, None))
        return self._index.get((method, dataset, protocol, shots)) or self._index.get((method, dataset, protocol, None))
