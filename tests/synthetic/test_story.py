"""The synthetic world's story, measured on a reduced run of the README's main job.

Seed 1 only, the shipped configs and tiny CLIP, the very train.py runs the scripts make.
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
from tools.grid.grid import build_grid
from tools.grid.plan import build_plan

REPO = Path(__file__).resolve().parents[2]
INVISIBLE = {"habitat", "diet"}
TRAINERS = ("ZeroshotCLIP", "CuPL", "LinearProbe", "CoOp", "SemPT")


@pytest.fixture(scope="module")
def logs(tmp_path_factory, synthetic_data_root) -> Dict[str, Dict[str, str]]:
    """The runs ``scripts/<method>/base2new_{train,test}.sh synthetic 1`` make (their configs,
    epochs and model folders, from the scripts' plan mode), run in this process."""
    tmp = tmp_path_factory.mktemp("story")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATA", synthetic_data_root)
        patch.delenv("CFG", raising=False)
        patch.delenv("SHOTS", raising=False)
        grid = build_grid({}, protocols=["base2new"], methods=list(TRAINERS), datasets=["synthetic"], seeds=[1])
        plan = build_plan(grid, str(tmp))
        patch.chdir(REPO)  # the scripts' paths are relative to the repository root
        found: Dict[str, Dict[str, str]] = {}
        for run in plan.runs:  # trainings come before their tests
            train.main(train.build_parser().parse_args(run.argv[2:]))  # [python, train.py, ...]
            log = (Path(run.outdir) / "log.txt").read_text()
            found.setdefault(run.trainer, {})["base" if "/train_base/" in run.run_id else "new"] = log
    return found


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
