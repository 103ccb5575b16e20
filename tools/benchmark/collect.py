"""Results from the run folders under an output root, in the scripts' layout (``scripts/lib.sh``).

- base-to-novel: ``base2new/{train_base,test_new}/<DATASET>/shots_<K>/<TRAINER>/<CFG>/seed<S>``
  (read by ``tools.results.collect_base2new``);
- cross-dataset and domain generalization: the training ``<SOURCE>/<TRAINER>/<CFG>_<K>shots/seed<S>``
  (its final test is the source accuracy) and the evaluations
  ``evaluation/<TRAINER>/<CFG>_<K>shots[_from_<SOURCE>]/<DATASET>/seed<S>``;
- few-shot: ``fewshot/<DATASET>/shots_<K>/<TRAINER>/<CFG>[<TAG>]/seed<S>``.

A run counts once its ``log.txt`` holds the metric after its end signal (the end of
training, or the result block of an evaluation-only run), as in ``parse_test_res.py``,
unless ``judge`` (``tools.results.Judge``) leaves it out, noted in ``notes``.
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from tools import results as ptr
from tools.results import Judge, Notes, left_out_reason

from .grid import DG_TARGETS

_EVAL_TAG = re.compile(r"^(?P<cfg>.+)_(?P<shots>\d+)shots(?:_from_(?P<source>.+))?$")
SeedValues = Dict[str, float]  # seed folder name -> accuracy


@dataclass(frozen=True)
class MethodKey:
    """A method as run: trainer, config and (base-to-novel / cross-dataset) shot count."""

    trainer: str
    config: str
    shots: str = ""

    def sort_key(self) -> Tuple:
        return (ptr.method_sort_key(self.trainer), self.config, self.shots)


# Mean and std (ddof=0, as upstream) over n seeds.
Stat = ptr.Stat


def read_accuracy(log: str, keyword: str = "accuracy") -> Optional[float]:
    """The final accuracy of a run's log: after training, or the eval-only result block."""
    signals = ptr.TEST_SIGNALS if ptr.is_eval_only(log) else ptr.END_SIGNALS
    return ptr.parse_log(log, keyword, signals)


def dataset_order(name: str) -> Tuple[int, str]:
    order = ptr.DATASET_ORDER + DG_TARGETS
    return (order.index(name) if name in order else len(order), name)


# ---------------------------------------------------------------- base-to-novel
@dataclass
class Base2NovelCell:
    base: Optional[Stat]
    novel: Optional[Stat]

    @property
    def hm(self) -> Optional[float]:
        return ptr.hm_of_means(self.base, self.novel)


def collect_base2new(output: str, keyword: str = "accuracy", judge: Optional[Judge] = left_out_reason,
                     notes: Optional[Notes] = None) -> Dict[MethodKey, Dict[str, Base2NovelCell]]:
    """``{method: {dataset: Base/Novel}}`` from ``<output>/base2new``."""
    found: Dict[MethodKey, Dict[str, Base2NovelCell]] = {}
    root = osp.join(output, "base2new")
    if not osp.isdir(root):
        return found
    for (trainer, cfg, shots), datasets in ptr.collect_base2new(root, keyword, judge, notes).items():
        key = MethodKey(trainer, cfg, shots.replace("shots_", ""))
        found[key] = {ds: Base2NovelCell(Stat.of(list(v["base"].values())), Stat.of(list(v["new"].values())))
                      for ds, v in datasets.items()}
    return found


# ------------------------------------------------------ cross-dataset and DG
@dataclass
class Transfer:
    """One method's cross-dataset / DG results: the source accuracy and each target's."""

    source: str
    source_values: SeedValues
    targets: Dict[str, SeedValues]


def collect_transfer(output: str, keyword: str = "accuracy", judge: Optional[Judge] = left_out_reason,
                     notes: Optional[Notes] = None) -> Dict[MethodKey, Transfer]:
    """``{method: Transfer}`` from ``<output>/evaluation`` and the source trainings."""
    notes = Notes() if notes is None else notes
    found: Dict[MethodKey, Transfer] = {}
    pattern = osp.join(glob.escape(output), "evaluation", "*", "*", "*", "seed*", "log.txt")
    for log in sorted(glob.glob(pattern)):
        trainer, tag, dataset, seed = osp.relpath(osp.dirname(log), osp.join(output, "evaluation")).split(os.sep)
        match = _EVAL_TAG.match(tag)
        if match is None:
            continue
        source = match.group("source") or "imagenet"
        key = MethodKey(trainer, match.group("cfg"), match.group("shots"))
        if key not in found:
            found[key] = Transfer(source, {}, {})
        if not notes.admit(osp.dirname(log), judge):
            continue
        value = ptr.parse_log(log, keyword, ptr.TEST_SIGNALS)
        if value is not None:
            found[key].targets.setdefault(dataset, {})[seed] = value
    for key, transfer in found.items():
        train_dir = osp.join(output, transfer.source, key.trainer, f"{key.config}_{key.shots}shots")
        for log in sorted(glob.glob(osp.join(glob.escape(train_dir), "seed*", "log.txt"))):
            if not notes.admit(osp.dirname(log), judge):
                continue
            value = read_accuracy(log, keyword)
            if value is not None:
                transfer.source_values[osp.basename(osp.dirname(log))] = value
    return found


def split_transfer(found: Dict[MethodKey, Transfer]) -> Tuple[Dict[MethodKey, Transfer], Dict[MethodKey, Transfer]]:
    """(cross-dataset, domain generalization): the ImageNet variants are the DG targets."""
    xd, dg = {}, {}
    for key, transfer in found.items():
        xd_targets = {d: v for d, v in transfer.targets.items() if d not in DG_TARGETS}
        dg_targets = {d: v for d, v in transfer.targets.items() if d in DG_TARGETS}
        if xd_targets:
            xd[key] = Transfer(transfer.source, transfer.source_values, xd_targets)
        if dg_targets:
            dg[key] = Transfer(transfer.source, transfer.source_values, dg_targets)
    return xd, dg


# --------------------------------------------------------------------- few-shot
def collect_fewshot(output: str, keyword: str = "accuracy", judge: Optional[Judge] = left_out_reason,
                    notes: Optional[Notes] = None) -> Dict[MethodKey, Dict[str, Dict[int, SeedValues]]]:
    """``{method: {dataset: {shots: {seed: accuracy}}}}`` from ``<output>/fewshot``."""
    notes = Notes() if notes is None else notes
    found: Dict[MethodKey, Dict[str, Dict[int, SeedValues]]] = defaultdict(lambda: defaultdict(dict))
    top = osp.join(output, "fewshot")
    for log in sorted(glob.glob(osp.join(glob.escape(top), "*", "shots_*", "*", "*", "seed*", "log.txt"))):
        dataset, shots, trainer, cfg, seed = osp.relpath(osp.dirname(log), top).split(os.sep)
        if not notes.admit(osp.dirname(log), judge):
            continue
        value = read_accuracy(log, keyword)
        if value is None or not shots.replace("shots_", "").isdigit():
            continue
        found[MethodKey(trainer, cfg)][dataset].setdefault(int(shots.replace("shots_", "")), {})[seed] = value
    return {k: dict(v) for k, v in found.items()}


def mean_of(values: List[float]) -> float:
    return float(np.mean(values))
