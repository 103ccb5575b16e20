"""Result tables: one per protocol, rendered as Markdown or LaTeX; every number also as a CSV row.

Cells are ``mean ± std (n)`` over seeds (std with ddof=0, as upstream). Average rows
average the per-dataset means over the datasets a method has (their count is in the
label); the base-to-novel HM is the harmonic mean of the seed-averaged Base and Novel,
and the average HM that of the averaged Base and Novel, as the papers compute them.
With published numbers, each base-to-novel row gets the published Base/Novel/HM of the
same method and dataset, and the wide tables get a "(published)" row under each method;
a published average is shown only next to an average over the same datasets.

The cost table has one row per method and protocol: the mean, over the runs that wrote a
``cost.json`` (datasets x seeds), of the training time, the training and evaluation
throughput and the peak memory; a method whose runs wrote none shows "–".
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from tabulate import tabulate

from .collect import (BACKBONE_SEPARATOR, Base2NovelCell, CostRecord, MethodCosts, MethodKey, Stat, Transfer,
                      dataset_order, mean_of)
from .grid import DEFAULT_DATASETS
from .published import Published, PublishedRow

DASH = "–"


@dataclass
class Table:
    title: str
    headers: List[str]
    rows: List[List[str]]
    midrules: List[int] = field(default_factory=list)  # row indices before which a rule goes (LaTeX)


@dataclass
class Number:
    """One number of the report, for the CSV."""

    protocol: str
    method: str
    config: str
    shots: str
    dataset: str
    metric: str
    mean: Optional[float]
    std: Optional[float]
    n: int
    published: Optional[float] = None
    published_source: str = ""


def fmt_stat(stat: Optional[Stat]) -> str:
    if stat is None:
        return DASH
    if stat.std is None or math.isnan(stat.std):
        return f"{stat.mean:.2f}"
    return f"{stat.mean:.2f} ± {stat.std:.2f} ({stat.n})"


def fmt_num(value: Optional[float]) -> str:
    return DASH if value is None else f"{value:.2f}"


def method_labels(keys: Sequence[MethodKey]) -> Dict[MethodKey, str]:
    """The trainer name, with config (and shots) only where a trainer appears more than once."""
    labels = {}
    several_backbones = len({k.backbone for k in keys}) > 1
    for key in keys:
        same = [k for k in keys if k.trainer == key.trainer and k.backbone == key.backbone]
        if len(same) == 1:
            labels[key] = key.trainer
        else:
            config = key.config.partition(BACKBONE_SEPARATOR)[0]
            extra = config + (f", {key.shots} shots" if key.shots else "")
            labels[key] = f"{key.trainer} ({extra})"
        if several_backbones:
            labels[key] += f" [{key.backbone or 'config backbone'}]"
    return labels


def _seed_stat(values: Dict[str, float]) -> Optional[Stat]:
    return Stat.of(list(values.values()))


def published_for(published: Optional[Published], key: MethodKey) -> Optional[Published]:
    """The registry for ``key``'s rows: its numbers are the papers' backbone (ViT-B/16), so a
    run on another backbone is compared with nothing."""
    return None if key.backbone else published


def published_average(published: Optional[Published], protocol: str, trainer: str, averaged: Sequence[str],
                      shots: Optional[int] = None) -> Optional[PublishedRow]:
    """The published average, only when ours averages the very datasets the published one does."""
    if published is None or set(averaged) != set(DEFAULT_DATASETS[protocol]):
        return None
    return published.get(trainer, "average", protocol, shots)


PUBLISHED_LABEL = "(published)"


# --------------------------------------------------------------- base-to-novel
def base2new_table(results: Dict[MethodKey, Dict[str, Base2NovelCell]], published: Optional[Published]
                   ) -> Tuple[Table, List[Number]]:
    keys = sorted(results, key=MethodKey.sort_key)
    labels = method_labels(keys)
    datasets = sorted({d for k in keys for d in results[k]}, key=dataset_order)
    headers = ["Dataset", "Method", "Base", "Novel", "HM", "Seeds"]
    if published:
        headers += ["Base (pub.)", "Novel (pub.)", "HM (pub.)"]
    rows: List[List[str]] = []
    numbers: List[Number] = []
    midrules = []

    def add(key: MethodKey, dataset: str, label: str, base: Optional[Stat], novel: Optional[Stat],
            hm: Optional[float], seeds: str, averaged: Sequence[str] = ()) -> None:
        registry = published_for(published, key)
        if dataset == "average":
            pub = published_average(registry, "base2new", key.trainer, averaged)
        else:
            pub = registry.get(key.trainer, dataset, "base2new") if registry else None
        row = [label, labels[key], fmt_stat(base), fmt_stat(novel), fmt_num(hm), seeds]
        if published:
            row += [fmt_num(pub.base if pub else None), fmt_num(pub.novel if pub else None),
                    fmt_num(pub.hm if pub else None)]
        rows.append(row)
        for metric, stat, pub_value in (("base", base, pub.base if pub else None),
                                        ("novel", novel, pub.novel if pub else None)):
            numbers.append(Number("base2new", key.trainer, key.config, key.shots, dataset, metric,
                                  stat.mean if stat else None, stat.std if stat else None, stat.n if stat else 0,
                                  pub_value, pub.source if pub else ""))
        numbers.append(Number("base2new", key.trainer, key.config, key.shots, dataset, "hm", hm, None,
                              min(base.n, novel.n) if base and novel else 0, pub.hm if pub else None,
                              pub.source if pub else ""))

    for dataset in datasets:
        midrules.append(len(rows))
        for key in keys:
            cell = results[key].get(dataset)
            if cell is None:
                continue
            n_base = cell.base.n if cell.base else 0
            n_novel = cell.novel.n if cell.novel else 0
            seeds = str(n_base) if n_base == n_novel else f"{n_base}/{n_novel}"
            add(key, dataset, dataset, cell.base, cell.novel, cell.hm, seeds)
    if len(datasets) > 1:
        midrules.append(len(rows))
        for key in keys:
            averaged = [d for d, c in results[key].items() if c.hm is not None]
            complete = [results[key][d] for d in averaged]
            if not complete:
                continue
            base = Stat(mean_of([c.base.mean for c in complete]), float("nan"), len(complete))
            novel = Stat(mean_of([c.novel.mean for c in complete]), float("nan"), len(complete))
            hm = 2 * base.mean * novel.mean / (base.mean + novel.mean) if base.mean + novel.mean else 0.0
            add(key, "average", f"Average ({len(complete)} datasets)", base, novel, hm, "", averaged)
    title = "Base-to-novel: Base / Novel accuracy (%, mean ± std (seeds)), HM of the mean Base and Novel"
    return Table(title, headers, rows, midrules), numbers


# ------------------------------------------------------ cross-dataset and DG
def transfer_table(protocol: str, results: Dict[MethodKey, Transfer], published: Optional[Published]
                   ) -> Tuple[Table, List[Number]]:
    keys = sorted(results, key=MethodKey.sort_key)
    labels = method_labels(keys)
    targets = sorted({d for k in keys for d in results[k].targets}, key=dataset_order)
    headers = ["Method", "Source"] + targets + ["Average"]
    rows: List[List[str]] = []
    numbers: List[Number] = []
    for key in keys:
        transfer = results[key]
        source_stat = _seed_stat(transfer.source_values)
        stats = {t: _seed_stat(transfer.targets[t]) for t in targets if t in transfer.targets}
        means = [s.mean for s in stats.values() if s is not None]
        average = Stat(mean_of(means), float("nan"), len(means)) if means else None
        label = labels[key] + ("" if transfer.source == "imagenet" else f" (from {transfer.source})")
        rows.append([label, fmt_stat(source_stat)] + [fmt_stat(stats.get(t)) for t in targets] +
                    [fmt_stat(average) + (f" [{len(means)}]" if average else "")])
        cells = [(transfer.source, source_stat)] + [(t, stats.get(t)) for t in targets] + [("average", average)]
        pub_row = []
        registry = published_for(published, key)
        for dataset, stat in cells:
            if dataset == "average":
                pub = published_average(registry, protocol, key.trainer, [t for t in stats if stats[t]])
            else:
                pub = registry.get(key.trainer, dataset, protocol) if registry else None
            pub_row.append(pub.accuracy if pub else None)
            numbers.append(Number(protocol, key.trainer, key.config, key.shots, dataset, "accuracy",
                                  stat.mean if stat else None,
                                  None if stat is None or math.isnan(stat.std) else stat.std,
                                  stat.n if stat else 0, pub.accuracy if pub else None, pub.source if pub else ""))
        if published:
            rows.append([PUBLISHED_LABEL] + [fmt_num(v) for v in pub_row])
    names = {"cross_dataset": "Cross-dataset transfer", "domain_generalization": "Domain generalization"}
    title = (f"{names[protocol]}: accuracy (%, mean ± std (seeds)) on the source and each target; "
             "Average = mean over the targets [their number]")
    return Table(title, headers, rows), numbers


# --------------------------------------------------------------------- few-shot
def fewshot_table(results: Dict[MethodKey, Dict[str, Dict[int, Dict[str, float]]]],
                  published: Optional[Published]) -> Tuple[Table, List[Number]]:
    keys = sorted(results, key=MethodKey.sort_key)
    labels = method_labels(keys)
    datasets = sorted({d for k in keys for d in results[k]}, key=dataset_order)
    shots = sorted({s for k in keys for d in results[k].values() for s in d})
    headers = ["Dataset", "Method"] + [f"{s} shot{'s' if s > 1 else ''}" for s in shots]
    rows: List[List[str]] = []
    numbers: List[Number] = []
    midrules = []

    def add(key: MethodKey, dataset: str, label: str, stats: Dict[int, Optional[Stat]]) -> None:
        rows.append([label, labels[key]] + [fmt_stat(stats.get(s)) for s in shots])
        pubs = []
        registry = published_for(published, key)
        for s in shots:
            stat = stats.get(s)
            if dataset == "average":
                pub = published_average(registry, "fewshot", key.trainer,
                                        [d for d, per in results[key].items() if per.get(s)], s)
            else:
                pub = registry.get(key.trainer, dataset, "fewshot", s) if registry else None
            pubs.append(pub.accuracy if pub else None)
            numbers.append(Number("fewshot", key.trainer, key.config, str(s), dataset, "accuracy",
                                  stat.mean if stat else None,
                                  None if stat is None or math.isnan(stat.std) else stat.std,
                                  stat.n if stat else 0, pub.accuracy if pub else None, pub.source if pub else ""))
        if published:
            rows.append(["", PUBLISHED_LABEL] + [fmt_num(v) for v in pubs])

    for dataset in datasets:
        midrules.append(len(rows))
        for key in keys:
            if dataset in results[key]:
                add(key, dataset, dataset, {s: _seed_stat(v) for s, v in results[key][dataset].items()})
    if len(datasets) > 1:
        midrules.append(len(rows))
        for key in keys:
            averages = {}
            for s in shots:
                means = [_seed_stat(d[s]).mean for d in results[key].values() if s in d and d[s]]
                averages[s] = Stat(mean_of(means), float("nan"), len(means)) if means else None
            n = len(results[key])
            add(key, "average", f"Average ({n} datasets)", averages)
    title = "Few-shot: accuracy (%, mean ± std (seeds)) per number of training shots per class"
    return Table(title, headers, rows, midrules), numbers


# ------------------------------------------------------------------------- cost
COST_PROTOCOL_NAMES = {"base2new": "Base-to-novel", "transfer": "Cross-dataset / DG", "fewshot": "Few-shot"}


def _phase_value(record: CostRecord, phase: str, field_name: str) -> Optional[float]:
    value = record.get("phases", {}).get(phase, {}).get(field_name)
    return float(value) if isinstance(value, (int, float)) else None


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return mean_of(present) if present else None


@dataclass
class CostSummary:
    """A method's mean cost per run in one protocol (None: no run recorded it)."""

    training_seconds: Optional[float]
    training_images_per_second: Optional[float]
    evaluation_images_per_second: Optional[float]
    peak_rss_mb: Optional[float]
    peak_cuda_mb: Optional[float]
    devices: List[str]
    runs: int
    evaluation_runs: int

    @classmethod
    def of(cls, costs: Optional[MethodCosts]) -> "CostSummary":
        training = costs.training if costs else []
        evaluation = costs.evaluation if costs else []
        # Peak memory: of the trainings, or of the evaluations when the method has no training run.
        memory_runs = training or evaluation
        devices = sorted({f"{(r.get('device') or {}).get('type', '?')} {r.get('precision') or ''}".strip()
                          for r in training + evaluation})
        return cls(
            training_seconds=_mean([_phase_value(r, "training", "seconds") for r in training]),
            training_images_per_second=_mean([_phase_value(r, "training", "images_per_second") for r in training]),
            evaluation_images_per_second=_mean([_phase_value(r, "evaluation", "images_per_second")
                                                for r in training + evaluation]),
            peak_rss_mb=_mean([r.get("peak_rss_mb") for r in memory_runs]),
            peak_cuda_mb=_mean([(r.get("cuda") or {}).get("max_memory_allocated_mb") for r in memory_runs]),
            devices=devices, runs=len(training), evaluation_runs=len(evaluation))


def fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return DASH
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def fmt_memory(mb: Optional[float]) -> str:
    return DASH if mb is None else f"{mb / 1024:.2f}"


def _fmt_rate(value: Optional[float]) -> str:
    return DASH if value is None else f"{value:.1f}"


COST_METRICS = ("training_seconds", "training_images_per_second", "evaluation_images_per_second",
                "peak_rss_mb", "peak_cuda_mb")


def cost_table(costs: Dict[str, Dict[MethodKey, MethodCosts]], methods: Dict[str, Sequence[MethodKey]]
               ) -> Tuple[Table, List[Number]]:
    """One row per protocol and method: those of ``methods`` (the accuracy tables' rows, in
    their order; "–" without cost.json) and any other method with a cost record."""
    headers = ["Protocol", "Method", "Training / run", "Train img/s", "Eval img/s", "Peak RSS (GiB)",
               "Peak GPU (GiB)", "Device, precision", "Runs (train + eval)"]
    rows: List[List[str]] = []
    numbers: List[Number] = []
    midrules = []
    for protocol in COST_PROTOCOL_NAMES:
        per_method = costs.get(protocol, {})
        keys = list(methods.get(protocol, []))
        keys += sorted((k for k in per_method if k not in keys), key=MethodKey.sort_key)
        if not keys:
            continue
        midrules.append(len(rows))
        # Few-shot keys carry the shot count, shown apart: the label is the accuracy table's.
        unshot = {k: MethodKey(k.trainer, k.config) if protocol == "fewshot" else k for k in keys}
        labels = method_labels(list(dict.fromkeys(unshot.values())))
        for key in keys:
            summary = CostSummary.of(per_method.get(key))
            label = labels[unshot[key]] + (f", {key.shots} shots" if protocol == "fewshot" else "")
            rows.append([COST_PROTOCOL_NAMES[protocol], label, fmt_duration(summary.training_seconds),
                         _fmt_rate(summary.training_images_per_second),
                         _fmt_rate(summary.evaluation_images_per_second), fmt_memory(summary.peak_rss_mb),
                         fmt_memory(summary.peak_cuda_mb), ", ".join(summary.devices) or DASH,
                         f"{summary.runs} + {summary.evaluation_runs}"])
            for metric in COST_METRICS:
                numbers.append(Number(protocol, key.trainer, key.config, key.shots, "runs", metric,
                                      getattr(summary, metric), None, summary.runs + summary.evaluation_runs))
    title = ("Cost per run: mean over the runs (datasets x seeds) that wrote a cost.json (training time without "
             "its evaluations; peak resident memory of the training runs, of the evaluations for a method "
             "without training)")
    return Table(title, headers, rows, midrules), numbers


# --------------------------------------------------------------------- render
def render_markdown(tables: Sequence[Table]) -> str:
    parts = []
    for table in tables:
        parts.append(f"### {table.title}\n\n" + tabulate(table.rows, headers=table.headers, tablefmt="github",
                                                         disable_numparse=True) + "\n")
    return "\n".join(parts)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    escaped = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    return escaped.replace("±", r"$\pm$").replace("–", "--")


def render_latex(tables: Sequence[Table]) -> str:
    """Booktabs tables, one ``table`` environment each."""
    parts = []
    for table in tables:
        align = "l" * sum(1 for h in table.headers if h in ("Dataset", "Method", "Protocol")) or "l"
        align += "r" * (len(table.headers) - len(align))
        lines = [r"\begin{table}[t]", r"\centering", r"\small", f"\\caption{{{latex_escape(table.title)}}}",
                 f"\\begin{{tabular}}{{{align}}}", r"\toprule",
                 " & ".join(latex_escape(h) for h in table.headers) + r" \\", r"\midrule"]
        for i, row in enumerate(table.rows):
            if i in table.midrules and i > 0:
                lines.append(r"\midrule")
            lines.append(" & ".join(latex_escape(c) for c in row) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


# n: seeds, or for dataset "average" the number of datasets averaged.
CSV_COLUMNS = ["protocol", "method", "config", "shots", "dataset", "metric", "mean", "std", "n",
               "published", "published_source"]


def render_csv(numbers: Sequence[Number]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)

    def num(x: Optional[float]) -> str:
        return "" if x is None or math.isnan(x) else f"{x:.4f}"

    for n in numbers:
        writer.writerow([n.protocol, n.method, n.config, n.shots, n.dataset, n.metric, num(n.mean), num(n.std),
                         n.n, num(n.published), n.published_source])
    return out.getvalue()
