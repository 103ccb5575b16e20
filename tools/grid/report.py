"""``python -m tools.benchmark report``: every protocol with results under an output root.

Tables come from the run folders themselves (``collect``), so runs made by the scripts
count as much as runs made by the runner; ``--published`` adds the registry's numbers
(to the tables and, as hollow markers, to the figures). The cost table comes from the
runs' ``cost.json``; runs without one show "–". A folder made with another config than its
command in the runner's latest plan (stale, ``state.py``), or an evaluation of a model since
replaced, is left out with a note.
"""
from __future__ import annotations

import os.path as osp
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tools.results import Judge, Notes, left_out_reason

from .collect import (Base2NovelCell, MethodCosts, MethodKey, collect_base2new, collect_costs, collect_fewshot,
                      collect_transfer, dataset_order, mean_of, split_transfer)
from .grid import PROTOCOLS, normalise_protocol
from .plots import (BaseNovelPoints, HMDots, base_novel_figure, cost_figure, fewshot_figure, hm_dot_figure,
                    method_styles, save)
from .published import Published
from .tables import (CostSummary, Number, Table, base2new_table, cost_table, fewshot_table, method_labels,
                     published_average, published_for, render_csv, render_latex, render_markdown, transfer_table)


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
    xd = xd if "cross_dataset" in wanted else {}
    dg = dg if "domain_generalization" in wanted else {}
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
        if results:
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
    methods = cost_rows(base2new, {**xd, **dg}, fewshot)
    costs = {p: c for p, c in collect_costs(output).items() if p in methods}
    table, nums = cost_table(costs, methods)
    tables.append(table)
    numbers += nums
    if plots_dir:
        written = write_plots(Path(plots_dir), base2new, fewshot, costs, registry)
        if not written:
            print(f"No figure to draw (they need base-to-novel or few-shot results) in {plots_dir}")
    if fmt == "csv":
        return render_csv(numbers)
    if fmt == "tex":
        return render_latex(tables)
    return render_markdown(tables)


def cost_rows(base2new, transfer, fewshot) -> Dict[str, List[MethodKey]]:
    """The cost table's methods per protocol, in the accuracy tables' order (few-shot: per shot count)."""
    rows: Dict[str, List[MethodKey]] = {}
    if base2new:
        rows["base2new"] = sorted(base2new, key=MethodKey.sort_key)
    if transfer:
        rows["transfer"] = sorted(transfer, key=MethodKey.sort_key)
    if fewshot:
        rows["fewshot"] = [MethodKey(k.trainer, k.config, str(s)) for k in sorted(fewshot, key=MethodKey.sort_key)
                           for s in sorted({s for per_shot in fewshot[k].values() for s in per_shot})]
    return rows


# ------------------------------------------------------------------------ figures
def write_plots(folder: Path, base2new, fewshot, costs: Dict[str, Dict[MethodKey, MethodCosts]],
                published: Optional[Published] = None) -> List[Path]:
    """Every figure the results allow, as PNG and SVG; each method has one style in all of them."""
    b2n_labels = method_labels(list(base2new))
    fs_labels = method_labels(list(fewshot))
    styles = method_styles(list(b2n_labels.values()) + list(fs_labels.values()))
    written: List[Path] = []
    if base2new:
        written += _base2new_figures(folder, base2new, b2n_labels, costs.get("base2new", {}), published, styles)
    if fewshot:
        written += _fewshot_figures(folder, fewshot, fs_labels, costs.get("fewshot", {}), published, styles)
    return written


def _hm(base: float, novel: float) -> float:
    return 2 * base * novel / (base + novel) if base + novel else 0.0


def _average_cell(cells: Sequence[Base2NovelCell]) -> Tuple[float, float, Dict[str, Tuple[float, float]]]:
    """Mean Base and Novel over datasets, and per seed (the seeds every dataset has)."""
    base = mean_of([c.base.mean for c in cells])
    novel = mean_of([c.novel.mean for c in cells])
    seeds = set.intersection(*[set(c.base_seeds) & set(c.novel_seeds) for c in cells])
    per_seed = {s: (mean_of([c.base_seeds[s] for c in cells]), mean_of([c.novel_seeds[s] for c in cells]))
                for s in sorted(seeds)}
    return base, novel, per_seed


def _base2new_figures(folder: Path, base2new, labels, costs, published, styles) -> List[Path]:
    keys = sorted(base2new, key=MethodKey.sort_key)
    datasets = sorted({d for per_ds in base2new.values() for d in per_ds}, key=dataset_order)
    panels = datasets + (["Average"] if len(datasets) > 1 else [])
    points: Dict[str, BaseNovelPoints] = {p: {} for p in panels}
    pub_points: Dict[str, BaseNovelPoints] = {p: {} for p in panels}
    dots: HMDots = {}
    left_out = [labels[k] for k in keys if not any(c.hm is not None for c in base2new[k].values())]
    for key in keys:
        label, complete = labels[key], {d: c for d, c in base2new[key].items() if c.hm is not None}
        per_panel = {d: (c.base.mean, c.novel.mean, {s: (c.base_seeds[s], c.novel_seeds[s])
                                                    for s in sorted(set(c.base_seeds) & set(c.novel_seeds))})
                     for d, c in complete.items()}
        if "Average" in panels and complete:
            per_panel["Average"] = _average_cell(list(complete.values()))
        for panel, (base, novel, per_seed) in per_panel.items():
            points[panel][label] = (base, novel)
            dots.setdefault(label, {})[panel] = (_hm(base, novel), [_hm(b, n) for b, n in per_seed.values()])
            registry = published_for(published, key)
            if registry is None:
                continue
            if panel == "Average":
                row = published_average(registry, "base2new", key.trainer, list(complete))
            else:
                row = registry.get(key.trainer, panel, "base2new")
            if row is not None and row.base is not None and row.novel is not None:
                pub_points[panel][label] = (row.base, row.novel)
    written: List[Path] = []
    for panel in panels:
        if points[panel]:
            title = panel if panel != "Average" else f"Average over {len(datasets)} datasets"
            fig = base_novel_figure(points[panel], title, pub_points[panel], left_out, styles)
            written += save(fig, folder, f"base2new_scatter_{panel.lower()}")
    if dots:
        order = [labels[k] for k in keys]
        written += save(hm_dot_figure(dots, order, panels, left_out, styles), folder, "base2new_hm_dots")
    timed = {}
    for key in keys:
        seconds = CostSummary.of(costs.get(key)).training_seconds
        hm = dots.get(labels[key], {}).get("Average" if "Average" in panels else datasets[0])
        if seconds is not None and hm is not None:
            timed[labels[key]] = (seconds, hm[0])
    if timed:
        ylabel = "HM (%)" if len(datasets) == 1 else f"average HM, {len(datasets)} datasets (%)"
        missing = [labels[k] for k in keys if labels[k] not in timed]
        written += save(cost_figure(timed, ylabel, "Base-to-novel: accuracy vs training cost", missing, styles),
                        folder, "accuracy_vs_cost_base2new")
    return written


def _fewshot_figures(folder: Path, fewshot, labels, costs, published, styles) -> List[Path]:
    keys = sorted(fewshot, key=MethodKey.sort_key)
    datasets = sorted({d for per_ds in fewshot.values() for d in per_ds}, key=dataset_order)
    curves = {labels[k]: {d: {s: mean_of(list(v.values())) for s, v in per_shot.items() if v}
                          for d, per_shot in fewshot[k].items()} for k in keys}
    pub_curves = {}
    if published is not None:
        for key in keys:
            shots = sorted({s for per_shot in fewshot[key].values() for s in per_shot})
            per_panel = {}
            for panel in datasets + ["Average"]:
                values = {}
                registry = published_for(published, key)
                for s in shots:
                    if registry is None:
                        break
                    if panel == "Average":
                        row = published_average(registry, "fewshot", key.trainer, datasets, s)
                    else:
                        row = registry.get(key.trainer, panel, "fewshot", s)
                    if row is not None and row.accuracy is not None:
                        values[s] = row.accuracy
                if values:
                    per_panel[panel] = values
            if per_panel:
                pub_curves[labels[key]] = per_panel
    written = save(fewshot_figure(curves, datasets, pub_curves, styles), folder, "fewshot_curves")
    # Accuracy vs cost at the largest shot count: the mean over the datasets that have it.
    top = max(s for per_ds in curves.values() for per_shot in per_ds.values() for s in per_shot)
    timed = {}
    for key in keys:
        seconds = CostSummary.of(costs.get(MethodKey(key.trainer, key.config, str(top)))).training_seconds
        values = [per_shot[top] for per_shot in curves[labels[key]].values() if top in per_shot]
        if seconds is not None and values:
            timed[labels[key]] = (seconds, mean_of(values))
    if timed:
        missing = [labels[k] for k in keys if labels[k] not in timed]
        written += save(cost_figure(timed, f"accuracy at {top} shots (%)", "Few-shot: accuracy vs training cost",
                                    missing, styles), folder, "accuracy_vs_cost_fewshot")
    return written
