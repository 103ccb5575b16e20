"""Few-shot samples as upstream Dassl draws them, upstream pickles, transforms, loaders."""
import io
import pickle
import random

import pytest
import torch

from dassl.config import get_cfg_default
from dassl.data import DataManager, DatasetWrapper, build_data_loader
from dassl.data.datasets import DatasetBase, Datum
from dassl.data.transforms import build_transform
from dassl.utils import set_random_seed

from tests.engine.engine_toy import toy_cfg


def items(labels, start=0):
    return [Datum(impath=str(start + i), label=lab, classname=f"c{lab}") for i, lab in enumerate(labels)]


def ids(data):
    return [int(d.impath) for d in data]


def test_fewshot_spec_vectors():
    ds = DatasetBase(train_x=items([0]))
    random.seed(1)
    train = ds.generate_fewshot_dataset(items([i // 10 for i in range(30)]), num_shots=4)
    val = ds.generate_fewshot_dataset(items([i // 5 for i in range(15)], start=100), num_shots=4)
    assert ids(train) == [2, 1, 4, 0, 17, 19, 18, 15, 26, 23, 21, 28]
    assert ids(val) == [100, 103, 101, 104, 108, 107, 109, 105, 114, 110, 111, 113]

    random.seed(2)
    labels = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 2, 2, 2, 1]
    assert ids(ds.generate_fewshot_dataset(items(labels), num_shots=4)) == [0, 2, 19, 4, 5, 11, 13, 15, 16, 17, 18]

    random.seed(3)
    assert ids(ds.generate_fewshot_dataset(items([0] * 200), num_shots=16)) == [
        60, 151, 139, 33, 94, 154, 121, 160, 148, 16, 155, 3, 120, 66, 141, 59
    ]


class UpstreamDatum:
    """Upstream Dassl's Datum shape: plain attributes in ``__dict__``."""

    def __init__(self, impath, label, domain, classname):
        self._impath, self._label, self._domain, self._classname = impath, label, domain, classname


def test_reads_upstream_fewshot_pickle(monkeypatch):
    import dassl.data.datasets.base_dataset as bd

    # Pickle upstream-shaped objects under the real class path, as upstream wrote them.
    UpstreamDatum.__module__, UpstreamDatum.__qualname__ = bd.__name__, "Datum"
    with monkeypatch.context() as m:
        m.setattr(bd, "Datum", UpstreamDatum)
        data = {"train": [UpstreamDatum("/data/a.jpg", 3, 0, "cat")], "val": [UpstreamDatum("/data/b.jpg", 1, 0, "dog")]}
        blob = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    assert b"dassl.data.datasets.base_dataset" in blob and b"_classname" in blob
    loaded = pickle.load(io.BytesIO(blob))
    d = loaded["train"][0]
    assert type(d) is Datum
    assert (d.impath, d.label, d.domain, d.classname) == ("/data/a.jpg", 3, 0, "cat")
    assert loaded["val"][0] == Datum("/data/b.jpg", 1, 0, "dog")


def test_transform_print_lines(capsys):
    cfg = get_cfg_default()
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    cfg.INPUT.INTERPOLATION = "bicubic"
    build_transform(cfg, is_train=True)
    build_transform(cfg, is_train=False)
    out = capsys.readouterr().out.splitlines()
    assert out[:5] == [
        "Building transform_train",
        "+ random resized crop (size=(224, 224), scale=(0.08, 1.0))",
        "+ random flip",
        "+ to torch tensor of range [0, 1]",
        "+ normalization (mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])",
    ]
    assert out[5:9] == [
        "Building transform_test", "+ resize the smaller edge to 224", "+ 224x224 center crop",
        "+ to torch tensor of range [0, 1]",
    ]
    cfg.INPUT.TRANSFORMS = ("random_flip", "mixup")
    with pytest.raises(ValueError, match='"mixup"'):
        build_transform(cfg, is_train=True)


def _epoch_order(root, tmp_path, seed):
    set_random_seed(seed)
    dm = DataManager(toy_cfg(root, str(tmp_path)))
    return [b["index"].tolist() for _ in range(2) for b in dm.train_loader_x], dm


def test_loader_is_reproducible_and_summary(toy_root, tmp_path, capsys):
    a, dm = _epoch_order(toy_root, tmp_path, 1)
    b, _ = _epoch_order(toy_root, tmp_path, 1)
    c, _ = _epoch_order(toy_root, tmp_path, 2)
    assert a == b and a != c
    assert a[:4] != a[4:]  # each epoch reshuffles
    assert len(dm.train_loader_x) == 4  # 18 images, batch 4, drop_last
    out = capsys.readouterr().out
    for row in ("Dataset    EngineToyDataset", "# classes  3", "# train_x  18", "# val      9", "# test     9"):
        assert row in out
    # Evaluating does not consume the global RNG that training depends on.
    state = torch.get_rng_state()
    list(dm.test_loader)
    assert torch.equal(state, torch.get_rng_state())


def test_missing_image_names_path(tmp_path):
    cfg = get_cfg_default()
    wrapper = DatasetWrapper(cfg, [Datum(str(tmp_path / "gone.jpg"), 0)])
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        wrapper[0]
    with pytest.raises(ValueError, match="empty"):
        build_data_loader(cfg, data_source=[])
