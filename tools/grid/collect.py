"""Results from the run folders under an output root, in the scripts' layout (``scripts/lib.sh``).

- base-to-novel: ``base2new/{train_base,test_new}/<DATASET>/shots_<K>/<TRAINER>/<CFG>/seed<S>``
  (read by ``tools.results.collect_base2new``);
- cross-dataset and domain generalization: the training ``<SOURCE>/<TRAINER>/<CFG>_<K>shots/seed<S>``
  (its final test is the source accuracy) and the evaluations
  ``evaluation/<TRAINER>/<CFG>_<K>shots[_from_<SOURCE>]/<DATASET>/seed<S>``;
- few-shot: ``fewshot/<DATASET>/shots_<K>/<TRAINER>/<CFG>[<TAG>]/seed<S>``.

What each run cost is its ``cost.json`` (``dassl.engine.cost``), read by ``collect_costs``;
folders written before it existed (or by upstream code) have none.

A run counts once its ``log.txt`` holds the metric after its end signal (the end of
training, or the result block of an evaluation-only run), as in ``parse_test_res.py``,
unless ``judge`` (``tools.results.Judge``) leaves it out, noted in ``notes``.
"""
from __future__ import annotations

import glob
import json
import os
import os.path as osp
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from tools import results as ptr
from tools.results import Judge, Notes, left_out_reason

from .grid import DG_TARGETS

_EVAL_TAG = re.compile(r"^(?P<cfg>.+)_(?P<shots>\d+)shots(?:_from_(?P<source>.+))?$")
SeedValues = Dict[str, float]  # seed folder name -> accuracy


#: Between a config's name and the backbone in a run folder's name (scripts/lib.sh).
BACKBONE_SEPARATOR = "__"


@dataclass(frozen=True)
class MethodKey:
    """A method as run: trainer, config and (base-to-novel / cross-dataset) shot count."""

    trainer: str
    config: str
    shots: str = ""

    @property
    def backbone(self) -> str:
        """The backbone a run folder names after its config (``<config>__<backbone>``, see
        ``backbone_tag`` in scripts/lib.sh); "" for the config's own."""
        return self.config.partition(BACKBONE_SEPARATOR)[2]

    def sort_key(self) -> Tuple:
        return (self.backbone, ptr.method_sort_key(self.trainer), self.config, self.shots)


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
    # Per seed folder (``seed1``...): the values the Stats summarise (the figures' seed spread).
    base_seeds: SeedValues = field(default_factory=dict)
    novel_seeds: SeedValues = field(default_factory=dict)

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
        found[key] = {ds: Base2NovelCell(Stat.of(list(v["base"].values())), Stat.of(list(v["new"].values())),
                                         dict(v["base"]), dict(v["new"]))
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


# ------------------------------------------------------------------------- cost
COST_FILE = "cost.json"  # dassl.engine.cost.COST_FILE (not imported: the report needs no torch)
CostRecord = Dict[str, Any]  # one run's cost.json


@dataclass
class MethodCosts:
    """The cost.json of a method's runs in one protocol: its trainings and its evaluation-only runs."""

    training: List[CostRecord] = field(default_factory=list)
    evaluation: List[CostRecord] = field(default_factory=list)


def read_cost(folder: str) -> Optional[CostRecord]:
    """``<folder>/cost.json``, or None when the run wrote none (older or upstream folders)."""
    path = osp.join(folder, COST_FILE)
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable cost record ({err}); delete it (the run's results stay valid) "
                         "or run the run again") from None
    if not isinstance(record, dict) or not isinstance(record.get("phases"), dict):
        raise ValueError(f"{path}: not a cost record (no 'phases'); delete it or run the run again")
    return record


def collect_costs(output: str) -> Dict[str, Dict[MethodKey, MethodCosts]]:
    """``{protocol: {method: MethodCosts}}`` from the cost.json files under ``output``.

    The method keys are those of the accuracy tables (few-shot: one key per shot count,
    ``MethodKey(trainer, cfg, shots)``); cross-dataset and DG share their ImageNet
    trainings, under ``"transfer"``.
    """
    found: Dict[str, Dict[MethodKey, MethodCosts]] = defaultdict(lambda: defaultdict(MethodCosts))

    def add(protocol: str, key: MethodKey, folder: str, role: str) -> None:
        record = read_cost(folder)
        if record is not None:
            getattr(found[protocol][key], role).append(record)

    for role, sub in (("training", "train_base"), ("evaluation", "test_new")):
        top = osp.join(output, "base2new", sub)
        for folder in sorted(glob.glob(osp.join(glob.escape(top), "*", "shots_*", "*", "*", "seed*"))):
            _, shots, trainer, cfg, _ = osp.relpath(folder, top).split(os.sep)
            add("base2new", MethodKey(trainer, cfg, shots.replace("shots_", "")), folder, role)
    evaluation = osp.join(output, "evaluation")
    seen_trainings = set()
    for folder in sorted(glob.glob(osp.join(glob.escape(evaluation), "*", "*", "*", "seed*"))):
        trainer, tag, _, _ = osp.relpath(folder, evaluation).split(os.sep)
        match = _EVAL_TAG.match(tag)
        if match is None:
            continue
        key = MethodKey(trainer, match.group("cfg"), match.group("shots"))
        add("transfer", key, folder, "evaluation")
        source = match.group("source") or "imagenet"
        training = osp.join(output, source, trainer, f"{key.config}_{key.shots}shots")
        for train_dir in sorted(glob.glob(osp.join(glob.escape(training), "seed*"))):
            if train_dir not in seen_trainings:  # one training serves every target
                seen_trainings.add(train_dir)
                add("transfer", key, train_dir, "training")
    top = osp.join(output, "fewshot")
    for folder in sorted(glob.glob(osp.join(glob.escape(top), "*", "shots_*", "*", "*", "seed*"))):
        _, shots, trainer, cfg, _ = osp.relpath(folder, top).split(os.sep)
        if shots.replace("shots_", "").isdigit():
            add("fewshot", MethodKey(trainer, cfg, shots.replace("shots_", "")), folder, "training")
    return {protocol: dict(per_method) for protocol, per_method in found.items()}
