"""Figures of the report (matplotlib, written as PNG and SVG at a paper's column or page width).

- ``base2new_scatter_<panel>``: Base vs Novel accuracy, one point per method (labelled),
  iso-HM curves, published numbers as hollow markers joined to ours; one figure per dataset
  and one for the average;
- ``base2new_hm_dots``: the HM of each method, one row per method in the table's order, the
  seeds' HMs as small dots around the HM of the mean Base and Novel; one panel per dataset;
- ``fewshot_curves``: accuracy vs training shots per class (the CoOp paper's figure), one
  panel per dataset plus the average, published numbers as hollow markers;
- ``accuracy_vs_cost_<protocol>``: accuracy vs training time per run (``cost.json``).

Every method has one colour and marker in every figure (:func:`method_styles`): a fixed
table for the known methods, a deterministic distinct style for any other. Methods with
no novel accuracy (the linear probe) are left out of the novel/HM figures, with a note.
Text is at least 7 pt.
"""
from __future__ import annotations

import hashlib
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # files only: no display on clusters and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

COLUMN_WIDTH = 3.3  # inches: one column of a two-column paper
PAGE_WIDTH = 6.9  # inches: both columns
MIN_FONT_PT = 7.0
PAPER_RC = {
    "font.size": 7.5, "axes.titlesize": 8, "axes.labelsize": 7.5, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "figure.titlesize": 8, "axes.linewidth": 0.6, "lines.linewidth": 1.0,
    "lines.markersize": 4.5, "xtick.major.width": 0.6, "ytick.major.width": 0.6, "svg.fonttype": "none",
}
PUBLISHED_PREFIX = "_published:"  # label of a published-number artist (the underscore keeps it off legends)
SEED_PREFIX = "_seeds:"

# {method label: {dataset: {shots: mean accuracy}}}
FewShotCurves = Dict[str, Dict[str, Dict[int, float]]]
# {method label: (base, novel)}
BaseNovelPoints = Dict[str, Tuple[float, float]]
# {method label: {panel: (HM of the mean Base and Novel, [HM of each seed])}}
HMDots = Dict[str, Dict[str, Tuple[float, List[float]]]]


# ------------------------------------------------------------------------ styles
@dataclass(frozen=True)
class Style:
    color: str
    marker: str


# One colour and marker per method; SemPT (this repository's method) in red with a star.
STYLE_TABLE: Dict[str, Style] = {
    "ZeroshotCLIP": Style("#7f7f7f", "o"),
    "LinearProbe": Style("#bcbd22", "v"),
    "CoOp": Style("#1f77b4", "o"),
    "CoCoOp": Style("#ff7f0e", "s"),
    "ProGrad": Style("#2ca02c", "^"),
    "KgCoOp": Style("#9467bd", "D"),
    "MaPLe": Style("#8c564b", "P"),
    "IVLP": Style("#e377c2", "X"),
    "PromptSRC": Style("#17becf", "h"),
    "TCP": Style("#393b79", "p"),
    "CuPL": Style("#637939", "<"),
    "DCLIP": Style("#7b4173", ">"),
    "VPT": Style("#e7ba52", "d"),
    "DePT": Style("#3182bd", "8"),
    "SemPT": Style("#d62728", "*"),
}
# Far from the table's colours, for methods it does not name.
EXTRA_COLORS = ("#000000", "#b15928", "#01665e", "#c51b7d", "#543005", "#4d4d4d", "#80cdc1", "#fdb863")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "p", "<", ">", "d", "*", "8", "H")


def _trainer_of(label: str) -> str:
    return label.split(" (")[0]


def _digest(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest(), 16)


def method_styles(labels: Iterable[str]) -> Dict[str, Style]:
    """The style of each method label: the table's, else a deterministic one no other label has.

    A variant of a known trainer ("CoOp (cfg, 16 shots)") keeps its trainer's colour with
    another marker. Unknown labels are placed in sorted order, each from its name's hash
    onwards, so the same set of methods gets the same styles in every figure and report.
    """
    labels = sorted(set(labels))
    styles = {label: STYLE_TABLE[label] for label in labels if label in STYLE_TABLE}
    taken = set(STYLE_TABLE.values())
    for label in labels:
        if label in styles:
            continue
        trainer = _trainer_of(label)
        if trainer in STYLE_TABLE:
            candidates = [Style(STYLE_TABLE[trainer].color, m) for m in MARKERS]
        else:
            candidates = [Style(c, m) for c in EXTRA_COLORS for m in MARKERS]
        start = _digest(label) % len(candidates)
        for step in range(len(candidates)):
            style = candidates[(start + step) % len(candidates)]
            if style not in taken:
                break
        else:  # more variants than markers: share, deterministically
            style = candidates[start]
        styles[label] = style
        taken.add(style)
    return styles


def _styles(labels: Iterable[str], styles: Optional[Dict[str, Style]]) -> Dict[str, Style]:
    labels = list(labels)
    if styles is None:
        return method_styles(labels)
    missing = [label for label in labels if label not in styles]
    return {**styles, **method_styles(missing)} if missing else styles


def _marker_size(style: Style, base: float = 5.0) -> float:
    return base * 1.5 if style.marker == "*" else base  # a star looks smaller than a disc of the same size


# ------------------------------------------------------------------------ labels
def _overlap(a, b) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width * height if width > 0 and height > 0 else 0.0


def _around(near: float, far: float) -> List[Tuple[float, float, str, str]]:
    """Label offsets (points) around a marker with their text alignment, nearest first."""
    return [(near, near * 0.6, "left", "bottom"), (near, -near * 0.6, "left", "top"),
            (-near, near * 0.6, "right", "bottom"), (-near, -near * 0.6, "right", "top"),
            (0, near * 1.2, "center", "bottom"), (0, -near * 1.2, "center", "top"),
            (far, 0, "left", "center"), (-far, 0, "right", "center")]


# Near places first; the far ones (joined to the point by a line) when the near ones are taken.
_OFFSETS = _around(5, 9) + [(10, 10, "left", "bottom"), (-10, -10, "right", "top"), (10, -10, "left", "top"),
                            (-10, 10, "right", "bottom")] + _around(12, 18) + _around(20, 28)


def _annotate(ax, name: str, xy: Tuple[float, float], offset: Tuple[float, float, str, str], color: str) -> None:
    dx, dy, ha, va = offset
    far = abs(dx) + abs(dy) > 12  # joined to its point by a thin line
    arrow = dict(arrowstyle="-", color=color, linewidth=0.4, shrinkA=1, shrinkB=3) if far else None
    ax.annotate(name, xy, xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, color=color,
                fontsize=MIN_FONT_PT, arrowprops=arrow)


def label_points(ax, points: Dict[str, Tuple[float, float]], colors: Dict[str, str],
                 avoid: Sequence[Tuple[float, float]] = ()) -> None:
    """Write each point's name beside it, where it hides no point or text already in the axes
    and touches no other name, as far as the places around the points allow.

    Each name has a few candidate places (``_OFFSETS``); a place costs its overlap with the
    points and texts (most), with the other names, and outside the axes, plus a little when it
    is far from its point. Every name starts at its cheapest place alone, then each in turn
    moves to its cheapest place given the others, until none moves.
    """
    fig = ax.figure
    fig.canvas.draw()  # the final layout (an equal aspect moves the axes only when drawn)
    renderer = fig.canvas.get_renderer()
    to_display = ax.transData.transform
    marks = [matplotlib.transforms.Bbox.from_bounds(*(to_display(xy) - 4), 8, 8)
             for xy in list(points.values()) + list(avoid)]
    marks += [text.get_window_extent(renderer) for text in ax.texts]
    frame = ax.get_window_extent(renderer)
    pixels_per_point = fig.dpi / 72.0
    candidates: Dict[str, List[Tuple[object, float]]] = {}  # name -> [(box, cost alone)]
    for name, xy in points.items():
        probe = ax.text(0, 0, name, fontsize=MIN_FONT_PT)
        size = probe.get_window_extent(renderer)
        probe.remove()
        x, y = to_display(xy)
        candidates[name] = []
        for dx, dy, ha, va in _OFFSETS:
            # The box the annotation will have: its anchor at the offset, aligned as ha/va say.
            left = x + dx * pixels_per_point - {"left": 0.0, "center": 0.5, "right": 1.0}[ha] * size.width
            bottom = y + dy * pixels_per_point - {"bottom": 0.0, "center": 0.5, "top": 1.0}[va] * size.height
            box = matplotlib.transforms.Bbox.from_bounds(left, bottom, size.width, size.height).padded(2)
            outside = box.width * box.height - _overlap(box, frame)
            far = abs(dx) + abs(dy) > 12
            alone = 10 * sum(_overlap(box, m) for m in marks) + 4 * outside + (1.0 if far else 0.0)
            candidates[name].append((box, alone))

    def cost(name: str, index: int, chosen: Dict[str, int]) -> float:
        box, alone = candidates[name][index]
        return alone + sum(_overlap(box, candidates[other][i][0]) for other, i in chosen.items() if other != name)

    chosen = {name: min(range(len(_OFFSETS)), key=lambda i: candidates[name][i][1]) for name in points}
    for _ in range(10):
        moved = False
        for name in points:
            best = min(range(len(_OFFSETS)), key=lambda i: cost(name, i, chosen))
            if cost(name, best, chosen) < cost(name, chosen[name], chosen) - 1e-9:
                chosen[name], moved = best, True
        if not moved:
            break
    for name, index in chosen.items():
        _annotate(ax, name, points[name], _OFFSETS[index], colors[name])


def add_note(fig: Figure, text: str) -> None:
    """A grey note under the axes, wrapped to the figure's width, with room made for it."""
    width_in, height_in = fig.get_size_inches()
    lines = textwrap.wrap(text, width=int(width_in * 16))  # about 16 characters per inch at 7 pt
    fig.subplots_adjust(bottom=fig.subplotpars.bottom + (0.04 + 0.12 * len(lines)) / height_in)
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=MIN_FONT_PT, ha="left", va="bottom", color="0.3")


# ---------------------------------------------------------------- base vs novel
def _iso_hm_curves(ax, lo: float, hi: float) -> None:
    """Dotted curves of equal HM across the axes, each named at its right end."""
    step = 5 if hi - lo <= 40 else 10
    xs = np.linspace(lo, hi, 200)
    for level in np.arange(math.ceil(lo / step) * step, hi + step, step):
        with np.errstate(divide="ignore", invalid="ignore"):
            ys = level * xs / (2 * xs - level)
        ys[(2 * xs - level) <= 0] = np.nan
        ax.plot(xs, ys, linestyle=":", color="0.6", linewidth=0.6, zorder=0, label="_iso_hm")
        # Named where it leaves the top edge: the points (padded away from the edges) are rarely there.
        x_top = level * hi / (2 * hi - level) if 2 * hi > level else math.inf
        if lo <= x_top <= hi - 0.06 * (hi - lo):
            ax.annotate(f"HM {level:g}", (x_top, hi), xytext=(2, -2), textcoords="offset points",
                        fontsize=MIN_FONT_PT, color="0.45", ha="left", va="top")


def base_novel_figure(points: BaseNovelPoints, title: str, published: Optional[BaseNovelPoints] = None,
                      left_out: Sequence[str] = (), styles: Optional[Dict[str, Style]] = None) -> Figure:
    """Base (x) vs Novel (y): a filled marker per method, labelled; its published point hollow."""
    published = {k: v for k, v in (published or {}).items() if k in points}
    styles = _styles(points, styles)
    with plt.rc_context(PAPER_RC):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, COLUMN_WIDTH))
        values = [v for xy in list(points.values()) + list(published.values()) for v in xy]
        lo, hi = (min(values), max(values)) if values else (0.0, 100.0)
        pad = max(2.0, 0.08 * (hi - lo))
        lo, hi = max(0.0, lo - pad), min(100.0, hi + pad)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        _iso_hm_curves(ax, lo, hi)
        for method, (base, novel) in points.items():
            style = styles[method]
            if method in published:
                pub_base, pub_novel = published[method]
                ax.plot([base, pub_base], [novel, pub_novel], color=style.color, linewidth=0.5, alpha=0.6,
                        label="_link")
                ax.plot([pub_base], [pub_novel], linestyle="none", marker=style.marker, markerfacecolor="white",
                        markeredgecolor=style.color, markeredgewidth=0.9, markersize=_marker_size(style),
                        label=PUBLISHED_PREFIX + method)
            ax.plot([base], [novel], linestyle="none", marker=style.marker, color=style.color,
                    markersize=_marker_size(style), markeredgecolor="white", markeredgewidth=0.4,
                    label=method, zorder=3)
        ax.set_xlabel("Base accuracy (%)")
        ax.set_ylabel("Novel accuracy (%)")
        ax.set_title(title + (" (hollow: published)" if published else ""))
        ax.grid(True, linestyle=":", linewidth=0.4, color="0.85")
        fig.tight_layout()
        if left_out:
            add_note(fig, f"Not shown (no novel accuracy): {', '.join(left_out)}")
        label_points(ax, points, {m: styles[m].color for m in points}, avoid=list(published.values()))
    return fig


# ------------------------------------------------------------------ HM dot plot
def _grid(n_panels: int, max_columns: int = 4) -> Tuple[int, int, float]:
    columns = min(max_columns, n_panels)
    rows = (n_panels + columns - 1) // columns
    return rows, columns, COLUMN_WIDTH if columns == 1 else PAGE_WIDTH


def hm_dot_figure(dots: HMDots, order: Sequence[str], panels: Sequence[str], left_out: Sequence[str] = (),
                  styles: Optional[Dict[str, Style]] = None) -> Figure:
    """One row per method (``order``, top down): each seed's HM as a small dot, the HM of the
    mean Base and Novel as the method's marker, a line over the seeds' range; one panel each."""
    methods = [m for m in order if m in dots]
    styles = _styles(methods, styles)
    rows, columns, width = _grid(len(panels))
    with plt.rc_context(PAPER_RC):
        height = rows * (0.45 + 0.17 * len(methods)) + 0.3
        fig, axes = plt.subplots(rows, columns, figsize=(width, height), squeeze=False, sharey=True)
        for index, panel in enumerate(panels):
            ax = axes[index // columns][index % columns]
            for y, method in enumerate(methods):
                if panel not in dots[method]:
                    continue
                hm, seeds = dots[method][panel]
                style = styles[method]
                if len(seeds) > 1:
                    ax.plot([min(seeds), max(seeds)], [y, y], color=style.color, linewidth=0.8, alpha=0.7,
                            label="_range")
                    ax.plot(seeds, [y] * len(seeds), linestyle="none", marker="|", color=style.color,
                            markersize=4, alpha=0.8, label=SEED_PREFIX + method)
                ax.plot([hm], [y], linestyle="none", marker=style.marker, color=style.color,
                        markersize=_marker_size(style), markeredgecolor="white", markeredgewidth=0.4,
                        label=method, zorder=3)
            ax.set_title(panel)
            ax.set_yticks(range(len(methods)))
            ax.set_yticklabels(methods)
            ax.set_ylim(len(methods) - 0.5, -0.5)  # the table's first method on top
            ax.margins(x=0.15)
            ax.grid(True, axis="x", linestyle=":", linewidth=0.4, color="0.8")
            if index // columns == rows - 1 or index + columns >= len(panels):
                ax.set_xlabel("HM (%)")
        for index in range(len(panels), rows * columns):
            axes[index // columns][index % columns].axis("off")
        note = "marker: HM of the mean Base and Novel; ticks: each seed"
        if left_out:
            note += f"; not shown (no novel accuracy): {', '.join(left_out)}"
        fig.tight_layout()
        add_note(fig, note)
    return fig


# ---------------------------------------------------------------- few-shot curves
def fewshot_figure(curves: FewShotCurves, datasets: Sequence[str], published: Optional[FewShotCurves] = None,
                   styles: Optional[Dict[str, Style]] = None) -> Figure:
    """One panel per dataset and a last one, "Average", with one line per method; the
    registry's numbers as hollow markers (where it has them)."""
    panels = list(datasets) + ["Average"]
    published = {k: v for k, v in (published or {}).items() if k in curves}
    styles = _styles(curves, styles)
    rows, columns, width = _grid(len(panels))
    all_shots = sorted({s for per_ds in curves.values() for v in per_ds.values() for s in v})
    with plt.rc_context(PAPER_RC):
        height = 1.75 * rows + 0.45
        fig, axes = plt.subplots(rows, columns, figsize=(width, height), squeeze=False)
        for index, panel in enumerate(panels):
            ax = axes[index // columns][index % columns]
            for method, per_dataset in curves.items():
                style = styles[method]
                points = _panel_points(per_dataset, panel, all_shots)
                if points:
                    xs = sorted(points)
                    ax.plot(xs, [points[x] for x in xs], marker=style.marker, color=style.color,
                            markersize=_marker_size(style, 3.5), label=method)
                pub = {s: v for s, v in published.get(method, {}).get(panel, {}).items() if s in all_shots}
                if pub:
                    xs = sorted(pub)
                    ax.plot(xs, [pub[x] for x in xs], linestyle="none", marker=style.marker,
                            markerfacecolor="white", markeredgecolor=style.color, markeredgewidth=0.8,
                            markersize=_marker_size(style, 3.5), label=PUBLISHED_PREFIX + method)
            ax.set_title(panel)
            ax.set_xscale("log", base=2)
            ax.set_xticks(all_shots)
            ax.set_xticklabels([str(s) for s in all_shots])
            ax.minorticks_off()
            ax.margins(x=0.08, y=0.1)
            if index // columns == rows - 1 or index + columns >= len(panels):
                ax.set_xlabel("shots per class")
            if index % columns == 0:
                ax.set_ylabel("accuracy (%)")
            ax.grid(True, linestyle=":", linewidth=0.4, color="0.8")
        for index in range(len(panels), rows * columns):
            axes[index // columns][index % columns].axis("off")
        handles = [Line2D([], [], color=styles[m].color, marker=styles[m].marker,
                          markersize=_marker_size(styles[m], 3.5), label=m) for m in curves]
        if published:
            handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="white",
                                  markeredgecolor="0.3", label="published"))
        legend_rows = math.ceil(len(handles) / 6)
        bottom = (0.12 + 0.14 * legend_rows) / height
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), frameon=False,
                   handlelength=1.8, columnspacing=1.0)
        fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def _panel_points(per_dataset: Dict[str, Dict[int, float]], panel: str, all_shots: Sequence[int]) -> Dict[int, float]:
    if panel != "Average":
        return per_dataset.get(panel, {})
    # The average over the datasets that have every shot count of this method.
    complete = [v for v in per_dataset.values() if all(s in v for s in all_shots)]
    if not complete:
        return {}
    return {s: float(np.mean([v[s] for v in complete])) for s in all_shots}


# ---------------------------------------------------------------- accuracy vs cost
def cost_figure(points: Dict[str, Tuple[float, float]], ylabel: str, title: str, left_out: Sequence[str] = (),
                styles: Optional[Dict[str, Style]] = None) -> Figure:
    """Accuracy (y) vs mean training time per run (x, log scale), one labelled marker per method."""
    styles = _styles(points, styles)
    with plt.rc_context(PAPER_RC):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.6))
        for method, (seconds, accuracy) in points.items():
            style = styles[method]
            ax.plot([seconds], [accuracy], linestyle="none", marker=style.marker, color=style.color,
                    markersize=_marker_size(style), markeredgecolor="white", markeredgewidth=0.4,
                    label=method, zorder=3)
        positive = [s for s, _ in points.values() if s > 0]
        if positive and max(positive) / min(positive) > 20:
            if len(positive) < len(points):  # a method that trains nothing sits at 0
                ax.set_xscale("symlog", linthresh=min(positive))
            else:
                ax.set_xscale("log")
        ax.margins(x=0.2, y=0.15)
        ax.set_xlabel("training time per run (s)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, linestyle=":", linewidth=0.4, color="0.8")
        fig.tight_layout()
        if left_out:
            add_note(fig, f"Not shown (no cost.json or no accuracy): {', '.join(left_out)}")
        label_points(ax, points, {m: styles[m].color for m in points})
    return fig


# ------------------------------------------------------------------------- files
def save(fig: Figure, folder: Path, stem: str) -> List[Path]:
    """``<stem>.png`` (300 dpi) and ``<stem>.svg`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        path = folder / f"{stem}.{ext}"
        fig.savefig(path, dpi=300)
        paths.append(path)
    plt.close(fig)
    return paths

