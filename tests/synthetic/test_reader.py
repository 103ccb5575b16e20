"""The ``Synthetic`` reader reads the generated world with the CoOp protocol; ``train.py``
generates the world on first use; the reader alone names the command that does."""
from __future__ import annotations

import os

import pytest

import train
from dassl.data.datasets import DATASET_REGISTRY
from dassl.data.datasets.protocol import DatasetNotFoundError
from tests.utils.dataset_cfg import load, make_cfg
from tools.synthetic import generate
from tools.synthetic import world as sw

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture()
def small_world(monkeypatch):
    # Fewer images per class keep generation fast; 4 train images allow 2-shot sampling.
    monkeypatch.setattr(generate, "N_TRAIN", 4)
    monkeypatch.setattr(generate, "N_VAL", 2)
    monkeypatch.setattr(generate, "N_TEST", 1)


def test_registered():
    assert "Synthetic" in DATASET_REGISTRY


def test_reader_reads_the_generated_world_base_and_new(tmp_path, small_world):
    world = sw.build_world()
    generate.ensure_world(str(tmp_path))
    base = load(tmp_path, "Synthetic", shots=2, subsample="base", seed=1, rng_seed=1)
    assert os.path.isfile(tmp_path / "synthetic" / generate.SPLIT_FILE)
    assert base.classnames == [c.name for c in world.base]
    assert len(base.train_x) == 20 * 2 and len(base.test) == 20 * 1
    assert all(os.path.isfile(d.impath) for d in base.train_x)

    new = load(tmp_path, "Synthetic", shots=2, subsample="new", seed=1, rng_seed=1)
    assert new.classnames == [c.name for c in world.novel]
    assert sorted({d.label for d in new.test}) == list(range(20))

    full = load(tmp_path, "Synthetic", shots=-1, subsample="all")
    assert full.num_classes == 40 and len(full.train_x) == 40 * 4 and len(full.val) == 40 * 2


def test_reader_without_the_world_names_the_command(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="the synthetic world is not generated") as info:
        load(tmp_path, "Synthetic")
    assert f"python -m tools.synthetic.generate --root {tmp_path}" in str(info.value)
    assert os.listdir(tmp_path) == []  # the reader writes nothing


def test_train_py_generates_the_world_on_first_use(tmp_path, small_world):
    out = tmp_path / "out"
    train.main(train.build_parser().parse_args([
        "--root", str(tmp_path / "data"), "--trainer", "CoOp", "--seed", "1", "--output-dir", str(out), "--no-train",
        "--dataset-config-file", os.path.join(REPO_ROOT, "configs/datasets/synthetic.yaml"),
        "--config-file", os.path.join(REPO_ROOT, "configs/trainers/CoOp/synthetic.yaml"),
        "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "FEATURE_CACHE.ENABLED", "False",
    ]))
    assert os.path.isfile(tmp_path / "data" / "synthetic" / generate.SPLIT_FILE)
    assert "Reading split from" in (out / "log.txt").read_text()


def test_a_foreign_world_is_refused_before_reading(tmp_path, small_world):
    (tmp_path / "synthetic").mkdir()
    with pytest.raises(RuntimeError, match="delete the folder"):
        train.prepare_dataset(make_cfg(tmp_path, "Synthetic"))


def test_other_datasets_are_not_generated(tmp_path):
    train.prepare_dataset(make_cfg(tmp_path, "EuroSAT"))
    assert os.listdir(tmp_path) == []
