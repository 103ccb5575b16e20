"""Result tables: one per protocol, rendered as Markdown or LaTeX; every number also as a CSV row.

Cells are ``mean ± std (n)`` over seeds (std with ddof=0, as upstream). Average rows
average the per-dataset means over the datasets a method has (their count is in the
label); the base-to-novel HM is the harmonic mean of the seed-averaged Base and Novel,
and the average HM that of the averaged Base and Novel, as the papers compute them.
With published numbers, each base-to-novel row gets the published Base/Novel/HM of the
same method and dataset, and the wide tables get a "(published)" row under each method;
a published average is shown only next to an average over the same datasets.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from tabulate import tabulate

from .collect import Base2NovelCell, MethodKey, Stat, Transfer, dataset_order, mean_of
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
    for key in keys:
        same = [k for k in keys if k.trainer == key.trainer]
        if len(same) == 1:
            labels[key] = key.trainer
        else:
            extra = key.config + (f", {key.shots} shots" if key.shots else "")
            labels[key] = f"{key.trainer} ({extra})"
    return labels


def _seed_stat(values: Dict[str, float]) -> Optional[Stat]:
    return Stat.of(list(values.values()))


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
        if dataset == "average":
            pub = published_average(published, "base2new", key.trainer, averaged)
        else:
            pub = published.get(key.trainer, dataset, "base2new") if published else None
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
        for dataset, stat in cells:
            if dataset == "average":
                pub = published_average(published, protocol, key.trainer, [t for t in stats if stats[t]])
            else:
                pub = published.get(key.trainer, dataset, protocol) if published else None
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
        for s in shots:
            stat = stats.get(s)
            if dataset == "average":
                pub = published_average(published, "fewshot", key.trainer,
                                        [d for d, per in results[key].items() if per.get(s)], s)
            else:
                pub = published.get(key.trainer, dataset, "fewshot", s) if published else None
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
        align = "l" * sum(1 for h in table.headers if h in ("Dataset", "Method")) or "l"
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
