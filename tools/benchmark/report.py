"""``python -m tools.benchmark report``: every protocol with results under an output root.

Tables come from the run folders themselves (``collect``), so runs made by the scripts
count as much as runs made by the runner; ``--published`` adds the registry's numbers.
A folder made with another config than its command in the runner's latest plan (stale,
``state.py``), or an evaluation of a model since replaced, is left out with a note.
"""
from __future__ import annotations

import os.path as osp
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from tools.results import Judge, Notes, left_out_reason

from .collect import collect_base2new, collect_fewshot, collect_transfer, dataset_order, split_transfer
from .grid import PROTOCOLS, normalise_protocol
from .plots import base2new_hm_figure, fewshot_figure, save
from .published import Published
from .tables import (Number, Table, base2new_table, fewshot_table, method_labels, render_csv, render_latex,
                     render_markdown, transfer_table)


def planned_judge(output: str) -> Judge:
    """Leave out what ``tools.results.left_out_reason`` leaves out, and every run folder of the
    runner's plans (the latest plan of each folder) made with another config than planned."""
    from .plan import load_plans, merged_runs
    from .state import planned_state

    planned = {osp.normpath(r.outdir): r for r in merged_runs(load_plans(output))}

    def judge(run_dir: str) -> Optional[str]:
        run = planned.get(osp.normpath(osp.abspath(run_dir)))
        if run is not None:
            state = planned_state(run)
            if state.stale:
                return ("stale: made with another config than its planned command ("
                        + "; ".join(map(str, state.diffs)) + "); rerun it with run --rerun-stale")
        return left_out_reason(run_dir)

    return judge


def build_report(output: str, fmt: str = "md", protocols: Optional[Sequence[str]] = None, published: bool = False,
                 plots_dir: Optional[str] = None) -> str:
    """The tables of ``output`` as Markdown, CSV or LaTeX (and the figures in ``plots_dir``)."""
    if not osp.isdir(output):
        raise ValueError(f"--output {output}: no such folder")
    wanted = [normalise_protocol(p) for p in protocols] if protocols else list(PROTOCOLS)
    registry = Published.load() if published else None
    judge, notes = planned_judge(output), Notes()
    base2new = collect_base2new(output, judge=judge, notes=notes) if "base2new" in wanted else {}
    xd, dg = split_transfer(collect_transfer(output, judge=judge, notes=notes)) \
        if {"cross_dataset", "domain_generalization"} & set(wanted) else ({}, {})
    fewshot = collect_fewshot(output, judge=judge, notes=notes) if "fewshot" in wanted else {}
    for line in notes.lines():
        print(line, file=sys.stderr)  # beside the tables, which stay plain Markdown, CSV or LaTeX

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
