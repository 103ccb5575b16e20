"""Figures of the report (matplotlib, written as PNG and SVG).

- ``fewshot_curves``: accuracy vs training shots per class, one panel per dataset plus
  the average over datasets, one line per method (the CoOp paper's figure layout);
- ``base2new_hm``: the base-to-novel harmonic mean per dataset (and the average), one
  bar per method.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display on clusters and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# {method label: {dataset: {shots: mean accuracy}}}
FewShotCurves = Dict[str, Dict[str, Dict[int, float]]]
# {method label: {dataset: HM}}
HMBars = Dict[str, Dict[str, float]]


def fewshot_figure(curves: FewShotCurves, datasets: Sequence[str]) -> Figure:
    """One panel per dataset and a last one, "Average", with one line per method."""
    panels = list(datasets) + ["Average"]
    columns = min(4, len(panels))
    rows = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), squeeze=False)
    all_shots = sorted({s for per_ds in curves.values() for v in per_ds.values() for s in v})
    for index, panel in enumerate(panels):
        ax = axes[index // columns][index % columns]
        for method, per_dataset in curves.items():
            if panel == "Average":
                # The average over the datasets that have every shot count of this method.
                complete = [v for v in per_dataset.values() if all(s in v for s in all_shots)]
                if not complete:
                    continue
                points = {s: float(np.mean([v[s] for v in complete])) for s in all_shots}
            else:
                points = per_dataset.get(panel, {})
            if not points:
                continue
            xs = sorted(points)
            ax.plot(xs, [points[x] for x in xs], marker="o", linewidth=1.5, markersize=4, label=method)
        ax.set_title(panel)
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_shots)
        ax.set_xticklabels([str(s) for s in all_shots])
        ax.set_xlabel("shots per class")
        ax.set_ylabel("accuracy (%)")
        ax.grid(True, linestyle=":", linewidth=0.6)
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def base2new_hm_figure(bars: HMBars, datasets: Sequence[str]) -> Figure:
    """Grouped bars: the HM of each method on each dataset."""
    methods = list(bars)
    x = np.arange(len(datasets))
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(datasets) * max(1, len(methods)) / 2 + 3), 3.8))
    for i, method in enumerate(methods):
        values = [bars[method].get(d, np.nan) for d in datasets]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, values, width, label=method)
    ax.set_xticks(x)
    ax.set_xticklabels(datasets, rotation=30, ha="right")
    ax.set_ylabel("HM of Base and Novel (%)")
    ax.set_title("Base-to-novel harmonic mean")
    ax.grid(True, axis="y", linestyle=":", linewidth=0.6)
    ax.legend(frameon=False, ncol=min(5, len(methods)))
    fig.tight_layout()
    return fig


def save(fig: Figure, folder: Path, stem: str) -> List[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        path = folder / f"{stem}.{ext}"
        fig.savefig(path, dpi=150)
        paths.append(path)
    plt.close(fig)
    return paths
