"""``python -m tools.benchmark report``: every protocol with results under an output root.

Tables come from the run folders themselves (``collect``), so runs made by the scripts
count as much as runs made by the runner; ``--published`` adds the registry's numbers.
"""
from __future__ import annotations

import os.path as osp
from pathlib import Path
from typing import List, Optional, Sequence

from .collect import collect_base2new, collect_fewshot, collect_transfer, dataset_order, split_transfer
from .grid import PROTOCOLS, normalise_protocol
from .plots import base2new_hm_figure, fewshot_figure, save
from .published import Published
from .tables import (Number, Table, base2new_table, fewshot_table, method_labels, render_csv, render_latex,
                     render_markdown, transfer_table)


def build_report(output: str, fmt: str = "md", protocols: Optional[Sequence[str]] = None, published: bool = False,
                 plots_dir: Optional[str] = None) -> str:
    """The tables of ``output`` as Markdown, CSV or LaTeX (and the figures in ``plots_dir``)."""
    if not osp.isdir(output):
        raise ValueError(f"--output {output}: no such folder")
    wanted = [normalise_protocol(p) for p in protocols] if protocols else list(PROTOCOLS)
    registry = Published.load() if published else None
    base2new = collect_base2new(output) if "base2new" in wanted else {}
    xd, dg = split_transfer(collect_transfer(output)) if {"cross_dataset", "domain_generalization"} & set(wanted) \
        else ({}, {})
    fewshot = collect_fewshot(output) if "fewshot" in wanted else {}

    tables: List[Table] = []
    numbers: List[Number] = []
    if base2new:
        table, nums = base2new_table(base2new, registry)
        tables.append(table)
        numbers += nums
    for protocol, results in (("cross_dataset", xd), ("domain_generalization", dg)):
        if results and protocol in wanted:
            table, nums = transfer_table(protocol, results, registry)
            tables.append(table)
            numbers += nums
    if fewshot:
        table, nums = fewshot_table(fewshot, registry)
        tables.append(table)
        numbers += nums
    if not tables:
        raise ValueError(f"no finished runs under {output} for {', '.join(wanted)} (expected the scripts' layout: "
                         "base2new/, evaluation/, fewshot/)")
    if plots_dir:
        written = write_plots(Path(plots_dir), base2new, fewshot)
        if not written:
            print(f"No figure to draw (they need base-to-novel or few-shot results) in {plots_dir}")
    if fmt == "csv":
        return render_csv(numbers)
    if fmt == "tex":
        return render_latex(tables)
    return render_markdown(tables)


def write_plots(folder: Path, base2new, fewshot) -> List[Path]:
    """The few-shot curves and the base-to-novel HM bars, as PNG and SVG."""
    written: List[Path] = []
    if fewshot:
        labels = method_labels(list(fewshot))
        curves = {labels[k]: {d: {s: sum(v.values()) / len(v) for s, v in per_shot.items() if v}
                              for d, per_shot in per_ds.items()} for k, per_ds in fewshot.items()}
        datasets = sorted({d for per_ds in fewshot.values() for d in per_ds}, key=dataset_order)
        written += save(fewshot_figure(curves, datasets), folder, "fewshot_curves")
    if base2new:
        labels = method_labels(list(base2new))
        datasets = sorted({d for per_ds in base2new.values() for d in per_ds}, key=dataset_order)
        bars = {}
        for key, per_ds in base2new.items():
            values = {d: c.hm for d, c in per_ds.items() if c.hm is not None}
            complete = [c for c in per_ds.values() if c.hm is not None]
            if len(datasets) > 1 and complete:
                b = sum(c.base.mean for c in complete) / len(complete)
                n = sum(c.novel.mean for c in complete) / len(complete)
                values["Average"] = 2 * b * n / (b + n) if b + n else 0.0
            bars[labels[key]] = values
        columns = datasets + (["Average"] if len(datasets) > 1 else [])
        written += save(base2new_hm_figure(bars, columns), folder, "base2new_hm")
    return written
