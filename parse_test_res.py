"""Summarise test results from ``log.txt`` files (upstream CoOp's parser, spec 6.3, extended).

Upstream modes::

    python parse_test_res.py output/.../CoOp/rn50_16shots/nctx16_cscFalse_ctpend   # seed* dirs
    python parse_test_res.py output/evaluation/... --test-log                        # eval-only logs
    python parse_test_res.py output/... --multi-exp                                  # one level deeper

Base-to-new mode: a table of Base, Novel and HM per dataset (and per trainer/config)::

    python parse_test_res.py output/base2new --base2new [--csv res.csv] [--markdown res.md]

It reads ``train_base/<DATASET>/<shots>/<TRAINER>/<CFG>/seed<S>/log.txt`` (the final
test after training = base accuracy) and ``test_new/<same>/log.txt`` (the eval-only
run = novel accuracy). Base and Novel are averaged over seeds; HM is the harmonic
mean of those averages; the last row averages over datasets.
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
def _dataset_sort_key(name: str) -> Tuple[int, str]:
    return (DATASET_ORDER.index(name) if name in DATASET_ORDER else len(DATASET_ORDER), name)


def harmonic_mean(base: float, novel: float) -> float:
    return 2 * base * novel / (base + novel) if base + novel > 0 else 0.0


def _is_eval_only(fpath: str) -> bool:
    """Whether the log is of an ``--eval-only`` run (its argument dump says so)."""
    with open(fpath, errors="replace") as f:
        return any(line.strip() == "eval_only: True" for line in f)


def collect_base2new(root: str, keyword: str = "accuracy") -> Dict[Tuple[str, str, str], Dict[str, Dict[str, Dict[str, float]]]]:
    """``{(trainer, cfg, shots): {dataset: {"base"|"new": {seed: value}}}}``."""
    results: Dict = defaultdict(lambda: defaultdict(lambda: {"base": {}, "new": {}}))
    for phase, signals in (("base", END_SIGNALS), ("new", TEST_SIGNALS)):
        top = osp.join(root, "train_base" if phase == "base" else "test_new")
        for log in sorted(glob.glob(osp.join(top, "*", "*", "*", "*", "seed*", "log.txt"))):
            dataset, shots, trainer, cfg, seed = osp.relpath(osp.dirname(log), top).split(os.sep)
            if phase == "base" and _is_eval_only(log):
                signals = TEST_SIGNALS  # zero-shot "training" runs only evaluate: no end-of-training line
            value = parse_log(log, keyword, signals)
            if value is not None:
                results[(trainer, cfg, shots)][dataset][phase][seed] = value
    return results


def base2new_rows(per_dataset: Dict[str, Dict[str, Dict[str, float]]]) -> List[List]:
    """Rows ``[dataset, base, novel, hm, seeds]`` plus an ``Average`` row."""
    rows: List[List] = []
    for dataset in sorted(per_dataset, key=_dataset_sort_key):
        base_seeds, new_seeds = per_dataset[dataset]["base"], per_dataset[dataset]["new"]
        base = float(np.mean(list(base_seeds.values()))) if base_seeds else None
        new = float(np.mean(list(new_seeds.values()))) if new_seeds else None
        hm = harmonic_mean(base, new) if base is not None and new is not None else None
        rows.append([dataset, base, new, hm, f"{len(base_seeds)}/{len(new_seeds)}"])
    complete = [r for r in rows if r[3] is not None]
    if complete:
        base = float(np.mean([r[1] for r in complete]))
        new = float(np.mean([r[2] for r in complete]))
        rows.append([f"Average ({len(complete)})", base, new, harmonic_mean(base, new), ""])
    return rows


HEADERS = ["Dataset", "Base", "Novel", "HM", "Seeds (base/new)"]


def report_base2new(root: str, keyword: str, csv_path: str = "", md_path: str = "") -> None:
    results = collect_base2new(root, keyword)
    if not results:
        raise ValueError(
            f"No base-to-new logs found under {root} (expected "
            "train_base/<DATASET>/<shots>/<TRAINER>/<CFG>/seed<S>/log.txt)"
        )
    csv_rows: List[List] = []
    md_parts: List[str] = []
    for trainer, cfg, shots in sorted(results):
        rows = base2new_rows(results[(trainer, cfg, shots)])
        title = f"{trainer} / {cfg} / {shots}"
        print(f"=== {title} ({keyword}) ===")
        print(tabulate(rows, headers=HEADERS, floatfmt=".2f", missingval="-"))
        md_parts.append(f"### {title}\n\n" + tabulate(rows, headers=HEADERS, floatfmt=".2f", missingval="-", tablefmt="github"))
        for r in rows:
            csv_rows.append([trainer, cfg, shots] + [f"{v:.2f}" if isinstance(v, float) else ("" if v is None else v) for v in r])
    if csv_path:
        with open(csv_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["trainer", "config", "shots"] + HEADERS)
            writer.writerows(csv_rows)
        print(f"CSV written to {csv_path}")
    if md_path:
        with open(md_path, "w") as f:
            f.write("\n\n".join(md_parts) + "\n")
        print(f"Markdown written to {md_path}")


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
