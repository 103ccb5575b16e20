"""The ``Synthetic`` reader: generates the world on first use, then the CoOp protocol."""
from __future__ import annotations

import os

import pytest

from dassl.data.datasets import DATASET_REGISTRY
from datasets import synthetic_world as sw
from tests.utils.dataset_cfg import load


@pytest.fixture()
def small_world(monkeypatch):
    # Fewer images per class keep generation fast; 4 train images allow 2-shot sampling.
    monkeypatch.setattr(sw, "N_TRAIN", 4)
    monkeypatch.setattr(sw, "N_VAL", 2)
    monkeypatch.setattr(sw, "N_TEST", 1)


def test_registered():
    assert "Synthetic" in DATASET_REGISTRY


def test_reader_generates_then_reads_base_and_new(tmp_path, small_world):
    world = sw.build_world()
    base = load(tmp_path, "Synthetic", shots=2, subsample="base", seed=1, rng_seed=1)
    assert os.path.isfile(tmp_path / "synthetic" / sw.SPLIT_FILE)
    assert base.classnames == [c.name for c in world.base]
    assert len(base.train_x) == 20 * 2 and len(base.test) == 20 * 1
    assert all(os.path.isfile(d.impath) for d in base.train_x)

    new = load(tmp_path, "Synthetic", shots=2, subsample="new", seed=1, rng_seed=1)
    assert new.classnames == [c.name for c in world.novel]
    assert sorted({d.label for d in new.test}) == list(range(20))

    full = load(tmp_path, "Synthetic", shots=-1, subsample="all")
    assert full.num_classes == 40 and len(full.train_x) == 40 * 4 and len(full.val) == 40 * 2


def test_reader_refuses_a_foreign_world(tmp_path, small_world):
    (tmp_path / "synthetic").mkdir()
    with pytest.raises(RuntimeError, match="delete the folder"):
        load(tmp_path, "Synthetic")
