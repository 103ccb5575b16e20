"""The SemPT sweep: its search plan and that its runs never touch a novel class or the test split."""
from __future__ import annotations

import argparse

import pytest

import train
from tools import sempt_sweep as sweep
from tools.sempt_sweep import SEARCH_SPACE, Score, Setting, stage1, stage2


def test_stage1_varies_one_key_at_a_time_from_the_defaults():
    settings = stage1()
    assert settings[0] == Setting()
    assert len(settings) == 1 + sum(len(v) - 1 for v in SEARCH_SPACE.values())
    assert all(len(s.changes) == 1 for s in settings[1:])


def test_stage2_takes_each_key_at_its_best_value():
    def score(setting, hm):
        s = Score(setting, base=[hm], new=[hm])
        return s

    scores = [score(Setting(), 50.0), score(Setting((("FUSION_WEIGHT", "2.0"),)), 55.0),
              score(Setting((("WEIGHTING", "uniform"),)), 40.0), score(Setting((("KG_WEIGHT", "8.0"),)), 52.0)]
    combined = stage2(scores)
    assert combined == Setting((("FUSION_WEIGHT", "2.0"), ("KG_WEIGHT", "8.0")))
    assert stage2(scores[:3]) is None  # one key changed: stage 1 already measured it


def test_eval_only_keys_share_the_training_run():
    s = Setting((("INFERENCE", "ensemble"), ("FUSION_WEIGHT", "2.0")))
    assert s.training() == Setting((("FUSION_WEIGHT", "2.0"),))


def test_runs_use_pseudo_splits_and_validation_only(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(sweep, "run", lambda argv, out, threads: calls.append(argv))
    monkeypatch.setattr(sweep, "final_accuracy", lambda log: 50.0)
    args = argparse.Namespace(dataset="synthetic", data=str(tmp_path), shots=16, slots=1, output=str(tmp_path),
                              seeds=[1])
    runner = sweep.Sweep(args)
    setting = Setting((("INFERENCE", "ensemble"),))
    runner.train(setting, 1)
    assert runner.evaluate(setting, 1) == (50.0, 50.0)
    assert len(calls) == 3  # train, then pseudo-base and pseudo-novel with the ensemble inference
    for argv in calls:
        subsample = argv[argv.index("DATASET.SUBSAMPLE_CLASSES") + 1]
        assert subsample in ("pseudo_base", "pseudo_new")
        assert argv[argv.index("TEST.SPLIT") + 1] == "val" and argv[argv.index("DATASET.VAL_FEWSHOT") + 1] == "False"
        # train.py reads every argument after the first override as KEY VALUE pairs.
        opts = train.build_parser().parse_args(argv).opts
        assert len(opts) % 2 == 0 and not any(o.startswith("--") for o in opts), opts
    assert "TRAINER.SEMPT.INFERENCE" not in calls[0]  # training does not depend on it
    assert calls[2][calls[2].index("TRAINER.SEMPT.INFERENCE") + 1] == "ensemble"


def test_a_missing_branch_config_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(sweep, "REPO", tmp_path)
    with pytest.raises(SystemExit, match="no SemPT config"):
        sweep.config_for(Setting((("LABEL_BRANCH", "maple"),)), "synthetic")


def test_run_trains_into_its_folder(tmp_path, synthetic_data_root):
    """``run`` itself, not a stand-in: overrides end the command line, the output folder is honoured."""
    argv = ["--root", synthetic_data_root, "--seed", "1", "--trainer", "ZeroshotCLIP", "--eval-only",
            "--dataset-config-file", str(sweep.REPO / "configs/datasets/synthetic.yaml"),
            "--config-file", str(sweep.REPO / "configs/trainers/CoOp/synthetic.yaml"),
            "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "pseudo_base", "TEST.SPLIT", "val"]
    out = tmp_path / "run"
    sweep.run(argv, out, threads=1)
    accuracy = sweep.final_accuracy(out / "log.txt")
    assert accuracy is not None and 0.0 <= accuracy <= 100.0
    log = (out / "log.txt").read_text()
    sweep.run(argv, out, threads=1)  # finished: skipped, the log is untouched
    assert (out / "log.txt").read_text() == log
