"""The toy TrainerX through the full lifecycle: train, save, eval-only load, resume."""
import os
import os.path as osp
import re

import pytest
import torch

from dassl.engine import build_trainer
from dassl.utils import CheckpointError, set_random_seed

from tests.engine.engine_toy import toy_cfg

LOG_LINE = re.compile(
    r"^epoch \[\d+/\d+\] batch \[\d+/\d+\] time \d+\.\d{3} \(\d+\.\d{3}\) data \d+\.\d{3} \(\d+\.\d{3}\) "
    r"loss \d+\.\d{4} \(\d+\.\d{4}\) acc \d+\.\d{4} \(\d+\.\d{4}\) lr \d\.\d{4}e[-+]\d{2} eta \d+:\d{2}:\d{2}$"
)


def make_trainer(cfg):
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_train_save_and_eval_only_load(toy_root, tmp_path, capsys):
    out = str(tmp_path / "run")
    trainer = make_trainer(toy_cfg(toy_root, out))
    trainer.train()
    text = capsys.readouterr().out
    lines = text.splitlines()
    # 18 images, batch 4, drop_last -> 4 batches; PRINT_FREQ 2 -> batches 2 and 4 printed.
    train_lines = [ln for ln in lines if ln.startswith("epoch [")]
    assert len(train_lines) == 4 and all(LOG_LINE.match(ln) for ln in train_lines), train_lines
    assert train_lines[0].split(" lr ")[1].startswith("1.0000e-05")  # constant warm-up epoch
    for marker in ("Finish training", "Deploy the last-epoch model", "Evaluate on the *test* set", "=> result"):
        assert marker in lines
    assert any(ln.startswith("Elapsed: ") for ln in lines)
    assert trainer.hook_calls == ["before_test", "after_test"]

    # Only the last epoch survives (CHECKPOINT_FREQ 0), and it loads with weights_only.
    model_dir = osp.join(out, "model")
    assert sorted(os.listdir(model_dir)) == ["checkpoint", "model.pth.tar-2"]
    ckpt = torch.load(osp.join(model_dir, "model.pth.tar-2"), weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["classnames"] == ["red", "green", "blue"]
    trained = weights(trainer)
    acc_trained = trainer.test()

    # A fresh trainer (other seed -> other init) loads the weights and reproduces the result.
    cfg2 = toy_cfg(toy_root, str(tmp_path / "eval"), SEED=7)
    fresh = make_trainer(cfg2)
    assert not torch.equal(weights(fresh)["2.weight"], trained["2.weight"])
    extras = fresh.load_model(out, epoch=2)
    assert extras == {"classnames": ["red", "green", "blue"]} == fresh.loaded_extras
    for k, v in trained.items():
        assert torch.equal(weights(fresh)[k], v), k
    capsys.readouterr()
    assert fresh.test() == acc_trained
    block = capsys.readouterr().out
    assert re.search(r"=> result\n\* total: 9\n\* correct: \d+\n\* accuracy: \d+\.\d{2}%\n\* error: \d+\.\d{2}%\n\* macro_f1: \d+\.\d{2}%", block)

    # epoch=None without model-best -> the last saved checkpoint.
    assert fresh.checkpoint_path(out, "model") == osp.join(model_dir, "model.pth.tar-2")


def test_eval_only_missing_checkpoint_errors(toy_root, tmp_path):
    trainer = make_trainer(toy_cfg(toy_root, str(tmp_path / "eval")))
    with pytest.raises(FileNotFoundError, match=r"model\.pth\.tar-5.*--model-dir.*--load-epoch"):
        trainer.load_model(str(tmp_path / "nowhere"), epoch=5)
    with pytest.raises(FileNotFoundError, match="--model-dir"):
        trainer.load_model("", epoch=None)
    with pytest.raises(FileNotFoundError, match="--model-dir"):
        trainer.load_model(str(tmp_path / "nowhere"))


def test_resume_after_interruption_equals_uninterrupted(toy_root, tmp_path):
    kw = dict(OPTIM__MAX_EPOCH=4)
    full = make_trainer(toy_cfg(toy_root, str(tmp_path / "full"), **kw))
    full.train()
    reference = weights(full)

    # Run 2 of 4 epochs, as if the job were killed after epoch 2 ...
    part_dir = str(tmp_path / "part")
    part = make_trainer(toy_cfg(toy_root, part_dir, **kw))
    part.max_epoch = 2
    part.before_train()
    for part.epoch in range(0, 2):
        part.run_epoch()
        part.after_epoch()
    assert not torch.equal(weights(part)["2.weight"], reference["2.weight"])
    # The epoch before the last stays as a fallback while training.
    assert sorted(os.listdir(osp.join(part_dir, "model"))) == ["checkpoint", "model.pth.tar-1", "model.pth.tar-2"]

    # ... then relaunched: a new process state (other RNG draws before training).
    torch.manual_seed(12345)
    resumed = build_trainer(toy_cfg(toy_root, part_dir, **kw))
    resumed.train()
    assert resumed.start_epoch == 2
    for k, v in reference.items():
        assert torch.equal(weights(resumed)[k], v), k
    assert resumed.sched.last_epoch == full.sched.last_epoch == 4


def test_unreadable_latest_checkpoint_resumes_from_the_one_before(toy_root, tmp_path, capsys):
    kw = dict(OPTIM__MAX_EPOCH=4)
    full = make_trainer(toy_cfg(toy_root, str(tmp_path / "full"), **kw))
    full.train()
    reference = weights(full)
    assert sorted(os.listdir(osp.join(str(tmp_path / "full"), "model"))) == ["checkpoint", "model.pth.tar-4"]

    part_dir = str(tmp_path / "part")
    part = make_trainer(toy_cfg(toy_root, part_dir, **kw))
    part.max_epoch = 3
    part.before_train()
    for part.epoch in range(0, 3):
        part.run_epoch()
        part.after_epoch()
    latest = osp.join(part_dir, "model", "model.pth.tar-3")
    with open(latest, "r+b") as f:  # a copy cut short
        f.truncate(os.path.getsize(latest) // 2)

    torch.manual_seed(999)
    resumed = build_trainer(toy_cfg(toy_root, part_dir, **kw))
    capsys.readouterr()
    resumed.train()
    out = capsys.readouterr().out
    assert "Skipping an unreadable checkpoint of epoch 3" in out and latest in out
    assert resumed.start_epoch == 2
    for k, v in reference.items():
        assert torch.equal(weights(resumed)[k], v), k


def test_no_readable_checkpoint_refuses_to_resume(toy_root, tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(osp.join(out, "model"))
    with open(osp.join(out, "model", "model.pth.tar-1"), "w") as f:
        f.write("not a checkpoint\n")
    trainer = make_trainer(toy_cfg(toy_root, out))
    with pytest.raises(CheckpointError, match="Move them away"):
        trainer.train()


def test_eval_only_on_a_truncated_checkpoint_names_the_file_and_the_fix(toy_root, tmp_path):
    out = str(tmp_path / "run")
    make_trainer(toy_cfg(toy_root, out)).train()
    path = osp.join(out, "model", "model.pth.tar-2")
    with open(path, "r+b") as f:
        f.truncate(100)
    trainer = make_trainer(toy_cfg(toy_root, str(tmp_path / "eval")))
    with pytest.raises(CheckpointError) as err:
        trainer.load_model(out, epoch=2)
    assert path in str(err.value) and "--model-dir" in str(err.value) and "truncated" in str(err.value)


def test_finished_run_is_not_retrained(toy_root, tmp_path, capsys):
    out = str(tmp_path / "run")
    make_trainer(toy_cfg(toy_root, out)).train()
    path = osp.join(out, "model", "model.pth.tar-2")
    mtime = os.stat(path).st_mtime_ns
    again = make_trainer(toy_cfg(toy_root, out))
    capsys.readouterr()
    again.train()
    assert "Training already finished" in capsys.readouterr().out
    assert os.stat(path).st_mtime_ns == mtime


def test_checkpoint_freq_and_best_val(toy_root, tmp_path):
    out = str(tmp_path / "run")
    cfg = toy_cfg(toy_root, out, OPTIM__MAX_EPOCH=3, TRAIN__CHECKPOINT_FREQ=2, TEST__FINAL_MODEL="best_val")
    trainer = make_trainer(cfg)
    trainer.train()
    files = sorted(os.listdir(osp.join(out, "model")))
    assert files == ["checkpoint", "model-best.pth.tar", "model.pth.tar-2", "model.pth.tar-3"]
    with open(osp.join(out, "model", "checkpoint")) as f:
        assert f.read().strip() == "model.pth.tar-3"  # saving model-best does not re-point it
    best = torch.load(osp.join(out, "model", "model-best.pth.tar"), weights_only=True)
    assert best["val_result"] == trainer.best_result


def test_test_only_dataset_builds_no_train_loader(toy_root, tmp_path):
    trainer = make_trainer(toy_cfg(toy_root, str(tmp_path / "o"), DATASET__NAME="EngineToyTestOnly"))
    assert trainer.train_loader_x is None and trainer.val_loader is None
    assert trainer.num_classes == 3
    with pytest.raises(RuntimeError, match="test-only"):
        trainer.train()


def test_nan_loss_is_detected(toy_root, tmp_path):
    trainer = make_trainer(toy_cfg(toy_root, str(tmp_path / "o")))
    with pytest.raises(FloatingPointError, match="infinite or NaN"):
        trainer.model_backward_and_update(torch.tensor(float("nan"), requires_grad=True))
