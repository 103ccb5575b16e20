"""The report on a fabricated results tree with known numbers: tables, averages, std, HM, plots."""
from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from tools.grid.collect import Base2NovelCell, MethodKey, Stat
from tools.grid.grid import ELEVEN
from tools.grid.plots import fewshot_figure
from tools.grid.published import Published
from tools.grid.report import build_report
from tools.grid.tables import base2new_table, latex_escape

from .conftest import benchmark

B2N = {  # (trainer, cfg): {dataset: (base per seed, novel per seed)}
    ("CoOp", "vit_b16_ctxv1"): {"caltech101": ([90.0, 92.0, 94.0], [80.0, 80.0, 83.0]),
                                "eurosat": ([70.0, 74.0, 72.0], [50.0, 54.0, 52.0])},
    ("SemPT", "vit_b16_ep100_ctxv1"): {"caltech101": ([95.0, 97.0], [90.0, 92.0]),
                                       "eurosat": ([80.0, 80.0], [70.0, 74.0])},
}


def write_log(path, accuracy, training=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["** Arguments **", f"eval_only: {not training}", "Loading trainer: X"]
    if training:
        lines += ["epoch [1/1] batch [1/1] loss 0.5", "=> result", "* accuracy: 1.00%", "Finish training"]
    lines += ["Evaluate on the *test* set", "=> result", "* total: 100", f"* accuracy: {accuracy:.2f}%"]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def tree(tmp_path):
    out = tmp_path / "output"
    for (trainer, cfg), datasets in B2N.items():
        for dataset, (bases, novels) in datasets.items():
            for seed, (b, n) in enumerate(zip(bases, novels), 1):
                common = f"{dataset}/shots_16/{trainer}/{cfg}/seed{seed}/log.txt"
                write_log(out / "base2new/train_base" / common, b)
                write_log(out / "base2new/test_new" / common, n, training=False)
    # Cross-dataset and DG: CoOp trained on ImageNet (seeds 1, 2), evaluated on two targets.
    for seed, (source, caltech, sketch) in enumerate([(70.0, 93.0, 46.0), (72.0, 95.0, 48.0)], 1):
        write_log(out / f"imagenet/CoOp/vit_b16_ep50_ctxv1_16shots/seed{seed}/log.txt", source)
        write_log(out / f"evaluation/CoOp/vit_b16_ep50_ctxv1_16shots/caltech101/seed{seed}/log.txt", caltech, False)
        write_log(out / f"evaluation/CoOp/vit_b16_ep50_ctxv1_16shots/imagenet_sketch/seed{seed}/log.txt", sketch, False)
    # Few-shot: CoOp learns with more shots, zero-shot CLIP is flat.
    for dataset, offset in (("caltech101", 0.0), ("dtd", -40.0)):
        for shots, base in ((1, 80.0), (2, 84.0), (4, 88.0)):
            for seed, jitter in ((1, -1.0), (2, 1.0)):
                write_log(out / f"fewshot/{dataset}/shots_{shots}/CoOp/vit_b16/seed{seed}/log.txt",
                          base + offset + jitter)
                write_log(out / f"fewshot/{dataset}/shots_{shots}/ZeroshotCLIP/vit_b16/seed{seed}/log.txt",
                          75.0 + offset, training=False)
    return out


def md_row(markdown, first, second):
    """The cells of the Markdown table row starting with ``first | second``."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:2] == [first, second]:
            return cells
    raise AssertionError(f"no row {first} | {second} in:\n{markdown}")


def rows_of(csv_text):
    return list(csv.DictReader(io.StringIO(csv_text)))


def find(rows, **match):
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


def test_base_to_novel_numbers(tree):
    rows = rows_of(build_report(str(tree), fmt="csv", protocols=["base2new"]))
    cal = dict(protocol="base2new", method="CoOp", dataset="caltech101")
    assert float(find(rows, metric="base", **cal)["mean"]) == pytest.approx(92.0)
    assert float(find(rows, metric="base", **cal)["std"]) == pytest.approx(np.std([90, 92, 94]), abs=1e-4)
    assert float(find(rows, metric="novel", **cal)["mean"]) == pytest.approx(81.0)
    assert float(find(rows, metric="hm", **cal)["mean"]) == pytest.approx(2 * 92 * 81 / (92 + 81), abs=1e-4)
    assert find(rows, metric="base", **cal)["n"] == "3"
    # The average: Base and Novel averaged over datasets, HM of those averages (not the mean of HMs).
    avg = dict(protocol="base2new", method="SemPT", dataset="average")
    base, novel = (96.0 + 80.0) / 2, (91.0 + 72.0) / 2
    assert float(find(rows, metric="base", **avg)["mean"]) == pytest.approx(base)
    assert float(find(rows, metric="hm", **avg)["mean"]) == pytest.approx(2 * base * novel / (base + novel), abs=1e-4)
    assert find(rows, metric="hm", **avg)["n"] == "2"  # datasets averaged
    md = build_report(str(tree), fmt="md", protocols=["base2new"])
    assert md_row(md, "caltech101", "CoOp") == [
        "caltech101", "CoOp", "92.00 ± 1.63 (3)", "81.00 ± 1.41 (3)", "86.15", "3"]
    assert md_row(md, "Average (2 datasets)", "SemPT")[2:5] == ["88.00", "81.50", "84.63"]
    assert md.index("CoOp") < md.index("SemPT")  # our method last


def test_cross_dataset_and_domain_generalization_tables(tree):
    rows = rows_of(build_report(str(tree), fmt="csv", protocols=["xd", "dg"]))
    xd = [r for r in rows if r["protocol"] == "cross_dataset"]
    dg = [r for r in rows if r["protocol"] == "domain_generalization"]
    assert {r["dataset"] for r in xd} == {"imagenet", "caltech101", "average"}
    assert {r["dataset"] for r in dg} == {"imagenet", "imagenet_sketch", "average"}
    source = find(xd, dataset="imagenet")
    assert (float(source["mean"]), float(source["std"]), source["n"]) == (pytest.approx(71.0), pytest.approx(1.0), "2")
    assert float(find(xd, dataset="caltech101")["mean"]) == pytest.approx(94.0)
    assert float(find(dg, dataset="average")["mean"]) == pytest.approx(47.0)
    tex = build_report(str(tree), fmt="tex", protocols=["dg"])
    assert r"imagenet\_sketch" in tex and r"71.00 $\pm$ 1.00 (2)" in tex and r"\toprule" in tex


def test_fewshot_table_and_plots(tree, tmp_path):
    plots = tmp_path / "plots"
    rows = rows_of(build_report(str(tree), fmt="csv", protocols=["fewshot"], plots_dir=str(plots)))
    one = find(rows, protocol="fewshot", method="CoOp", dataset="dtd", shots="1")
    assert (float(one["mean"]), float(one["std"]), one["n"]) == (pytest.approx(40.0), pytest.approx(1.0), "2")
    assert float(find(rows, method="CoOp", dataset="average", shots="4")["mean"]) == pytest.approx((88 + 48) / 2)
    assert float(find(rows, method="ZeroshotCLIP", dataset="caltech101", shots="2")["mean"]) == pytest.approx(75.0)
    # base2new results exist too, so both figures are drawn, each as PNG and SVG.
    build_report(str(tree), fmt="md", plots_dir=str(plots))
    for stem in ("fewshot_curves", "base2new_hm_dots", "base2new_scatter_average"):
        assert (plots / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (plots / f"{stem}.svg").read_text()


def test_fewshot_figure_has_one_panel_per_dataset_and_the_average():
    curves = {"CoOp": {"caltech101": {1: 80.0, 2: 84.0}, "dtd": {1: 40.0, 2: 44.0}},
              "ZeroshotCLIP": {"caltech101": {1: 75.0, 2: 75.0}, "dtd": {1: 35.0, 2: 35.0}}}
    fig = fewshot_figure(curves, ["caltech101", "dtd"])
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["caltech101", "dtd", "Average"]
    average = {line.get_label(): list(line.get_ydata()) for line in panels[2].get_lines()}
    assert average == {"CoOp": [60.0, 64.0], "ZeroshotCLIP": [55.0, 55.0]}
    assert list(panels[0].get_lines()[0].get_xdata()) == [1, 2]


def test_published_numbers_sit_next_to_ours(tree):
    md = build_report(str(tree), fmt="md", protocols=["base2new"], published=True)
    assert md_row(md, "caltech101", "CoOp")[-3:] == ["98.00", "89.81", "93.73"]  # the CoCoOp paper's CoOp
    # An average over 2 datasets is not comparable with the published 11-dataset average.
    assert md_row(md, "Average (2 datasets)", "CoOp")[-3:] == ["–", "–", "–"]


def test_the_published_average_appears_only_over_the_same_datasets():
    registry = Published.load()
    cell = Base2NovelCell(Stat(70.0, 1.0, 3), Stat(72.0, 1.0, 3))
    full = {MethodKey("ZeroshotCLIP", "vit_b16", "16"): {d: cell for d in ELEVEN}}
    table, numbers = base2new_table(full, registry)
    average = find([vars(n) for n in numbers], dataset="average", metric="hm")
    assert average["published"] == 71.70 and "TransAgent" in average["published_source"]
    partial = {MethodKey("ZeroshotCLIP", "vit_b16", "16"): {d: cell for d in ELEVEN[:10]}}
    _, numbers = base2new_table(partial, registry)
    assert find([vars(n) for n in numbers], dataset="average", metric="hm")["published"] is None


def test_report_without_results_says_what_it_expected(tmp_path, bench_env):
    result = benchmark("report", "--output", str(tmp_path), env=bench_env)
    assert result.returncode == 2 and "no finished runs under" in result.stderr and "base2new/" in result.stderr
    result = benchmark("report", "--output", str(tmp_path / "nowhere"), env=bench_env)
    assert result.returncode == 2 and "no such folder" in result.stderr


def test_latex_escaping():
    assert latex_escape("fgvc_aircraft 50% & 1 ± 2 –") == r"fgvc\_aircraft 50\% \& 1 $\pm$ 2 --"
    assert not math.isnan(Stat(1.0, 0.0, 1).mean)
