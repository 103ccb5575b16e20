"""The registry of published numbers: every row has a source and is self-consistent."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from tools.grid.grid import DEFAULT_DATASETS, PROTOCOLS, available_datasets
from tools.grid.published import REGISTRY, Published, load_registry

METHODS = {"ZeroshotCLIP", "CoOp", "CoCoOp", "KgCoOp", "ProGrad", "MaPLe", "PromptSRC", "TCP", "TAP"}
ROWS = load_registry()


def hm(base: float, novel: float) -> float:
    return 2 * base * novel / (base + novel)


def test_the_registry_holds_every_protocol_and_method():
    assert {r.protocol for r in ROWS} == set(PROTOCOLS)
    assert {r.method for r in ROWS} == METHODS
    assert {r.method for r in ROWS if r.protocol == "base2new"} == METHODS


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.where)
def test_every_row_has_a_source_and_valid_names(row):
    assert len(row.source) > 15, f"{row.where}: every published number needs the document and table it comes from"
    assert row.method in METHODS, f"{row.where}: method must be a registered trainer name"
    assert row.dataset in set(available_datasets()) | {"average"}, f"{row.where}: dataset must be a config name"
    assert row.protocol in PROTOCOLS and row.backbone == "ViT-B/16"
    if row.protocol == "base2new":
        assert None not in (row.base, row.novel, row.hm) and row.accuracy is None, row.where
        consistent = abs(hm(row.base, row.novel) - row.hm) <= 0.015
        assert consistent or "inconsistent" in row.note, f"{row.where}: HM {row.hm} is not the HM of Base and Novel"
    else:
        assert row.accuracy is not None and row.base is None, row.where
    assert all(0 <= v <= 100 for v in (row.base, row.novel, row.hm, row.accuracy) if v is not None)


def test_published_averages_are_the_means_of_their_rows():
    groups = defaultdict(dict)
    for row in ROWS:
        groups[(row.method, row.protocol, row.shots)][row.dataset] = row
    checked = 0
    for (method, protocol, shots), rows in groups.items():
        parts = [rows[d] for d in DEFAULT_DATASETS[protocol] if d in rows]
        if "average" not in rows or len(parts) != len(DEFAULT_DATASETS[protocol]):
            continue
        for metric in ("base", "novel") if protocol == "base2new" else ("accuracy",):
            mean = float(np.mean([r.value(metric) for r in parts]))
            close = abs(mean - rows["average"].value(metric)) <= 0.015
            assert close or "inconsistent" in rows["average"].note, (rows["average"].where, metric, mean)
            checked += 1
    assert checked >= 20


def test_lookups_and_malformed_files(tmp_path):
    registry = Published.load()
    assert registry.get("CoOp", "caltech101", "base2new").base == 98.00
    assert registry.get("CoOp", "dtd", "fewshot", 2).accuracy == 53.60
    assert registry.get("ZeroshotCLIP", "dtd", "fewshot", 16).accuracy == 44.56  # zero-shot: any shot count
    assert registry.get("SemPT", "dtd", "base2new") is None
    header = (REGISTRY / "base2new.csv").read_text().splitlines()[0]
    (tmp_path / "bad.csv").write_text(header + "\nCoOp,dtd,base2new,ViT-B/16,16,8o.0,1,1,,paper,\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: column 'base' must be a number"):
        load_registry(tmp_path)
    (tmp_path / "bad.csv").write_text(header + "\n" + "CoOp,dtd,base2new,ViT-B/16,16,80,1,1.98,,paper,\n" * 2)
    with pytest.raises(ValueError, match=r"bad.csv:3: duplicate of bad.csv:2"):
        Published.load(tmp_path)
