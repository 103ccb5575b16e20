"""A run folder is its config (issue 22): the record, the fingerprint, and train.py refusing
to resume, skip as finished or evaluate across a config change."""
from __future__ import annotations

import fnmatch
import json
import os.path as osp
import re

import pytest
import torch

import train
from dassl import run_record
from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from dassl.engine.trainer import SimpleTrainer

from tests.engine.engine_toy import toy_cfg
# The toy runs of train.py's tests: their options, the autouse fixture that keeps the real
# datasets and trainers out, and the in-process run.
from tests.engine.test_train_script import TOY_OPTS, offline_components, run  # noqa: F401


def toy_argv(toy_root, out, *opts):
    return ["--root", toy_root, "--trainer", "EngineToyTrainer", "--seed", "1", "--output-dir", str(out),
            *TOY_OPTS, *opts]


def run_interrupted(monkeypatch, epoch_number: int, argv) -> None:
    """Run ``argv``, killed (as Ctrl-C or SIGTERM would) right after epoch ``epoch_number`` is saved."""
    original = SimpleTrainer.after_epoch

    def after_epoch(self):
        original(self)
        if self.epoch + 1 == epoch_number:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(SimpleTrainer, "after_epoch", after_epoch)
        with pytest.raises(KeyboardInterrupt):
            run(argv)


def accuracy(out) -> float:
    text = open(osp.join(out, "log.txt")).read()
    return float(re.findall(r"\* accuracy: ([\d.]+)%", text.split("=> result")[-1])[0])


# --------------------------------------------------------------- the key list
def full_default_config():
    from trainers.config import extend_cfg

    cfg = get_cfg_default()
    extend_cfg(cfg)
    return cfg


def test_every_key_of_the_default_config_is_classified():
    keys = run_record.flat_config(full_default_config())
    assert len(keys) > 150
    for key in keys:
        run_record.key_role(key)  # raises for a key no pattern classifies
    with pytest.raises(KeyError, match="not classified in dassl/run_record.py KEY_ROLES"):
        run_record.key_role("NEW_NODE.SETTING")


def test_keys_named_like_places_are_classified_one_by_one():
    """A key whose name says it is a place, a cache or printing must be listed itself, not
    fall into its node's catch-all (where it would count in the fingerprint unseen)."""
    catch_alls = {p for p, role, _ in run_record.KEY_ROLES if p.endswith(".*") and role == run_record.RESULT}
    place_like = re.compile(r"DIR|PATH|ROOT|CACHE|FILE|WORKERS|PRINT|FREQ|VERBOSE")
    for key in run_record.flat_config(full_default_config()):
        if place_like.search(key.split(".")[-1]):
            pattern = next(p for p, _, _ in run_record.KEY_ROLES if fnmatch.fnmatchcase(key, p))
            assert pattern not in catch_alls, f"{key} is classified only by {pattern}"


def test_the_fingerprint_ignores_places_and_printing_only():
    cfg = full_default_config()
    base = run_record.fingerprint(run_record.result_keys(cfg))
    for key, value in [("OUTPUT_DIR", "elsewhere"), ("DATASET.ROOT", "/data2"), ("DATALOADER.NUM_WORKERS", 0),
                       ("TRAIN.PRINT_FREQ", 1), ("FEATURE_CACHE.DIR", "/cache"), ("TRAINER.SEMPT.DESC_CACHE_DIR", "/d"),
                       ("FEATURE_CACHE.ENABLED", False), ("TRAIN.CHECKPOINT_FREQ", 5)]:
        other = cfg.clone()
        other.merge_from_list([key, value])
        assert run_record.fingerprint(run_record.result_keys(other)) == base, key
    for key, value in [("OPTIM.LR", 0.5), ("OPTIM.MAX_EPOCH", 5), ("SEED", 3), ("TRAINER.COOP.N_CTX", 4),
                       ("MODEL.BACKBONE.NAME", "RN50"), ("TRAINER.SEMPT.ATTRIBUTE_FILE", "other.json")]:
        other = cfg.clone()
        other.merge_from_list([key, value])
        diffs = run_record.differences(run_record.result_keys(cfg), run_record.result_keys(other))
        assert run_record.fingerprint(run_record.result_keys(other)) != base, key
        assert [d.key for d in diffs] == [key]
    size = cfg.clone()
    size.merge_from_list(["INPUT.SIZE", "(224, 224)"])  # a tuple on the command line, a list in YAML
    assert run_record.fingerprint(run_record.result_keys(size)) == base


# ------------------------------------------------------------ the scenarios
def test_a_killed_run_rerun_with_other_settings_is_refused_and_restart_moves_it_aside(toy_root, tmp_path,
                                                                                        monkeypatch):
    """Issue 22: a 6-epoch run killed at epoch 3, rerun with OPTIM.MAX_EPOCH 2 OPTIM.LR 0.5, was
    "already finished" (3/2 epochs) with a result; rerun with only OPTIM.LR it continued at the
    new rate. Both are refused, naming each key; --restart starts afresh, keeping the old run."""
    out = tmp_path / "seed1"
    run_interrupted(monkeypatch, 3, toy_argv(toy_root, out, "OPTIM.MAX_EPOCH", "6"))
    assert (out / "model" / "model.pth.tar-3").is_file()
    record = json.loads((out / run_record.RECORD_FILE).read_text())
    assert record["keys"]["OPTIM.MAX_EPOCH"] == 6 and record["attempts"][0]["host"]
    assert record["attempts"][0]["command"] and "code_version" in record["attempts"][0]
    assert "MAX_EPOCH: 6" in (out / run_record.CONFIG_FILE).read_text()

    with pytest.raises(SystemExit) as refused:
        run(toy_argv(toy_root, out, "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.5"))
    message = str(refused.value)
    assert "OPTIM.LR: 0.001 -> 0.5" in message and "OPTIM.MAX_EPOCH: 6 -> 2" in message
    assert "--output-dir" in message and "--restart" in message
    assert "=> result" not in (out / "log.txt").read_text()
    with pytest.raises(SystemExit, match=r"OPTIM\.LR: 0\.001 -> 0\.5") as refused:
        run(toy_argv(toy_root, out, "OPTIM.MAX_EPOCH", "6", "OPTIM.LR", "0.5"))
    assert "MAX_EPOCH" not in str(refused.value)
    assert (out / "model" / "model.pth.tar-3").is_file()  # nothing of the old run was touched

    run(["--restart"] + toy_argv(toy_root, out, "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.5"))
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(".seed1.replaced-")]
    assert len(aside) == 1 and (aside[0] / "model" / "model.pth.tar-3").is_file()
    assert "Previous epoch" not in (out / "log.txt").read_text()  # trained from scratch

    fresh = tmp_path / "fresh"
    run(toy_argv(toy_root, fresh, "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.5"))
    assert accuracy(out) == accuracy(fresh)
    ours = torch.load(out / "model" / "model.pth.tar-2", weights_only=False)["state_dict"]
    theirs = torch.load(fresh / "model" / "model.pth.tar-2", weights_only=False)["state_dict"]
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_finished_run_with_another_config_is_stale_not_finished(toy_root, tmp_path):
    out = tmp_path / "run"
    run(toy_argv(toy_root, out))
    with pytest.raises(SystemExit, match="Refusing to overwrite the finished run"):
        run(toy_argv(toy_root, out, "DATALOADER.NUM_WORKERS", "0", "TRAIN.PRINT_FREQ", "1"))  # not in the fingerprint
    with pytest.raises(SystemExit, match=r"another config:\n  OPTIM.WEIGHT_DECAY: 0.0005 -> 0.1"):
        run(toy_argv(toy_root, out, "OPTIM.WEIGHT_DECAY", "0.1"))

    def state(*opts):
        return train.finished_cli([str(out)] + toy_argv(toy_root, out, *opts))

    assert state() == 0 and state("OPTIM.WEIGHT_DECAY", "0.1") == 3
    assert train.finished_cli([str(out)]) == 0  # the folder alone: its log holds the result
    never = tmp_path / "never"
    assert train.finished_cli([str(never)] + toy_argv(toy_root, never)) == 1


def test_a_resumed_run_keeps_one_record_with_each_attempt(toy_root, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_interrupted(monkeypatch, 1, toy_argv(toy_root, out))
    run(toy_argv(toy_root, out))
    record = json.loads((out / run_record.RECORD_FILE).read_text())
    assert len(record["attempts"]) == 2 and "Previous epoch: 1" in (out / "log.txt").read_text()


def test_eval_only_names_the_model_keys_that_differ(toy_root, tmp_path):
    model = tmp_path / "train_base"
    run(toy_argv(toy_root, model))
    ev = tmp_path / "test_new"
    eval_args = ["--eval-only", "--model-dir", str(model), "--load-epoch", "2"]
    with pytest.raises(SystemExit) as refused:
        run(eval_args + toy_argv(toy_root, ev, "MODEL.BACKBONE.NAME", "RN50", "MODEL.HEAD.HIDDEN_LAYERS", "(8,)"))
    message = str(refused.value)
    assert 'MODEL.BACKBONE.NAME: "" -> "RN50"' in message and "MODEL.HEAD.HIDDEN_LAYERS: [] -> [8]" in message
    assert "OPTIM" not in message and "config.yaml" in message
    # Settings that do not shape the model may differ (a test-time sweep, the class subset).
    run(eval_args + toy_argv(toy_root, ev, "OPTIM.LR", "0.5", "TEST.FINAL_MODEL", "last_step"))
    record = json.loads((ev / run_record.RECORD_FILE).read_text())
    assert record["model_fingerprint"] == json.loads((model / run_record.RECORD_FILE).read_text())["fingerprint"]


def test_folders_without_a_record_keep_working_with_one_warning(toy_root, tmp_path, capsys):
    out = tmp_path / "legacy"
    out.mkdir()
    (out / "log.txt").write_text("epoch [1/2] batch [1/4] ...\n")  # an older, interrupted run
    run(toy_argv(toy_root, out))
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "has no run_record.json" in warnings[0]
    assert "=> result" in (out / "log.txt").read_text()
    assert train.finished_cli([str(out)] + toy_argv(toy_root, out)) == 0  # it has a record now

    upstream = tmp_path / "upstream"
    upstream.mkdir()
    (upstream / "log.txt").write_text("Finish training\n=> result\n* accuracy: 50.0%\n")
    assert train.finished_cli([str(upstream)] + toy_argv(toy_root, upstream)) == 0  # finished, as before
    state = run_record.run_state(str(upstream), None)
    assert state.legacy and state.finished


def test_the_engine_does_not_resume_from_a_folder_of_another_config(toy_root, tmp_path):
    out = str(tmp_path / "run")
    trainer = build_trainer(toy_cfg(toy_root, out, OPTIM__MAX_EPOCH=1))
    run_record.write_record(out, trainer.cfg, ["test"])
    trainer.train()
    other = toy_cfg(toy_root, str(tmp_path / "elsewhere"), OPTIM__MAX_EPOCH=3, RESUME=out)
    with pytest.raises(RuntimeError, match=r'Cannot resume from ".*run".*\n  OPTIM.MAX_EPOCH: 1 -> 3'):
        build_trainer(other).train()


def test_a_damaged_record_names_its_file(tmp_path):
    (tmp_path / run_record.RECORD_FILE).write_text('{"fingerprint": "ab')
    with pytest.raises(ValueError, match=r"run_record.json cannot be read .*--restart"):
        run_record.run_state(str(tmp_path), None)


def test_parse_test_res_leaves_out_an_evaluation_of_a_replaced_model(toy_root, tmp_path, capsys):
    import parse_test_res

    root = tmp_path / "base2new"
    common = "engine_toy/shots_4/EngineToyTrainer/toy/seed1"
    base, new = root / "train_base" / common, root / "test_new" / common
    run(toy_argv(toy_root, base))
    run(["--eval-only", "--model-dir", str(base), "--load-epoch", "2"] + toy_argv(toy_root, new))
    parse_test_res.main([str(root), "--base2new"])
    table = capsys.readouterr().out
    assert "left out" not in table and "warning" not in table
    row = next(line for line in table.splitlines() if line.startswith("EngineToyTrainer"))
    assert row.split()[4] != "-"  # Novel is there

    run(["--restart"] + toy_argv(toy_root, base, "OPTIM.LR", "0.5"))  # the model is replaced
    capsys.readouterr()
    parse_test_res.main([str(root), "--base2new"])
    table = capsys.readouterr().out
    assert f"note: left out {new}: the model it evaluated ({base}) has since been replaced" in table
    row = next(line for line in table.splitlines() if line.startswith("EngineToyTrainer"))
    assert row.split()[-2:] == ["-", "1/0"]  # HM and seeds: the evaluation is not counted


def test_a_key_added_to_the_code_since_a_run_is_no_difference_at_its_default(toy_root, tmp_path):
    out = tmp_path / "run"
    run(toy_argv(toy_root, out))
    record_file = out / run_record.RECORD_FILE
    record = json.loads(record_file.read_text())
    added = "MODEL.PREC_ON_CPU"  # as if the run was recorded before the key existed
    assert record["keys"].pop(added) is False
    record["fingerprint"] = run_record.fingerprint(record["keys"])
    record_file.write_text(json.dumps(record))

    def state(*opts):
        return train.finished_cli([str(out)] + toy_argv(toy_root, out, *opts))

    assert state() == 0  # the new key at its default: the run is this command's
    assert state(added, "True") == 3  # set otherwise, it is another config
