"""Summarise test results from ``log.txt`` files (upstream CoOp's ``parse_test_res.py``, extended).

Upstream modes::

    python parse_test_res.py output/.../CoOp/rn50_16shots/nctx16_cscFalse_ctpend   # seed* dirs
    python parse_test_res.py output/evaluation/... --test-log                        # eval-only logs
    python parse_test_res.py output/... --multi-exp                                  # one level deeper

Base-to-new mode: one side-by-side table of every method found (Base, Novel, HM)::

    python parse_test_res.py output/base2new --base2new [--csv res.csv] [--markdown res.md]

It reads ``train_base/<DATASET>/<shots>/<TRAINER>/<CFG>/seed<S>/log.txt`` (the final
test after training = base accuracy) and ``test_new/<same>/log.txt`` (the eval-only
run = novel accuracy). Base and Novel are mean +- std over seeds; HM is the harmonic
mean of the means; with several datasets each method also gets an average row.
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import os.path as osp
import re
import sys
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from tabulate import tabulate

from dassl.utils import check_isfile, listdir_nohidden

END_SIGNALS = ("Finish training", "Finished training")  # engine / older Dassl (KgCoOp)
TEST_SIGNALS = ("=> result",)

# Paper order of the base-to-new benchmark; other names follow alphabetically.
DATASET_ORDER = [
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
    "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
]


def metric_regex(keyword: str) -> "re.Pattern[str]":
    return re.compile(rf"\* {re.escape(keyword)}: ([\.\deE+-]+)%")


def parse_log(fpath: str, keyword: str = "accuracy", end_signals: Sequence[str] = END_SIGNALS) -> Optional[float]:
    """The last ``* keyword: X%`` value after an end-signal line, or None."""
    regex = metric_regex(keyword)
    seen_end, value = False, None
    with open(fpath, errors="replace") as f:
        for line in f:
            line = line.strip()
            if line in end_signals:
                seen_end = True
            if seen_end:
                m = regex.search(line)
                if m:
                    value = float(m.group(1))
    return value


def summarise(values: Sequence[float], ci95: bool = False) -> Tuple[float, float]:
    """Mean and std (ddof=0), or the 95% confidence half-width."""
    arr = np.asarray(values, dtype=float)
    spread = float(np.std(arr))
    if ci95:
        spread = 1.96 * spread / np.sqrt(len(arr))
    return float(np.mean(arr)), spread


def parse_directory(
    directory: str, keyword: str, end_signals: Sequence[str], ci95: bool = False
) -> Dict[str, float]:
    """Upstream behaviour: read ``<directory>/<sub>/log.txt`` for each sub-directory."""
    values: List[float] = []
    for subdir in listdir_nohidden(directory, sort=True):
        fpath = osp.join(directory, subdir, "log.txt")
        if not check_isfile(fpath):
            raise FileNotFoundError(f'Missing log: "{fpath}"')
        value = parse_log(fpath, keyword, end_signals)
        if value is not None:
            values.append(value)
            print(f"file: {fpath}. {keyword}: {value:.2f}%. ")
    if not values:
        raise ValueError(
            f"Nothing found in {directory} (no '* {keyword}: X%' after {list(end_signals)}; "
            "for eval-only logs pass --test-log)"
        )
    mean, spread = summarise(values, ci95)
    print("===")
    print(f"Summary of directory: {directory}")
    print(f"* {keyword}: {mean:.2f}% +- {spread:.2f}%")
    print("===")
    return {keyword: mean}


# ----------------------------------------------------------------- base-to-new
# Row order of the methods in a table: the usual order of comparison tables, the method
# of this repository last; methods not listed come before it, alphabetically.
METHOD_ORDER = [
    "ZeroshotCLIP", "ZeroshotCLIP2", "DCLIP", "CuPL", "LinearProbe", "CoOp", "CoCoOp", "ProGrad",
    "KgCoOp", "MaPLe", "IVLP", "PromptSRC", "TCP",
]
LAST_METHODS = ["SemPT"]


def _dataset_sort_key(name: str) -> Tuple[int, str]:
    return (DATASET_ORDER.index(name) if name in DATASET_ORDER else len(DATASET_ORDER), name)


def method_sort_key(trainer: str) -> Tuple[int, int, str]:
    if trainer in LAST_METHODS:
        return (2, LAST_METHODS.index(trainer), trainer)
    if trainer in METHOD_ORDER:
        return (0, METHOD_ORDER.index(trainer), trainer)
    return (1, 0, trainer)


def harmonic_mean(base: float, novel: float) -> float:
    return 2 * base * novel / (base + novel) if base + novel > 0 else 0.0


def is_eval_only(fpath: str) -> bool:
    """Whether the log is of an ``--eval-only`` run (its argument dump says so)."""
    with open(fpath, errors="replace") as f:
        return any(line.strip() == "eval_only: True" for line in f)


Base2NewResults = Dict[Tuple[str, str, str], Dict[str, Dict[str, Dict[str, float]]]]


def collect_base2new(root: str, keyword: str = "accuracy") -> Base2NewResults:
    """``{(trainer, cfg, shots): {dataset: {"base"|"new": {seed: value}}}}``."""
    results: Dict = defaultdict(lambda: defaultdict(lambda: {"base": {}, "new": {}}))
    for phase, signals in (("base", END_SIGNALS), ("new", TEST_SIGNALS)):
        top = osp.join(root, "train_base" if phase == "base" else "test_new")
        for log in sorted(glob.glob(osp.join(top, "*", "*", "*", "*", "seed*", "log.txt"))):
            dataset, shots, trainer, cfg, seed = osp.relpath(osp.dirname(log), top).split(os.sep)
            log_signals = signals
            if phase == "base" and is_eval_only(log):
                log_signals = TEST_SIGNALS  # zero-shot "training" runs only evaluate: no end-of-training line
            value = parse_log(log, keyword, log_signals)
            if value is not None:
                results[(trainer, cfg, shots)][dataset][phase][seed] = value
    return results


@dataclass
class Stat:
    """Mean and standard deviation (ddof=0, as upstream) over ``n`` seeds."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Optional["Stat"]:
        if not values:
            return None
        mean, std = summarise(values)
        return cls(mean, std, len(values))


def hm_of_means(base: Optional[Stat], novel: Optional[Stat]) -> Optional[float]:
    """Harmonic mean of the seed-averaged Base and Novel, as the papers compute it (not the
    mean of per-seed HMs); None when either half is missing."""
    if base is None or novel is None:
        return None
    return harmonic_mean(base.mean, novel.mean)


@dataclass
class Base2NewRow:
    """One line of the base-to-novel table: a method on a dataset, or its average over datasets."""

    method: str
    trainer: str
    config: str
    shots: str
    dataset: str
    base: Optional[Stat]
    novel: Optional[Stat]

    @property
    def hm(self) -> Optional[float]:
        return hm_of_means(self.base, self.novel)

    @property
    def seeds(self) -> str:
        n_base = self.base.n if self.base else 0
        n_novel = self.novel.n if self.novel else 0
        return str(n_base) if n_base == n_novel else f"{n_base}/{n_novel}"


def _method_labels(keys: Iterable[Tuple[str, str, str]]) -> Dict[Tuple[str, str, str], str]:
    """The trainer name, with the config and shots only where one trainer has several."""
    keys = list(keys)
    labels = {}
    for trainer, cfg, shots in keys:
        variants = [k for k in keys if k[0] == trainer]
        if len(variants) == 1:
            labels[(trainer, cfg, shots)] = trainer
        else:
            labels[(trainer, cfg, shots)] = f"{trainer} ({cfg}, {shots})"
    return labels


def base2new_rows(results: Base2NewResults) -> List[Base2NewRow]:
    """Every method on every dataset (datasets in paper order, methods in table order), then,
    when there are several datasets, each method's average over the datasets it has both
    Base and Novel for (Base and Novel averaged over datasets, HM of those averages)."""
    keys = sorted(results, key=lambda k: (method_sort_key(k[0]), k[1], k[2]))
    labels = _method_labels(keys)
    datasets = sorted({d for k in keys for d in results[k]}, key=_dataset_sort_key)
    rows: List[Base2NewRow] = []
    for dataset in datasets:
        for key in keys:
            phases = results[key].get(dataset)
            if phases is None:
                continue
            rows.append(Base2NewRow(labels[key], *key, dataset, Stat.of(list(phases["base"].values())),
                                    Stat.of(list(phases["new"].values()))))
    if len(datasets) > 1:
        for key in keys:
            complete = [r for r in rows if (r.trainer, r.config, r.shots) == key and r.hm is not None]
            if not complete:
                continue
            base = Stat(float(np.mean([r.base.mean for r in complete])), float("nan"), len(complete))
            novel = Stat(float(np.mean([r.novel.mean for r in complete])), float("nan"), len(complete))
            rows.append(Base2NewRow(labels[key], *key, f"Average ({len(complete)})", base, novel))
    return rows


def _format_stat(stat: Optional[Stat]) -> str:
    if stat is None:
        return "-"
    if np.isnan(stat.std):
        return f"{stat.mean:.2f}"
    return f"{stat.mean:.2f} ± {stat.std:.2f}"


def base2new_table(rows: Sequence[Base2NewRow]) -> Tuple[List[str], List[List[str]]]:
    """Headers and formatted cells of the side-by-side table (one Dataset column when several)."""
    several = len({r.dataset for r in rows}) > 1
    headers = (["Dataset"] if several else []) + ["Method", "Base", "Novel", "HM", "Seeds"]
    cells = []
    for r in rows:
        hm = "-" if r.hm is None else f"{r.hm:.2f}"
        average = r.dataset.startswith("Average")
        line = [r.method, _format_stat(r.base), _format_stat(r.novel), hm, "" if average else r.seeds]
        cells.append(([r.dataset] if several else []) + line)
    return headers, cells


CSV_HEADERS = ["method", "trainer", "config", "shots", "dataset", "base", "base_std", "novel", "novel_std",
               "hm", "base_seeds", "novel_seeds"]


def _csv_row(r: Base2NewRow) -> List:
    def num(x: Optional[float]) -> str:
        return "" if x is None or np.isnan(x) else f"{x:.2f}"

    return [r.method, r.trainer, r.config, r.shots, r.dataset,
            num(r.base.mean if r.base else None), num(r.base.std if r.base else None),
            num(r.novel.mean if r.novel else None), num(r.novel.std if r.novel else None), num(r.hm),
            r.base.n if r.base else 0, r.novel.n if r.novel else 0]


def report_base2new(root: str, keyword: str, csv_path: str = "", md_path: str = "") -> List[Base2NewRow]:
    """Print the one side-by-side table of every method under ``root``; optionally save it."""
    results = collect_base2new(root, keyword)
    if not results:
        raise ValueError(
            f"No base-to-new logs found under {root} (expected "
            "train_base/<DATASET>/<shots>/<TRAINER>/<CFG>/seed<S>/log.txt)"
        )
    rows = base2new_rows(results)
    headers, cells = base2new_table(rows)
    title = f"Base-to-novel {keyword} (mean ± std over seeds; HM of the mean Base and Novel)"
    print(f"=== {title} ===")
    print(tabulate(cells, headers=headers, disable_numparse=True))
    if csv_path:
        with open(csv_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_HEADERS)
            writer.writerows(_csv_row(r) for r in rows)
        print(f"CSV written to {csv_path}")
    if md_path:
        with open(md_path, "w") as f:
            f.write(f"{title}\n\n" + tabulate(cells, headers=headers, tablefmt="github", disable_numparse=True) + "\n")
        print(f"Markdown written to {md_path}")
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Summarise test results from log.txt files")
    parser.add_argument("directory", type=str, help="path to directory")
    parser.add_argument("--ci95", action="store_true", help="report 95%% confidence interval instead of std")
    parser.add_argument("--test-log", action="store_true", help="parse eval-only logs (end signal '=> result')")
    parser.add_argument("--multi-exp", action="store_true", help="parse each sub-directory as one experiment")
    parser.add_argument("--keyword", default="accuracy", type=str, help="which metric to read")
    parser.add_argument("--base2new", action="store_true", help="base-to-new table from an output root")
    parser.add_argument("--csv", default="", type=str, help="(--base2new) also write the table as CSV")
    parser.add_argument("--markdown", default="", type=str, help="(--base2new) also write the table as Markdown")
    return parser


def main(argv: Optional[Iterable[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    if not osp.isdir(args.directory):
        raise SystemExit(f'Not a directory: "{args.directory}"')
    if args.base2new:
        report_base2new(args.directory, args.keyword, args.csv, args.markdown)
        return
    end_signals = TEST_SIGNALS if args.test_log else END_SIGNALS
    if args.multi_exp:
        final: Dict[str, List[float]] = OrderedDict()
        for exp in listdir_nohidden(args.directory, sort=True):
            directory = osp.join(args.directory, exp)
            for k, v in parse_directory(directory, args.keyword, end_signals, args.ci95).items():
                final.setdefault(k, []).append(v)
        print("Average performance")
        for k, values in final.items():
            print(f"* {k}: {np.mean(values):.2f}%")
    else:
        parse_directory(args.directory, args.keyword, end_signals, args.ci95)


if __name__ == "__main__":
    main(sys.argv[1:])
