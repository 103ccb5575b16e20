"""The report's figures and cost table, from fabricated results: every method drawn once per panel,
one distinct style per method shared by every figure, readable text, valid PNG and SVG files."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import matplotlib.image
import matplotlib.text
import pytest
from matplotlib.transforms import Bbox

from tools.grid.plots import (COLUMN_WIDTH, MIN_FONT_PT, PUBLISHED_PREFIX, STYLE_TABLE, Style, base_novel_figure,
                                   cost_figure, fewshot_figure, hm_dot_figure, method_styles)
from tools.grid.report import build_report

from .test_report import md_row, rows_of, write_log

# (base, novel) per method; LinearProbe has no novel accuracy; "MyMethod" is in no style table.
BASE_NOVEL = {"ZeroshotCLIP": (72.0, 68.0), "CoOp": (82.0, 63.0), "CoCoOp": (80.0, 71.0), "KgCoOp": (80.5, 73.5),
              "MaPLe": (82.0, 75.0), "TCP": (84.0, 75.0), "SemPT": (84.5, 77.0), "MyMethod": (83.0, 74.0),
              "LinearProbe": (79.0, None)}
DATASETS = ("caltech101", "eurosat")
SEEDS = (1, 2)
TRAINING_SECONDS = {"CoOp": 300.0, "CoCoOp": 2400.0, "KgCoOp": 320.0, "MaPLe": 700.0, "TCP": 330.0, "SemPT": 800.0,
                    "MyMethod": 500.0, "LinearProbe": 30.0, "ZeroshotCLIP": 0.0}  # ZeroshotCLIP only evaluates
FEWSHOT = ("ZeroshotCLIP", "CoOp", "SemPT", "LinearProbe")


def write_cost(folder, training_seconds, images=320, peak_rss_mb=2048.0):
    folder.mkdir(parents=True, exist_ok=True)
    record = {"schema": 1, "device": {"type": "cpu", "name": "x86_64"}, "precision": "fp32",
              "phases": {"setup": {"seconds": 2.0, "images": 0, "images_per_second": None},
                         "training": {"seconds": training_seconds, "images": images if training_seconds else 0,
                                      "images_per_second": images / training_seconds if training_seconds else None},
                         "evaluation": {"seconds": 4.0, "images": 100, "images_per_second": 25.0}},
              "peak_rss_mb": peak_rss_mb, "cuda": {"max_memory_allocated_mb": None}}
    (folder / "cost.json").write_text(json.dumps(record))


@pytest.fixture()
def tree(tmp_path):
    """Base-to-novel and few-shot results of every method; CoOp's runs predate cost.json."""
    out = tmp_path / "output"
    for d, dataset in enumerate(DATASETS):
        for method, (base, novel) in BASE_NOVEL.items():
            trains = method != "ZeroshotCLIP"
            for seed in SEEDS:
                common = f"{dataset}/shots_16/{method}/cfg/seed{seed}"
                write_log(out / "base2new/train_base" / common / "log.txt", base - 5 * d + seed, training=trains)
                test_new = out / "base2new/test_new" / common
                if novel is None:
                    test_new.mkdir(parents=True)
                    (test_new / "log.txt").write_text("eval_only: True\n=> result\n* accuracy: not available\n")
                else:
                    write_log(test_new / "log.txt", novel - 5 * d - seed, training=False)
                if method != "CoOp":
                    write_cost(out / "base2new/train_base" / common, TRAINING_SECONDS[method] * seed)
                    write_cost(out / "base2new/test_new" / common, 0.0)
        for method in FEWSHOT:
            for shots in (1, 2, 4):
                for seed in SEEDS:
                    folder = out / f"fewshot/{dataset}/shots_{shots}/{method}/cfg/seed{seed}"
                    write_log(folder / "log.txt", 60.0 + shots + seed, training=method != "ZeroshotCLIP")
                    write_cost(folder, TRAINING_SECONDS[method] * shots)
    return out


FIGURES = ["base2new_scatter_caltech101", "base2new_scatter_eurosat", "base2new_scatter_average",
           "base2new_hm_dots", "fewshot_curves", "accuracy_vs_cost_base2new", "accuracy_vs_cost_fewshot"]


def test_every_figure_is_written_as_valid_png_and_svg(tree, tmp_path):
    plots = tmp_path / "plots"
    build_report(str(tree), plots_dir=str(plots), published=True)
    assert sorted(p.name for p in plots.iterdir()) == sorted(f"{s}.{e}" for s in FIGURES for e in ("png", "svg"))
    for stem in FIGURES:
        png = plots / f"{stem}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width = matplotlib.image.imread(png).shape[:2]
        assert width >= 900 and height >= 300  # 300 dpi: at least a column's width
        assert ElementTree.parse(plots / f"{stem}.svg").getroot().tag.endswith("svg")


def measured(ax):
    """The methods of the measured-point artists of ``ax``, one entry per artist."""
    return sorted(line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_"))


def readable(fig):
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]
    assert texts
    small = [(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() < MIN_FONT_PT]
    assert not small, small


def with_novel():
    return {m: bn for m, bn in BASE_NOVEL.items() if bn[1] is not None}


def test_base_novel_scatter_draws_and_labels_each_method_once():
    points = with_novel()
    published = {"CoOp": (82.69, 63.22), "CoCoOp": (80.47, 71.69)}
    fig = base_novel_figure(points, "Average", published, left_out=["LinearProbe"])
    ax = fig.axes[0]
    assert measured(ax) == sorted(points)
    assert sorted(t.get_text() for t in ax.texts if not t.get_text().startswith("HM ")) == sorted(points)
    hollow = {line.get_label(): line for line in ax.get_lines() if line.get_label().startswith(PUBLISHED_PREFIX)}
    assert sorted(hollow) == [PUBLISHED_PREFIX + "CoCoOp", PUBLISHED_PREFIX + "CoOp"]
    assert all(line.get_markerfacecolor() in ("white", "w", (1.0, 1.0, 1.0, 1.0)) for line in hollow.values())
    assert any(t.get_text().startswith("HM ") for t in ax.texts)  # iso-HM curves are named
    assert "Not shown (no novel accuracy): LinearProbe" in [t.get_text() for t in fig.texts]
    assert fig.get_size_inches()[0] == pytest.approx(COLUMN_WIDTH)
    lo, hi = ax.get_xlim()
    assert lo > 50  # the axis shows the range of the numbers, not 0..100
    readable(fig)


def hidden_points(fig, points):
    """(name, point) pairs where a drawn name covers a point's marker (leader lines aside)."""
    ax = fig.axes[0]
    fig.canvas.draw()  # annotations take their places when drawn
    renderer = fig.canvas.get_renderer()
    found = []
    for text in ax.texts:
        if text.get_text().startswith("HM "):
            continue
        box = matplotlib.text.Text.get_window_extent(text, renderer)
        found += [(text.get_text(), m) for m, xy in points.items()
                  if box.overlaps(Bbox.from_bounds(*(ax.transData.transform(xy) - 3), 6, 6))]
    return found


def test_names_hide_no_point_of_a_tight_cluster():
    # Beside each point at one fixed offset, five of these names would cover a neighbour.
    cluster = {"CoOp": (80.0, 80.0), "CoCoOp": (81.2, 80.4), "KgCoOp": (78.8, 79.6), "TCP": (80.3, 81.0),
               "MaPLe": (79.7, 79.0), "SemPT": (90.0, 88.0), "ZeroshotCLIP": (65.0, 70.0)}
    assert hidden_points(base_novel_figure(cluster, "cluster"), cluster) == []
    assert hidden_points(cost_figure(cluster, "accuracy", "cluster"), cluster) == []


def test_hm_dots_follow_the_table_order_with_each_seed():
    order = ["ZeroshotCLIP", "CoOp", "MyMethod", "SemPT"]
    dots = {m: {"eurosat": (70.0 + i, [69.0 + i, 71.0 + i])} for i, m in enumerate(order)}
    fig = hm_dot_figure(dots, order, ["eurosat"], left_out=["LinearProbe"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == order
    assert measured(ax) == sorted(order)
    ys = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert [m for m, _ in sorted(ys.items(), key=lambda kv: kv[1])] == order  # row i holds the table's i-th method
    seeds = {line.get_label(): list(line.get_xdata()) for line in ax.get_lines()
             if line.get_label().startswith("_seeds")}
    assert seeds["_seeds:SemPT"] == [72.0, 74.0]
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # the first method on top
    assert "LinearProbe" in fig.texts[0].get_text()
    readable(fig)


def test_fewshot_curves_show_published_points_hollow():
    curves = {"CoOp": {"caltech101": {1: 80.0, 2: 84.0}}, "ZeroshotCLIP": {"caltech101": {1: 75.0, 2: 75.0}}}
    published = {"CoOp": {"caltech101": {1: 87.53, 16: 95.57}}}  # 16 shots: not on this axis
    fig = fewshot_figure(curves, ["caltech101"], published)
    panel = fig.axes[0]
    assert measured(panel) == ["CoOp", "ZeroshotCLIP"]
    pub = [line for line in panel.get_lines() if line.get_label() == PUBLISHED_PREFIX + "CoOp"]
    assert len(pub) == 1 and list(pub[0].get_xdata()) == [1] and list(pub[0].get_ydata()) == [87.53]
    assert "published" in [t.get_text() for t in fig.legends[0].get_texts()]
    readable(fig)


def test_one_distinct_style_per_method_in_every_figure():
    labels = list(STYLE_TABLE) + ["MyMethod", "Another", "CoOp (other_cfg, 16 shots)"]
    styles = method_styles(labels)
    assert len(set(styles.values())) == len(labels)  # no two methods look alike
    assert method_styles(reversed(labels)) == styles  # independent of the order they come in
    assert styles["CoOp (other_cfg, 16 shots)"].color == STYLE_TABLE["CoOp"].color  # a variant keeps its colour
    assert styles["CoOp (other_cfg, 16 shots)"].marker != STYLE_TABLE["CoOp"].marker
    assert all(s.color not in {t.color for t in STYLE_TABLE.values()} for m, s in styles.items()
               if m in ("MyMethod", "Another"))

    # Drawn: the same method has the same colour and marker in the scatter, the dots and the curves.
    points = with_novel()
    figures = [base_novel_figure(points, "x"),
               hm_dot_figure({m: {"x": (70.0, [])} for m in points}, list(points), ["x"]),
               fewshot_figure({m: {"x": {1: 50.0, 2: 60.0}} for m in points}, ["x"]),
               cost_figure({m: (TRAINING_SECONDS[m] + 1, 70.0) for m in points}, "acc", "t")]
    for fig in figures:
        drawn = {line.get_label(): Style(line.get_color(), line.get_marker()) for ax in fig.axes
                 for line in ax.get_lines() if not line.get_label().startswith("_")}
        assert drawn == {m: method_styles(points)[m] for m in points}
        readable(fig)


def test_cost_table_next_to_the_accuracy_table(tree):
    md = build_report(str(tree), fmt="md")
    assert "### Cost per run" in md
    # Mean over 2 datasets x seeds 1, 2 of 800 s x seed: 1200 s; 320 images over it.
    sempt = md_row(md, "Base-to-novel", "SemPT")
    assert sempt[2:5] == ["20.0 min", f"{(320 / 800 + 320 / 1600) / 2:.1f}", "25.0"]
    assert sempt[5:] == ["2.00", "–", "cpu fp32", "4 + 4"]
    assert md_row(md, "Base-to-novel", "CoOp")[2:] == ["–"] * 6 + ["0 + 0"]  # no cost.json: older runs
    assert md_row(md, "Base-to-novel", "ZeroshotCLIP")[2:4] == ["0.0 s", "–"]
    assert md_row(md, "Few-shot", "SemPT, 4 shots")[2] == "53.3 min"
    rows = rows_of(build_report(str(tree), fmt="csv"))
    seconds = [r for r in rows if r["metric"] == "training_seconds" and r["method"] == "SemPT"
               and r["protocol"] == "base2new"]
    assert len(seconds) == 1 and float(seconds[0]["mean"]) == pytest.approx(1200.0) and seconds[0]["n"] == "8"


def test_a_broken_cost_record_names_its_file(tree):
    broken = tree / "base2new/train_base/eurosat/shots_16/SemPT/cfg/seed1/cost.json"
    broken.write_text('{"phases": ')
    with pytest.raises(ValueError, match=r"seed1/cost.json: unreadable cost record .*delete it"):
        build_report(str(tree))
