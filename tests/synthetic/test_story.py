"""The synthetic world's point, measured (a reduced run of the README's main job).

One seed, fewer epochs than the shipped configs, the real scripts' settings and
the shipped tiny CLIP: SemPT's harmonic mean beats CoOp's, and the visual
weighting gives the attributes a photo cannot show (habitat, diet) less weight
than the visible ones.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import train

REPO = Path(__file__).resolve().parents[2]
INVISIBLE = {"habitat", "diet"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_data_root):
    tmp = tmp_path_factory.mktemp("story")
    data, cache = synthetic_data_root, tmp / "cache"

    def run(trainer: str, phase: str, *extra: str) -> str:
        out = tmp / trainer / phase
        args = [
            "--root", str(data), "--seed", "1", "--trainer", trainer, "--output-dir", str(out),
            "--dataset-config-file", str(REPO / "configs/datasets/synthetic.yaml"),
            "--config-file", str(REPO / f"configs/trainers/{trainer}/synthetic.yaml"),
        ]
        if phase == "new":
            args += ["--eval-only", "--model-dir", str(tmp / trainer / "base"), "--load-epoch", "6"]
        args += ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", phase, "OPTIM.MAX_EPOCH", "6",
                 "TRAINER.SEMPT.DESC_CACHE_DIR", str(cache), *extra]
        train.main(train.build_parser().parse_args(args))
        return (out / "log.txt").read_text()

    logs = {}
    for trainer in ("CoOp", "SemPT"):
        logs[trainer] = {phase: run(trainer, phase) for phase in ("base", "new")}
    return logs


def _accuracy(log: str) -> float:
    return float(re.findall(r"\* accuracy: ([\d.]+)%", log)[-1])


def _hm(base: float, novel: float) -> float:
    return 2 * base * novel / (base + novel)


def test_sempt_harmonic_mean_beats_coop(runs):
    coop = {p: _accuracy(runs["CoOp"][p]) for p in ("base", "new")}
    sempt = {p: _accuracy(runs["SemPT"][p]) for p in ("base", "new")}
    assert min(coop.values()) > 5.0, coop  # above chance (20 classes per half)
    assert sempt["new"] > coop["new"], (sempt, coop)
    assert _hm(sempt["base"], sempt["new"]) > _hm(coop["base"], coop["new"]), (sempt, coop)


def test_visual_weighting_ignores_invisible_attributes(runs):
    line = re.search(r"Mean attribute weights on the true class \(visual\): (.*)", runs["SemPT"]["new"]).group(1)
    weights = {name: float(value) for name, value in (item.split() for item in line.split(", "))}
    assert INVISIBLE < set(weights) and len(weights) > len(INVISIBLE)
    visible = [w for name, w in weights.items() if name not in INVISIBLE]
    invisible = [w for name, w in weights.items() if name in INVISIBLE]
    assert sum(invisible) / len(invisible) < sum(visible) / len(visible), weights
