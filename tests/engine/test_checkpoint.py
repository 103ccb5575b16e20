"""Checkpoint files: atomic writes, weights_only loading, upstream pickles behind an opt-in."""
import os
import sys
import types

import pytest
import torch

from dassl.utils import CheckpointError, load_checkpoint, load_pretrained_weights, read_model_checkpoint, save_checkpoint


def state(epoch, value=1.0):
    return {"state_dict": {"module.w": torch.full((2,), value)}, "epoch": epoch, "optimizer": None,
            "scheduler": {"last_epoch": epoch}, "val_result": None}


def test_save_load_weights_only_and_pointer(tmp_path):
    d = str(tmp_path / "prompt_learner")
    path = save_checkpoint(state(3), d)
    assert path == os.path.join(d, "model.pth.tar-3")
    ckpt = torch.load(path, weights_only=True)
    assert list(ckpt["state_dict"]) == ["w"]  # "module." stripped
    assert load_checkpoint(path)["epoch"] == 3
    assert open(os.path.join(d, "checkpoint")).read().strip() == "model.pth.tar-3"
    save_checkpoint(state(4), d, model_name="model-best.pth.tar")
    assert open(os.path.join(d, "checkpoint")).read().strip() == "model.pth.tar-3"
    save_checkpoint(state(5), d, is_best=True)
    assert load_checkpoint(os.path.join(d, "model-best.pth.tar"))["epoch"] == 5


def test_failed_save_leaves_old_file_intact(tmp_path, monkeypatch):
    d = str(tmp_path / "m")
    path = save_checkpoint(state(1, 1.0), d)

    def broken_save(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(state(1, 2.0), d)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(2))
    assert sorted(os.listdir(d)) == ["checkpoint", "model.pth.tar-1"]  # no temp files left


def test_missing_file_and_upstream_pickle(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(str(tmp_path / "nope.pth"))

    # An upstream-like checkpoint: a pickled scheduler object of a dassl class this
    # engine does not define (it is importable only while writing the file).
    mod = types.ModuleType("dassl.optim.lr_scheduler_upstream")

    class ConstantWarmupScheduler:
        def __init__(self):
            self.warmup_epoch = 1
            self.successor = {"T_max": 10.0}

    ConstantWarmupScheduler.__module__ = mod.__name__
    ConstantWarmupScheduler.__qualname__ = "ConstantWarmupScheduler"
    mod.ConstantWarmupScheduler = ConstantWarmupScheduler
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    path = str(tmp_path / "upstream.pth.tar")
    torch.save({"state_dict": {"ctx": torch.zeros(2)}, "epoch": 10, "scheduler": ConstantWarmupScheduler()}, path)
    monkeypatch.delitem(sys.modules, mod.__name__)

    with pytest.raises(RuntimeError, match="DASSL_TRUST_CHECKPOINTS=1"):
        load_checkpoint(path)
    ckpt = load_checkpoint(path, weights_only=False)
    assert ckpt["epoch"] == 10 and torch.equal(ckpt["state_dict"]["ctx"], torch.zeros(2))
    assert type(ckpt["scheduler"]).__name__ == "ConstantWarmupScheduler"
    monkeypatch.setenv("DASSL_TRUST_CHECKPOINTS", "1")
    assert load_checkpoint(path)["epoch"] == 10


def test_load_pretrained_weights_keeps_matching(tmp_path, capsys):
    src = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 4))
    path = str(tmp_path / "w.pth")
    torch.save({"state_dict": src.state_dict()}, path)
    dst = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 5))
    load_pretrained_weights(dst, path)
    assert torch.equal(dst[0].weight, src[0].weight)
    assert not torch.equal(dst[1].bias[:4], src[1].bias)  # size mismatch: left alone
    assert "discarded" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint\n", b"PK\x03\x04truncated zip"])
def test_unreadable_files_raise_an_error_naming_the_file(tmp_path, content):
    path = tmp_path / "model.pth.tar-3"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(str(path))
    assert str(path) in str(err.value) and "Copy or download it again" in str(err.value)


def test_a_file_without_state_dict_is_not_a_trainer_checkpoint(tmp_path):
    path = str(tmp_path / "weights.pth")
    torch.save({"ctx": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=r'not a trainer checkpoint.*found \['):
        read_model_checkpoint(path)
    torch.save({"state_dict": {"ctx": torch.zeros(2)}}, path)
    assert torch.equal(read_model_checkpoint(path)["state_dict"]["ctx"], torch.zeros(2))
