"""The shipped attribute files stay valid, and every ImageNet-family class finds its entry."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.utils.dataset_cfg import load
from tests.utils.fabricate import (
    imagenet_wnids,
    make_imagenet_a_tree,
    make_imagenet_r_tree,
    make_imagenet_sketch_tree,
    make_imagenet_tree,
    make_imagenetv2_tree,
)
from tools.generate_attributes import main as generate_attributes
from trainers.parts.attributes import find_attribute_file, load_attribute_file, match_classes

REPO = Path(__file__).resolve().parents[2]
DATASETS = ["caltech101", "dtd", "eurosat", "fgvc_aircraft", "food101", "imagenet", "oxford_flowers",
            "oxford_pets", "stanford_cars", "sun397", "ucf101"]
REPEATED = {"n03773504": "missile", "n04008634": "missile", "n04355933": "sunglasses", "n04356056": "sunglasses"}


@pytest.mark.parametrize("dataset", DATASETS)
def test_shipped_file_passes_check(dataset, capsys):
    path = REPO / "attribute_data" / f"{dataset}.json"
    assert path.is_file(), f"attribute_data/{dataset}.json is missing"
    assert generate_attributes(["--check", str(path), "--dataset", dataset]) == 0, capsys.readouterr().out
    generator = load_attribute_file(path).generator
    assert {"procedure", "model", "date", "prompt_sha256"} <= set(generator)


@pytest.fixture(scope="module")
def imagenet_entries():
    attr_file = load_attribute_file(find_attribute_file("ImageNet"))
    return attr_file, {entry.id: entry for entry in attr_file.classes}


def test_repeated_imagenet_names_describe_their_own_synset(imagenet_entries):
    _, by_id = imagenet_entries
    for wnid, name in REPEATED.items():
        assert by_id[wnid].name == name
    rocket = " ".join(s for v in by_id["n03773504"].descriptions.values() for s in v)
    projectile = " ".join(s for v in by_id["n04008634"].descriptions.values() for s in v)
    lens = " ".join(s for v in by_id["n04355933"].descriptions.values() for s in v)
    spectacles = " ".join(s for v in by_id["n04356056"].descriptions.values() for s in v)
    assert rocket != projectile and lens != spectacles
    assert "lens" in lens.lower() and ("lens" in spectacles.lower() or "frame" in spectacles.lower())


@pytest.mark.parametrize(
    "reader, fabricate",
    [
        ("ImageNetV2", make_imagenetv2_tree),
        ("ImageNetSketch", make_imagenet_sketch_tree),
        ("ImageNetA", make_imagenet_a_tree),
        ("ImageNetR", make_imagenet_r_tree),
    ],
)
def test_every_variant_class_resolves_to_exactly_one_entry(reader, fabricate, tmp_path, imagenet_entries):
    attr_file, _ = imagenet_entries
    dataset = load(fabricate(tmp_path), reader)
    entries = match_classes(attr_file, dataset.classnames, wnids=dataset.wnids)
    assert len(entries) == len(dataset.classnames) == len(dataset.wnids)
    assert [e.id for e in entries] == dataset.wnids  # the entry of each class is its own synset
    assert len({id(e) for e in entries}) == len(entries)  # no entry serves two classes


@pytest.mark.parametrize("subsample", ["all", "base", "new"])
def test_imagenet_classes_match_by_name_in_label_order(subsample, tmp_path, imagenet_entries):
    """ImageNet itself (train/test, base/new halves) matches by name; repeats go by position."""
    attr_file, _ = imagenet_entries
    dataset = load(make_imagenet_tree(tmp_path, n_train=1, n_val=1, empty=True), "ImageNet", subsample=subsample)
    wnids = sorted(imagenet_wnids())
    expected = {"all": wnids, "base": wnids[:500], "new": wnids[500:]}[subsample]
    entries = match_classes(attr_file, dataset.classnames)
    assert [e.id for e in entries] == expected
