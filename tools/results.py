"""Test results from run folders: the parsing library of ``parse_test_res.py`` (upstream
CoOp's command, kept as a thin command line) and of the benchmark runner's reports.

Upstream modes of the command::

    python parse_test_res.py output/.../CoOp/rn50_16shots/nctx16_cscFalse_ctpend   # seed* dirs
    python parse_test_res.py output/evaluation/... --test-log                        # eval-only logs
    python parse_test_res.py output/... --multi-exp                                  # one level deeper

Base-to-new mode: one side-by-side table of every method found (Base, Novel, HM)::

    python parse_test_res.py output/base2new --base2new [--csv res.csv] [--markdown res.md]

It reads ``train_base/<DATASET>/<shots>/<TRAINER>/<CFG>/seed<S>/log.txt`` (the final
test after training = base accuracy) and ``test_new/<same>/log.txt`` (the eval-only
run = novel accuracy). Base and Novel are mean +- std over seeds; HM is the harmonic
mean of the means; with several datasets each method also gets an average row.

A run whose result no longer holds is left out with a note (:func:`left_out_reason`): an evaluation
whose model folder has since been replaced by a run of another config, or (given the
runner's plans, ``tools.benchmark report``) a folder made with another config than its
planned command.
"""
from __future__ import annotations

import csv
import glob
import os
import os.path as osp
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from tabulate import tabulate

from dassl import run_record

END_SIGNALS = ("Finish training", "Finished training")  # engine / older Dassl (KgCoOp)
TEST_SIGNALS = ("=> result",)

# Paper order of the base-to-new benchmark; other names follow alphabetically.
DATASET_ORDER = [
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
    "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
]


#: A run folder -> why its result is left out of a table, or None to report it.
Judge = Callable[[str], Optional[str]]


def left_out_reason(run_dir: str) -> Optional[str]:
    """The judgement from the folders alone: an evaluation whose model folder now holds a
    run of another config is left out (its number belongs to a model that is gone)."""
    return run_record.evaluated_model_changed(run_dir)


@dataclass
class Notes:
    """What a table left out, and how many runs had no record to check (one warning line)."""

    left_out: List[Tuple[str, str]] = field(default_factory=list)
    unrecorded: int = 0

    def admit(self, run_dir: str, judge: Optional[Judge]) -> bool:
        """Whether the run in ``run_dir`` may be reported; the reason is noted when not."""
        if not osp.isfile(osp.join(run_dir, run_record.RECORD_FILE)):
            self.unrecorded += 1
        reason = judge(run_dir) if judge is not None else None
        if reason:
            self.left_out.append((run_dir, reason))
            return False
        return True

    def lines(self) -> List[str]:
        out = [f"note: left out {run_dir}: {reason}" for run_dir, reason in self.left_out]
        if self.unrecorded:
            out.append(f"warning: {self.unrecorded} run(s) have no {run_record.RECORD_FILE} (written before run "
                       "records existed, or by upstream): their configs are not checked")
        return out


def listdir_nohidden(directory: str) -> List[str]:
    return sorted(n for n in os.listdir(directory) if not n.startswith("."))


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
    directory: str, keyword: str, end_signals: Sequence[str], ci95: bool = False,
    judge: Optional[Judge] = left_out_reason, notes: Optional[Notes] = None,
) -> Dict[str, float]:
    """Upstream behaviour: read ``<directory>/<sub>/log.txt`` for each sub-directory."""
    values: List[float] = []
    notes = Notes() if notes is None else notes
    for subdir in listdir_nohidden(directory):
        fpath = osp.join(directory, subdir, "log.txt")
        if not osp.isfile(fpath):
            raise FileNotFoundError(f'Missing log: "{fpath}"')
        if not notes.admit(osp.dirname(fpath), judge):
            continue
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


def collect_base2new(root: str, keyword: str = "accuracy", judge: Optional[Judge] = left_out_reason,
                     notes: Optional[Notes] = None) -> Base2NewResults:
    """``{(trainer, cfg, shots): {dataset: {"base"|"new": {seed: value}}}}``; the runs
    ``judge`` refuses are left out and named in ``notes``."""
    notes = Notes() if notes is None else notes
    results: Dict = defaultdict(lambda: defaultdict(lambda: {"base": {}, "new": {}}))
    for phase, signals in (("base", END_SIGNALS), ("new", TEST_SIGNALS)):
        top = osp.join(root, "train_base" if phase == "base" else "test_new")
        for log in sorted(glob.glob(osp.join(top, "*", "*", "*", "*", "seed*", "log.txt"))):
            dataset, shots, trainer, cfg, seed = osp.relpath(osp.dirname(log), top).split(os.sep)
            if not notes.admit(osp.dirname(log), judge):
                continue
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


def report_base2new(root: str, keyword: str, csv_path: str = "", md_path: str = "",
                    judge: Optional[Judge] = left_out_reason) -> List[Base2NewRow]:
    """Print the one side-by-side table of every method under ``root``; optionally save it."""
    notes = Notes()
    results = collect_base2new(root, keyword, judge, notes)
    for line in notes.lines():
        print(line)
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
