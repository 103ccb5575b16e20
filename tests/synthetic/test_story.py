"""The synthetic world's story, measured on a reduced run of the README's main job.

Seed 1 only, the shipped configs and tiny CLIP, the same train.py runs the scripts make.
It asserts what the full run (seeds 1-3, README "What the main job shows") measured, so a
regression in a trainer, the world or the checkpoint fails CI:

- the calibration (datasets/SYNTHETIC.md): prompt learning gains on base (target 2, in the
  direction it holds), loses on novel (target 3), and LLM descriptions add a few points to
  zero-shot (target 5);
- SemPT: its harmonic mean is above CoOp's, and its visual weighting gives the attributes
  a photo cannot show (habitat, diet) less weight than the visible ones.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Optional

import pytest

import train

REPO = Path(__file__).resolve().parents[2]
INVISIBLE = {"habitat", "diet"}
# The config each trainer's scripts pick on the synthetic world (scripts/<method>/method.sh);
# the others read configs/trainers/<trainer>/synthetic.yaml.
CONFIG = {"ZeroshotCLIP": "CoOp/synthetic", "SemPT": "SemPT/synthetic_maple"}
EVAL_ONLY = {"ZeroshotCLIP", "CuPL"}


@pytest.fixture(scope="module")
def logs(tmp_path_factory, synthetic_data_root) -> Dict[str, Dict[str, str]]:
    tmp = tmp_path_factory.mktemp("story")

    def run(trainer: str, phase: str) -> str:
        out = tmp / trainer / phase
        config = REPO / "configs" / "trainers" / f"{CONFIG.get(trainer, trainer + '/synthetic')}.yaml"
        args = [
            "--root", synthetic_data_root, "--seed", "1", "--trainer", trainer, "--output-dir", str(out),
            "--dataset-config-file", str(REPO / "configs/datasets/synthetic.yaml"), "--config-file", str(config),
        ]
        if trainer in EVAL_ONLY:
            args += ["--eval-only"]
        elif phase == "new":
            epochs = train.setup_cfg(train.build_parser().parse_args(args)).OPTIM.MAX_EPOCH
            args += ["--eval-only", "--model-dir", str(tmp / trainer / "base"), "--load-epoch", str(epochs)]
        args += ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", phase]
        train.main(train.build_parser().parse_args(args))
        return (out / "log.txt").read_text()

    runs = {"ZeroshotCLIP": ("base", "new"), "CuPL": ("base", "new"), "LinearProbe": ("base",),
            "CoOp": ("base", "new"), "SemPT": ("base", "new")}
    return {trainer: {phase: run(trainer, phase) for phase in phases} for trainer, phases in runs.items()}


def _accuracy(log: str) -> Optional[float]:
    found = re.findall(r"\* accuracy: ([\d.]+)%", log)
    return float(found[-1]) if found else None


def _hm(base: float, novel: float) -> float:
    return 2 * base * novel / (base + novel)


@pytest.fixture(scope="module")
def acc(logs) -> Dict[str, Dict[str, float]]:
    return {trainer: {phase: _accuracy(log) for phase, log in phases.items()} for trainer, phases in logs.items()}


def test_calibration_prompt_learning_gains_on_base_near_the_linear_probe(acc):
    # Target 2: measured +8.7 over zero-shot (mean of 3 seeds; the target asks +10, see
    # SYNTHETIC.md) and +1.5 over the probe; one seed gets margins.
    coop, zero_shot, probe = acc["CoOp"]["base"], acc["ZeroshotCLIP"]["base"], acc["LinearProbe"]["base"]
    assert coop >= zero_shot + 5, acc
    assert abs(coop - probe) <= 8, acc


def test_calibration_prompt_learning_loses_on_novel(acc):
    assert acc["CoOp"]["new"] <= acc["ZeroshotCLIP"]["new"] - 3, acc  # target 3


def test_calibration_descriptions_add_a_few_points(acc):
    for half in ("base", "new"):  # target 5
        assert -2 <= acc["CuPL"][half] - acc["ZeroshotCLIP"][half] <= 6, acc


def test_sempt_harmonic_mean_beats_coop(acc):
    # Measured (3 seeds): SemPT 79.6 vs CoOp 74.3 HM, novel 76.6 vs 65.1; seed 1: 78.2 vs 74.7.
    sempt, coop = acc["SemPT"], acc["CoOp"]
    assert _hm(sempt["base"], sempt["new"]) > _hm(coop["base"], coop["new"]), acc
    assert sempt["new"] >= coop["new"] + 5, acc


def test_visual_weighting_ignores_invisible_attributes(logs):
    line = re.search(r"Mean attribute weights on the true class \(visual\): (.*)", logs["SemPT"]["new"]).group(1)
    weights = {name: float(value) for name, value in (item.split() for item in line.split(", "))}
    assert INVISIBLE < set(weights) and len(weights) > len(INVISIBLE)
    visible = [w for name, w in weights.items() if name not in INVISIBLE]
    invisible = [w for name, w in weights.items() if name in INVISIBLE]
    assert sum(invisible) / len(invisible) < sum(visible) / len(visible), weights
