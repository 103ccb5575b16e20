"""ImageNet: sorted listing, the relative index cache, upstream preprocessed.pkl, few-shot."""
from __future__ import annotations

import json
import os
import shutil

from dassl.data.datasets import Datum
from tests.utils.dataset_cfg import load
from tests.utils.fabricate import imagenet_wnids, jpeg_bytes, make_imagenet_tree, upstream_pickle_bytes


def test_full_imagenet_classes_and_base_new(tmp_path):
    from datasets.imagenet import SHIPPED_CLASSNAMES, read_classnames

    make_imagenet_tree(tmp_path, n_train=1, n_val=1, empty=True)
    names = read_classnames(SHIPPED_CLASSNAMES)
    ds = load(tmp_path, "ImageNet")
    assert ds.num_classes == 1000 and ds.classnames == [names[w] for w in sorted(names)]
    assert ds.val is ds.test or [d.impath for d in ds.val] == [d.impath for d in ds.test]
    base = load(tmp_path, "ImageNet", subsample="base")
    new = load(tmp_path, "ImageNet", subsample="new")
    assert (base.num_classes, new.num_classes) == (500, 500)


def test_images_are_listed_sorted_and_index_is_relative(tmp_path):
    make_imagenet_tree(tmp_path, n_train=3, n_val=1, n_classes=5)
    ds = load(tmp_path, "ImageNet")
    first_class = [d.impath for d in ds.train_x if d.label == 0]
    assert first_class == sorted(first_class) and len(first_class) == 3
    index_path = tmp_path / "imagenet" / "sempt_index.json"
    assert str(tmp_path) not in index_path.read_text()
    assert json.loads(index_path.read_text())["train"][0][1] == [os.path.basename(p) for p in first_class]


def test_cached_index_is_used_and_survives_a_move(tmp_path):
    make_imagenet_tree(tmp_path / "a", n_train=2, n_val=1, n_classes=5)
    first = load(tmp_path / "a", "ImageNet")
    wnid = sorted(imagenet_wnids()[:5])[0]
    # A file added after indexing is not seen: the cached listing is what is read.
    (tmp_path / "a" / "imagenet" / "images" / "train" / wnid / "zzz.JPEG").write_bytes(jpeg_bytes(0))
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    moved = load(tmp_path / "b", "ImageNet")
    assert len(moved.train_x) == len(first.train_x)
    assert moved.train_x[0].impath == first.train_x[0].impath.replace(str(tmp_path / "a"), str(tmp_path / "b"))
    assert os.path.isfile(moved.train_x[0].impath)


def test_own_classnames_file_wins(tmp_path):
    make_imagenet_tree(tmp_path, n_train=1, n_val=1, n_classes=3)
    wnids = sorted(imagenet_wnids()[:3])
    (tmp_path / "imagenet" / "classnames.txt").write_text("".join(f"{w} thing {i}\n" for i, w in enumerate(wnids)))
    assert load(tmp_path, "ImageNet").classnames == ["thing 0", "thing 1", "thing 2"]


def test_fewshot_samples_train_only(tmp_path):
    make_imagenet_tree(tmp_path, n_train=4, n_val=2, n_classes=5)
    ds = load(tmp_path, "ImageNet", shots=2, seed=1, rng_seed=1)
    assert len(ds.train_x) == 10 and len(ds.test) == 10
    data = json.loads((tmp_path / "imagenet" / "split_fewshot" / "shot_2-seed_1.json").read_text())
    assert list(data["splits"]) == ["train"]


def test_upstream_preprocessed_pickle_is_used(tmp_path):
    make_imagenet_tree(tmp_path, n_train=2, n_val=1, n_classes=3)
    old = "/mnt/old/imagenet/images/"
    wnid = sorted(imagenet_wnids()[:3])[1]
    train = [Datum(old + f"train/{wnid}/{wnid}_1.JPEG", 7, 0, "custom name")]
    test = [Datum(old + f"val/{wnid}/x.JPEG", 7, 0, "custom name")]
    (tmp_path / "imagenet" / "preprocessed.pkl").write_bytes(upstream_pickle_bytes({"train": train, "test": test}))
    ds = load(tmp_path, "ImageNet")
    assert [d.impath for d in ds.train_x] == [str(tmp_path / "imagenet" / "images" / "train" / wnid / f"{wnid}_1.JPEG")]
    assert ds.lab2cname[7] == "custom name" and ds.num_classes == 8
    assert not (tmp_path / "imagenet" / "sempt_index.json").exists()
