"""Few-shot sampling through the real readers: upstream Dassl's samples, caches, upstream pickles."""
from __future__ import annotations

import json
import os
import pickle
import random
import shutil

import pytest

from dassl.data.datasets import Datum
from dassl.data.datasets.protocol import DatasetCache, subsample_classes
from tests.utils.dataset_cfg import load
from tests.utils.fabricate import make_eurosat_tree, upstream_pickle_bytes, write_image, write_split_json


def eurosat_with_rows(root, train_labels, val_labels=()):
    """A EuroSAT folder whose split lists image ``i`` (file ``img_i.jpg``) with the given labels."""
    def rows(labels, start):
        out = []
        for i, label in enumerate(labels, start):
            rel = f"c{label}/img_{i}.jpg"
            write_image(os.path.join(root, "eurosat", "2750", rel), label, i)
            out.append((rel, label, f"class {label}"))
        return out

    train = rows(train_labels, 0)
    val = rows(val_labels, 100)
    test = train[:1]
    write_split_json(os.path.join(root, "eurosat", "split_zhou_EuroSAT.json"), train, val, test)
    return root


def ids(items):
    return [int(os.path.basename(d.impath)[4:-4]) for d in items]


def test_spec_vector_seed1_train_then_val(tmp_path):
    eurosat_with_rows(tmp_path, [i // 10 for i in range(30)], [i // 5 for i in range(15)])
    ds = load(tmp_path, "EuroSAT", shots=4, seed=1, rng_seed=1)
    assert ids(ds.train_x) == [2, 1, 4, 0, 17, 19, 18, 15, 26, 23, 21, 28]
    assert ids(ds.val) == [100, 103, 101, 104, 108, 107, 109, 105, 114, 110, 111, 113]


def test_spec_vector_seed2_small_class_keeps_all_items(tmp_path):
    labels = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 2, 2, 2, 1]
    eurosat_with_rows(tmp_path, labels, [0, 0])
    ds = load(tmp_path, "EuroSAT", shots=4, seed=2, rng_seed=2)
    assert ids(ds.train_x) == [0, 2, 19, 4, 5, 11, 13, 15, 16, 17, 18]


def test_spec_vector_seed3_set_branch(tmp_path):
    eurosat_with_rows(tmp_path, [0] * 200, [0])
    ds = load(tmp_path, "EuroSAT", shots=16, seed=3, rng_seed=3)
    assert ids(ds.train_x) == [60, 151, 139, 33, 94, 154, 121, 160, 148, 16, 155, 3, 120, 66, 141, 59]


def test_cache_is_relative_json_and_survives_moving_the_root(tmp_path):
    root = make_eurosat_tree(tmp_path / "a", n_per_class=10)
    first = load(root, "EuroSAT", shots=2, seed=5, rng_seed=5)
    cache = tmp_path / "a" / "eurosat" / "split_fewshot" / "shot_2-seed_5.json"
    data = json.loads(cache.read_text())
    assert not any(str(tmp_path) in row[0] for rows in data["splits"].values() for row in rows)
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    moved = load(tmp_path / "b", "EuroSAT", shots=2, seed=5, rng_seed=999)  # RNG differs: cache wins
    rel = lambda items, r: [os.path.relpath(d.impath, r) for d in items]  # noqa: E731
    assert rel(moved.train_x, tmp_path / "b") == rel(first.train_x, tmp_path / "a")
    assert rel(moved.val, tmp_path / "b") == rel(first.val, tmp_path / "a")
    assert all(os.path.isfile(d.impath) for d in moved.train_x)


def test_base_and_new_share_one_cache(tmp_path):
    root = make_eurosat_tree(tmp_path, n_per_class=10)
    base = load(root, "EuroSAT", shots=2, seed=1, subsample="base", rng_seed=1)
    new = load(root, "EuroSAT", shots=2, seed=1, subsample="new", rng_seed=42)
    allc = load(root, "EuroSAT", shots=2, seed=1, rng_seed=1)
    assert [d.impath for d in allc.train_x] == [d.impath for d in base.train_x + new.train_x]


def test_unseeded_runs_are_not_cached(tmp_path):
    root = make_eurosat_tree(tmp_path, n_per_class=10)
    load(root, "EuroSAT", shots=2, seed=-1)
    assert not (tmp_path / "eurosat" / "split_fewshot").exists()


def test_read_only_data_root_writes_caches_to_cache_dir(tmp_path, monkeypatch):
    root = make_eurosat_tree(tmp_path / "data", n_per_class=10)
    dataset_dir = str(tmp_path / "data" / "eurosat")
    real_access = os.access
    # Running as root ignores permission bits, so report the data folder as read-only.
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p).startswith(dataset_dir) else real_access(p, m))
    first = load(root, "EuroSAT", shots=2, seed=7, cache_dir=tmp_path / "cache", rng_seed=7)
    assert not (tmp_path / "data" / "eurosat" / "split_fewshot").exists()
    cached = tmp_path / "cache" / "eurosat" / "split_fewshot" / "shot_2-seed_7.json"
    assert cached.is_file()
    again = load(root, "EuroSAT", shots=2, seed=7, cache_dir=tmp_path / "cache", rng_seed=0)
    assert [d.impath for d in again.train_x] == [d.impath for d in first.train_x]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_data_root_for_real(tmp_path):
    root = make_eurosat_tree(tmp_path / "data", n_per_class=10)
    dataset_dir = tmp_path / "data" / "eurosat"
    os.chmod(dataset_dir, 0o555)
    try:
        load(root, "EuroSAT", shots=2, seed=7, cache_dir=tmp_path / "cache", rng_seed=7)
    finally:
        os.chmod(dataset_dir, 0o755)
    assert (tmp_path / "cache" / "eurosat" / "split_fewshot" / "shot_2-seed_7.json").is_file()


def test_upstream_pickle_from_another_root_is_used(tmp_path):
    root = make_eurosat_tree(tmp_path / "now", n_per_class=10)
    old = "/home/someone/old_data/eurosat/2750/"
    train = [Datum(old + "Forest/Forest_3.jpg", 1, 0, "Forest"), Datum(old + "River/River_1.jpg", 8, 0, "River")]
    val = [Datum(old + "Forest/Forest_7.jpg", 1, 0, "Forest")]
    fewshot_dir = tmp_path / "now" / "eurosat" / "split_fewshot"
    fewshot_dir.mkdir()
    (fewshot_dir / "shot_16-seed_1.pkl").write_bytes(upstream_pickle_bytes({"train": train, "val": val}))
    ds = load(root, "EuroSAT", shots=16, seed=1, rng_seed=1)
    base = os.path.join(str(tmp_path / "now"), "eurosat", "2750")
    assert [d.impath for d in ds.train_x] == [os.path.join(base, "Forest/Forest_3.jpg"), os.path.join(base, "River/River_1.jpg")]
    assert [d.label for d in ds.train_x] == [1, 8] and ds.val[0].classname == "Forest"
    assert sorted(os.listdir(fewshot_dir)) == ["shot_16-seed_1.pkl"]  # nothing rewritten


def test_foreign_pickle_is_refused(tmp_path):
    root = make_eurosat_tree(tmp_path, n_per_class=10)
    fewshot_dir = tmp_path / "eurosat" / "split_fewshot"
    fewshot_dir.mkdir()
    (fewshot_dir / "shot_1-seed_1.pkl").write_bytes(pickle.dumps({"train": [random.Random()]}))
    with pytest.raises(pickle.UnpicklingError, match="Random"):
        load(root, "EuroSAT", shots=1, seed=1)


def test_subsample_label_set_comes_from_first_split():
    train = [Datum("a", 0), Datum("b", 2), Datum("c", 4)]
    test = [Datum("d", 1), Datum("e", 2), Datum("f", 4)]
    base_train, base_test = subsample_classes(train, test, subsample="base")
    assert [(d.impath, d.label) for d in base_test] == [("e", 1)]  # labels {0,2} -> {0,1}
    new_train, new_test = subsample_classes(train, test, subsample="new")
    assert [(d.impath, d.label) for d in new_test] == [("f", 0)]


def test_dataset_cache_prefers_dataset_folder_when_writable(tmp_path):
    (tmp_path / "ds").mkdir()
    cache = DatasetCache(str(tmp_path / "ds"), str(tmp_path / "c"))
    assert cache.write_path("x.json") == str(tmp_path / "ds" / "x.json")
    assert cache.find("x.json") is None
    (tmp_path / "c" / "ds").mkdir(parents=True)
    (tmp_path / "c" / "ds" / "x.json").write_text("{}")
    assert cache.find("x.json") == str(tmp_path / "c" / "ds" / "x.json")


def test_pseudo_splits_divide_the_base_labels_only():
    train = [Datum(f"/x/{i}.jpg", i % 10, 0, f"class {i % 10}") for i in range(40)]
    (pb,) = subsample_classes(train, subsample="pseudo_base")
    (pn,) = subsample_classes(train, subsample="pseudo_new")
    (base,) = subsample_classes(train, subsample="base")
    assert sorted({d.classname for d in pb}) == [f"class {i}" for i in range(3)]  # ceil(5 / 2) of the 5 base
    assert sorted({d.classname for d in pn}) == ["class 3", "class 4"]
    assert {d.classname for d in pb} | {d.classname for d in pn} == {d.classname for d in base}
    assert sorted({d.label for d in pn}) == [0, 1]  # relabelled from 0, as base/new


def test_whole_val_keeps_the_fewshot_train_sample(tmp_path):
    from tests.utils.dataset_cfg import make_cfg as dataset_cfg
    from dassl.data.datasets import DATASET_REGISTRY

    make_eurosat_tree(tmp_path, n_per_class=20)
    upstream = load(tmp_path, "EuroSAT", shots=2, seed=1, rng_seed=1)
    cfg = dataset_cfg(tmp_path, "EuroSAT", shots=2, seed=1)
    cfg.DATASET.VAL_FEWSHOT = False
    random.seed(1)
    whole = DATASET_REGISTRY.get("EuroSAT")(cfg)
    assert [d.impath for d in whole.train_x] == [d.impath for d in upstream.train_x]
    assert len(upstream.val) == 10 * 2  # min(2, 4) per class, as upstream
    assert len(whole.val) == 10 * 4  # every val image of the split (20 per class x 20%)
