"""Faults found by trying (issue 22): a full disk, file modes, leftovers of kill -9, damaged
input files. Each test fails without its fix."""
import errno
import json
import os
import os.path as osp
import stat
import subprocess
import sys

import pytest
import torch

from dassl.config import ConfigError, get_cfg_default
from dassl.data.datasets.protocol import DatasetCache, FewShotCache, read_split, save_split
from dassl.engine import build_trainer
from dassl.utils import atomic_io, load_checkpoint, save_checkpoint
from dassl.utils.atomic_io import DiskFullError, atomic_write_bytes, remove_temporaries, temporary_path
from tests.engine.engine_toy import toy_cfg
from tests.utils.full_disk import FullDisk, fill_disk


def state(epoch, value=1.0):
    return {"state_dict": {"w": torch.full((2,), value)}, "epoch": epoch, "optimizer": None,
            "scheduler": None, "val_result": None}


@pytest.fixture
def disk_full_after(monkeypatch):
    return lambda room: fill_disk(monkeypatch, room)


# ------------------------------------------------------------------------------- full disk
def test_checkpoint_on_a_full_disk_says_so_and_keeps_the_previous_one(tmp_path, disk_full_after):
    d = str(tmp_path / "prompt_learner")
    save_checkpoint(state(1, 1.0), d)
    disk_full_after(600)  # torch.save writes its header, then fails: "enforce fail ... unexpected pos"
    with pytest.raises(DiskFullError) as info:
        save_checkpoint(state(2, 2.0), d)
    message = str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert f'The disk holding "{d}" is full' in message and "Nothing was lost" in message
    assert "enforce fail" not in message
    assert sorted(os.listdir(d)) == ["checkpoint", "model.pth.tar-1"]  # no temporary file left
    assert torch.equal(load_checkpoint(osp.join(d, "model.pth.tar-1"))["state_dict"]["w"], torch.ones(2))


def test_training_on_a_full_disk_stops_with_the_epoch_to_resume_from(toy_root, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    trainer = build_trainer(toy_cfg(toy_root, out, OPTIM__MAX_EPOCH=3))
    real_open_new = atomic_io._open_new
    saves = []

    def open_new(path):
        saves.append(path)
        if "model.pth.tar-2" in path:  # the disk fills up during epoch 2's checkpoint
            open(path, "wb").close()
            return FullDisk(100)
        return real_open_new(path)

    monkeypatch.setattr(atomic_io, "_open_new", open_new)
    with pytest.raises(DiskFullError, match="end of epoch 2; running the same command again resumes from epoch 1"):
        trainer.train()
    model_dir = osp.join(out, "model")
    assert sorted(os.listdir(model_dir)) == ["checkpoint", "model.pth.tar-1"]

    monkeypatch.setattr(atomic_io, "_open_new", real_open_new)
    resumed = build_trainer(toy_cfg(toy_root, out, OPTIM__MAX_EPOCH=3))
    resumed.train()
    assert resumed.start_epoch == 1


# ------------------------------------------------------------------------------ file modes
@pytest.fixture
def umask_002():
    previous = os.umask(0o002)
    yield 0o664
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_checkpoints_and_split_and_few_shot_files_follow_the_umask(tmp_path, umask_002):
    path = save_checkpoint(state(1), str(tmp_path / "model"), is_best=True)
    assert mode(path) == umask_002
    assert mode(osp.join(tmp_path, "model", "checkpoint")) == umask_002
    assert mode(osp.join(tmp_path, "model", "model-best.pth.tar")) == umask_002

    from dassl.data.datasets.base_dataset import Datum

    dataset_dir = tmp_path / "data" / "toy"
    dataset_dir.mkdir(parents=True)
    items = [Datum(str(dataset_dir / "a.png"), 0, 0, "a")]
    written = FewShotCache(DatasetCache(str(dataset_dir))).save(1, 1, {"train": items})
    assert mode(written) == umask_002
    save_split(items, items, items, str(dataset_dir / "split.json"), str(dataset_dir))
    assert mode(dataset_dir / "split.json") == umask_002



def test_one_atomic_write_helper():
    """Every writer of checkpoints and caches goes through dassl.utils.atomic_io (no mkstemp copies)."""
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    found = subprocess.run(["git", "grep", "-l", "-e", "mkstemp(", "-e", "NamedTemporaryFile(", "--", "*.py", ":!tests"], cwd=repo,
                           capture_output=True, text=True)
    assert found.stdout.split() == []


# --------------------------------------------------------------------- leftovers of kill -9
def test_temporaries_of_dead_writers_are_removed_but_not_those_of_live_ones(tmp_path):
    d = str(tmp_path)
    mine = temporary_path(osp.join(d, "model.pth.tar-3"))  # this process, not writing it any more
    open(mine, "wb").close()
    old_style = osp.join(d, ".model.pth.tar-2.k3j_x9qa.tmp")  # tempfile.mkstemp's name (earlier versions)
    open(old_style, "wb").close()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        other = osp.join(d, f".model.pth.tar-4.{live.pid}-0123abcd.tmp")
        open(other, "wb").close()
        atomic_write_bytes(osp.join(d, "checkpoint"), b"x\n")
        assert sorted(remove_temporaries(d)) == sorted([mine, old_style])
        assert sorted(os.listdir(d)) == sorted(["checkpoint", osp.basename(other)])
    finally:
        live.kill()
        live.wait()
    assert remove_temporaries(d) == [other]  # its writer is gone now


def test_a_restarted_run_removes_temporaries_and_a_stale_fallback(toy_root, tmp_path):
    import shutil

    out = str(tmp_path / "out")
    build_trainer(toy_cfg(toy_root, out, OPTIM__MAX_EPOCH=3)).train()
    model_dir = osp.join(out, "model")
    last = osp.join(model_dir, "model.pth.tar-3")
    # What kill -9 leaves: a whole checkpoint in a temporary file (killed while writing epoch 4),
    # and epoch files older than the fallback (killed between saving an epoch and dropping one).
    shutil.copy(last, temporary_path(osp.join(model_dir, "model.pth.tar-4")))
    for n in (1, 2):
        shutil.copy(last, osp.join(model_dir, f"model.pth.tar-{n}"))
    # Resumed with more epochs: 3 is the last, 2 its fallback; the rest goes at the start.
    longer = build_trainer(toy_cfg(toy_root, out, OPTIM__MAX_EPOCH=5))
    longer.before_train()
    assert longer.start_epoch == 3
    assert sorted(os.listdir(model_dir)) == ["checkpoint", "model.pth.tar-2", "model.pth.tar-3"]
    longer.close_writer()

    # After a run finishes only its last epoch stays, whatever a kill left before.
    shutil.copy(last, temporary_path(osp.join(model_dir, "model.pth.tar-5")))
    build_trainer(toy_cfg(toy_root, out, OPTIM__MAX_EPOCH=5)).train()
    assert sorted(os.listdir(model_dir)) == ["checkpoint", "model.pth.tar-5"]


def test_kill_between_save_and_drop_leaves_no_stale_fallback_after_the_run(toy_root, tmp_path):
    out = str(tmp_path / "out")
    build_trainer(toy_cfg(toy_root, out, OPTIM__MAX_EPOCH=3)).train()
    model_dir = osp.join(out, "model")
    import shutil

    for n in (1, 2):  # as if killed right after saving epoch 3, before dropping 1 and 2
        shutil.copy(osp.join(model_dir, "model.pth.tar-3"), osp.join(model_dir, f"model.pth.tar-{n}"))
    build_trainer(toy_cfg(toy_root, out, OPTIM__MAX_EPOCH=3)).train()  # resumes at 3: nothing to train
    assert sorted(os.listdir(model_dir)) == ["checkpoint", "model.pth.tar-3"]


def test_checkpoint_freq_files_survive_the_cleaning(toy_root, tmp_path):
    out = str(tmp_path / "out")
    build_trainer(toy_cfg(toy_root, out, OPTIM__MAX_EPOCH=3, TRAIN__CHECKPOINT_FREQ=1)).train()
    assert sorted(os.listdir(osp.join(out, "model"))) == ["checkpoint"] + [f"model.pth.tar-{n}" for n in (1, 2, 3)]


# ------------------------------------------------------------------------- damaged inputs
def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("OPTIM:\n  NAME: sgd\n  LR: 0.002\n MAX_EPOCH: 5\n")
    with pytest.raises(ConfigError) as info:
        get_cfg_default().merge_from_file(str(bad))
    message = str(info.value)
    assert f'"{bad}" is not valid YAML' in message and "line 4" in message and "Fix that line" in message
    assert len(message.splitlines()) == 1


def test_a_non_utf8_config_names_the_file(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("OPTIM:\n  NAME: sgd # caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r'latin1.yaml" is not UTF-8 text.*save it again as UTF-8'):
        get_cfg_default().merge_from_file(str(bad))


def test_a_flag_among_the_config_overrides_is_named_as_such():
    with pytest.raises(ConfigError, match='"--load-epoch" looks like a command-line flag.*put the flags before'):
        get_cfg_default().merge_from_list(["OPTIM.LR", "0.1", "--load-epoch", "5"])


def test_a_truncated_split_file_names_the_file_and_the_fix(tmp_path):
    split = tmp_path / "split_zhou_Toy.json"
    split.write_text('{"train": [["a.png", 0, "a"], ["b.pn')
    with pytest.raises(ValueError) as info:
        read_split(str(split), str(tmp_path))
    message = str(info.value)
    assert f"{split} is not valid JSON (truncated or damaged" in message and "download-splits" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_truncated_few_shot_file_names_the_file_and_the_fix(tmp_path):
    dataset_dir = tmp_path / "toy"
    (dataset_dir / "split_fewshot").mkdir(parents=True)
    path = dataset_dir / "split_fewshot" / "shot_1-seed_1.json"
    path.write_text(json.dumps({"format": "sempt-fewshot", "version": 1, "splits": {"train": []}})[:30])
    with pytest.raises(ValueError, match=r"shot_1-seed_1.json is not valid JSON .* Delete it: the few-shot split is "
                                         r"sampled again"):
        FewShotCache(DatasetCache(str(dataset_dir))).load(1, 1)


def test_batch_size_zero_names_the_key(toy_root, tmp_path):
    with pytest.raises(ValueError, match=r"DATALOADER.TRAIN_X.BATCH_SIZE is 0; a batch size must be at least 1"):
        build_trainer(toy_cfg(toy_root, str(tmp_path / "out"), DATALOADER__TRAIN_X__BATCH_SIZE=0))
