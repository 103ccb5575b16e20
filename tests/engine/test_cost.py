"""cost.json: phases that add up, images counted per phase, written atomically by every finished run."""
import json
import os
import os.path as osp

import pytest

import train
from dassl.engine import cost as cost_module
from dassl.engine.cost import COST_FILE, RunCost, measured

from .test_train_script import TOY_OPTS, run


@pytest.fixture(autouse=True)
def offline_components(monkeypatch):
    monkeypatch.setattr(train, "register_components", lambda: None)
    monkeypatch.setattr(train, "extend_cfg", lambda cfg: None)
    monkeypatch.setattr(train, "collect_env_info", lambda: "env")


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_nested_phase_is_counted_once(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(cost_module.time, "perf_counter", clock)
    cost = RunCost()
    cost.add_seconds("setup", 2.0)
    cost.begin("training")
    clock.now += 10.0
    cost.begin("evaluation")  # a validation pass inside training
    clock.now += 3.0
    cost.end("evaluation")
    clock.now += 5.0
    cost.end("training")
    cost.count_images("training", 150)
    cost.count_images("evaluation", 30)
    phases = cost.phases()
    assert phases["training"]["seconds"] == pytest.approx(15.0)
    assert phases["evaluation"]["seconds"] == pytest.approx(3.0)
    assert phases["training"]["images_per_second"] == pytest.approx(10.0)
    assert phases["evaluation"]["images_per_second"] == pytest.approx(10.0)
    assert phases["setup"] == {"seconds": 2.0, "images": 0, "images_per_second": None, "entries": 1}
    assert sum(p["seconds"] for p in phases.values()) == pytest.approx(20.0)  # the wall time, once


def test_misuse_names_the_phase():
    cost = RunCost()
    with pytest.raises(ValueError, match="unknown cost phase 'train'; one of setup, training, evaluation"):
        cost.begin("train")
    cost.begin("training")
    with pytest.raises(RuntimeError, match=r"RunCost.end\('evaluation'\) but the open phases are \['training'\]"):
        cost.end("evaluation")


def test_a_failing_phase_is_still_closed():
    class Trainer:
        cost = RunCost()

        @measured("evaluation")
        def test(self):
            raise KeyError("boom")

    trainer = Trainer()
    with pytest.raises(KeyError):
        trainer.test()
    assert trainer.cost.entries["evaluation"] == 1 and not trainer.cost._open


def read_cost(folder):
    with open(osp.join(folder, COST_FILE)) as f:
        return json.load(f)


def test_training_and_eval_only_runs_write_their_cost(toy_root, tmp_path):
    out = str(tmp_path / "train_base")
    run(["--root", toy_root, "--trainer", "EngineToyTrainer", "--seed", "1", "--output-dir", out] + TOY_OPTS)
    record = read_cost(out)
    phases = record["phases"]
    # The toy dataset: 2 epochs over its training images, then one test pass.
    from dassl.config import get_cfg_default
    from dassl.data import DataManager

    cfg = get_cfg_default()
    cfg.DATASET.ROOT = toy_root
    cfg.merge_from_list(TOY_OPTS)
    dm = DataManager(cfg)
    # The images trained on: the training loader drops its last partial batch (as upstream).
    n_train, n_test = len(dm.train_loader_x) * 4, len(dm.dataset.test)
    assert n_train == len(dm.dataset.train_x) // 4 * 4
    assert phases["training"]["images"] == 2 * n_train
    assert phases["evaluation"]["images"] == n_test and phases["evaluation"]["entries"] == 1
    assert all(phases[p]["seconds"] > 0 for p in ("setup", "training", "evaluation"))
    assert phases["training"]["images_per_second"] == pytest.approx(
        2 * n_train / phases["training"]["seconds"], rel=1e-3)
    assert record["total_seconds"] == pytest.approx(sum(p["seconds"] for p in phases.values()), abs=1e-5)
    assert record["trainer"] == "EngineToyTrainer" and record["seed"] == 1
    assert record["device"]["type"] == "cpu" and record["cuda"]["max_memory_allocated_mb"] is None
    assert record["peak_rss_mb"] > 10  # a Python process with torch holds far more than 10 MiB
    assert record["feature_cache"] is None and record["precision"] is None  # no CLIP trainer here
    assert record["epochs"] == {"start": 0, "max": 2}
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]  # atomic: no temporary file left
    assert "Run cost: setup" in open(osp.join(out, "log.txt")).read()

    ev = str(tmp_path / "test_new")
    eval_args = ["--root", toy_root, "--trainer", "EngineToyTrainer", "--output-dir", ev, "--eval-only"]
    with pytest.raises(FileNotFoundError):
        run(eval_args + TOY_OPTS)
    assert not osp.exists(osp.join(ev, COST_FILE))  # a failed run has no cost
    os.remove(osp.join(ev, "log.txt"))
    run(eval_args + ["--model-dir", out, "--load-epoch", "2"] + TOY_OPTS)
    evaluated = read_cost(ev)["phases"]
    assert evaluated["training"] == {"seconds": 0.0, "images": 0, "images_per_second": None, "entries": 0}
    assert evaluated["evaluation"]["images"] == n_test and evaluated["setup"]["seconds"] > 0
