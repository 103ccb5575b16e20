"""Summarise test results from ``log.txt`` files: upstream CoOp's ``parse_test_res.py``
command, extended. The parsing library is ``tools/results.py``.

Upstream modes::

    python parse_test_res.py output/.../CoOp/rn50_16shots/nctx16_cscFalse_ctpend   # seed* dirs
    python parse_test_res.py output/evaluation/... --test-log                        # eval-only logs
    python parse_test_res.py output/... --multi-exp                                  # one level deeper

Base-to-new mode: one side-by-side table of every method found (Base, Novel, HM)::

    python parse_test_res.py output/base2new --base2new [--csv res.csv] [--markdown res.md]

Runs whose result no longer holds (an evaluation of a model folder since replaced by a
run of another config, ``dassl/run_record.py``) are left out with a note.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional

import numpy as np

# Run as a script from anywhere: the repository root (this file's folder) holds the packages.
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from tools.results import (  # noqa: E402,F401  (re-exported: the names upstream-style callers import)
    CSV_HEADERS, DATASET_ORDER, END_SIGNALS, LAST_METHODS, METHOD_ORDER, TEST_SIGNALS, Base2NewRow, Notes, Stat,
    base2new_rows, base2new_table, collect_base2new, harmonic_mean, hm_of_means, is_eval_only, method_sort_key,
    listdir_nohidden, metric_regex, parse_directory, parse_log, report_base2new, summarise,
)


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
    notes = Notes()
    if args.multi_exp:
        final: Dict[str, List[float]] = OrderedDict()
        for exp in listdir_nohidden(args.directory):
            directory = osp.join(args.directory, exp)
            for k, v in parse_directory(directory, args.keyword, end_signals, args.ci95, notes=notes).items():
                final.setdefault(k, []).append(v)
        print("Average performance")
        for k, values in final.items():
            print(f"* {k}: {np.mean(values):.2f}%")
    else:
        parse_directory(args.directory, args.keyword, end_signals, args.ci95, notes=notes)
    for line in notes.lines():
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
