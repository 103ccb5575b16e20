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


# -------------------------------------------------- upstream Dassl checkpoints, safely
def test_upstream_dassl_checkpoint_loads_without_the_opt_in(tmp_path, monkeypatch):
    from dassl.utils.torchtools import UPSTREAM_PICKLED_CLASSES
    from tests.utils.upstream_checkpoint import UPSTREAM_WARMUP_PATH, pickled_globals, save_upstream_checkpoint

    monkeypatch.delenv("DASSL_TRUST_CHECKPOINTS", raising=False)
    weights = {"prompt_learner.ctx": torch.randn(2, 8), "logit_scale": torch.tensor(4.6)}
    path = save_upstream_checkpoint(str(tmp_path), "MultiModalPromptLearner", weights, epoch=5, pickle_wrapper=True)
    # The file really pickles upstream's objects (plain weights_only refuses it).
    assert {"torch.optim.lr_scheduler.CosineAnnealingLR", "torch.optim.sgd.SGD", UPSTREAM_WARMUP_PATH,
            "collections.defaultdict"} <= pickled_globals(path)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, weights_only=True)

    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 5 and set(ckpt["state_dict"]) == set(weights)
    for key, value in weights.items():
        assert torch.equal(ckpt["state_dict"][key], value)
    # Inert stand-ins hold the pickled attributes as data; no real scheduler or optimizer is built.
    successor = ckpt["scheduler"]["successor"]
    assert successor.upstream_class == "torch.optim.lr_scheduler.CosineAnnealingLR"
    assert not isinstance(successor, torch.optim.lr_scheduler.LRScheduler)
    optimizer = successor._state["optimizer"]
    assert optimizer.upstream_class == "torch.optim.sgd.SGD" and not isinstance(optimizer, torch.optim.Optimizer)
    assert optimizer._state["defaults"]["lr"] == 0.0035
    assert ckpt["scheduler_object"].upstream_class == UPSTREAM_WARMUP_PATH
    assert UPSTREAM_WARMUP_PATH in UPSTREAM_PICKLED_CLASSES
    assert read_model_checkpoint(path)["epoch"] == 5


class _Payload:
    """Unpickling it would call ``open(marker, "w")``: a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_other_pickled_objects_are_still_refused(tmp_path, monkeypatch):
    from tests.utils.upstream_checkpoint import upstream_scheduler

    monkeypatch.delenv("DASSL_TRUST_CHECKPOINTS", raising=False)
    marker = tmp_path / "executed"
    path = str(tmp_path / "model.pth.tar-5")
    scheduler = upstream_scheduler([torch.nn.Parameter(torch.zeros(2))])
    torch.save({"state_dict": {"ctx": torch.zeros(2)}, "epoch": 5, "scheduler": scheduler.state_dict(),
                "extra": _Payload(str(marker))}, path)
    assert not marker.exists()  # pickling does not call open(); unpickling would
    with pytest.raises(CheckpointError, match="DASSL_TRUST_CHECKPOINTS=1") as err:
        load_checkpoint(path)
    assert "io.open" in str(err.value)  # the message names the refused global
    assert not marker.exists()  # refused before anything ran
