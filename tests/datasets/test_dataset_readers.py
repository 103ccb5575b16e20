"""Every reader on a fabricated tree: class names, label order, base/new counts, creation."""
from __future__ import annotations

import json
import os

import pytest

from tests.utils.dataset_cfg import READERS, load
from tests.utils.fabricate import FABRICATORS, read_classlist

# (#classes, base, new) of the CoOp protocol: base = the first ceil(n/2) labels
COOP_COUNTS = {
    "caltech101": (100, 50, 50),
    "oxford_pets": (37, 19, 18),
    "stanford_cars": (196, 98, 98),
    "oxford_flowers": (102, 51, 51),
    "food101": (101, 51, 50),
    "fgvc_aircraft": (100, 50, 50),
    "sun397": (397, 199, 198),
    "dtd": (47, 24, 23),
    "eurosat": (10, 5, 5),
    "ucf101": (101, 51, 50),
}
# datasets that can build their split from the raw download when the json is missing
CREATABLE = ["eurosat", "dtd", "food101", "caltech101", "oxford_pets", "stanford_cars",
             "oxford_flowers", "sun397", "ucf101"]


def prompt_names(dataset) -> list:
    return [c.replace("_", " ") for c in dataset.classnames]


@pytest.fixture(scope="module")
def coop_root(tmp_path_factory):
    """One data root holding all ten CoOp datasets with official-style split files."""
    root = tmp_path_factory.mktemp("data")
    for name in COOP_COUNTS:
        FABRICATORS[name](root)
    return root


@pytest.mark.parametrize("config", sorted(COOP_COUNTS))
def test_class_names_in_label_order(coop_root, config):
    dataset = load(coop_root, READERS[config])
    assert prompt_names(dataset) == read_classlist(config)
    assert dataset.num_classes == COOP_COUNTS[config][0]
    assert dataset.lab2cname == dict(enumerate(dataset.classnames))
    for split in (dataset.train_x, dataset.val, dataset.test):
        assert split and all(os.path.isfile(item.impath) for item in split[:5])


@pytest.mark.parametrize("config", sorted(COOP_COUNTS))
def test_base_new_counts(coop_root, config):
    n, n_base, n_new = COOP_COUNTS[config]
    names = read_classlist(config)
    base = load(coop_root, READERS[config], subsample="base")
    new = load(coop_root, READERS[config], subsample="new")
    assert (base.num_classes, new.num_classes) == (n_base, n_new)
    assert prompt_names(base) == names[:n_base]
    assert prompt_names(new) == names[n_base:]
    # every split is relabelled from 0 and holds only its half of the classes
    assert {item.label for item in new.test} == set(range(n_new))


@pytest.mark.parametrize("config", CREATABLE)
def test_split_creation_when_json_missing(tmp_path, config):
    FABRICATORS[config](tmp_path, with_split=False)
    dataset = load(tmp_path, READERS[config], rng_seed=0)
    # Created label order follows the raw files (e.g. sorted folders), which is not
    # always the published split's order (DTD's is not alphabetical): compare sets.
    assert sorted(prompt_names(dataset)) == sorted(read_classlist(config))
    assert dataset.num_classes == COOP_COUNTS[config][0]
    split_file = os.path.join(dataset.dataset_dir, type(dataset).split_filename)
    with open(split_file) as f:
        split = json.load(f)
    n_train = len(dataset.train_x)
    assert len(split["train"]) == n_train
    # relative paths, no root in the file
    assert not any(str(tmp_path) in row[0] for row in split["train"] + split["test"])
    again = load(tmp_path, READERS[config], rng_seed=123)  # now read from the written file
    assert [d.impath for d in again.train_x] == [d.impath for d in dataset.train_x]


def test_split_creation_fixes_caltech_names(tmp_path):
    FABRICATORS["caltech101"](tmp_path, with_split=False)
    dataset = load(tmp_path, "Caltech101", rng_seed=0)
    assert dataset.classnames[:3] == ["face", "leopard", "motorbike"]
    assert "BACKGROUND_Google" not in dataset.classnames and "Faces_easy" not in dataset.classnames


def test_name_derivations():
    from datasets.stanford_cars import year_first
    from datasets.sun397 import scene_name
    from datasets.ucf101 import split_camel_case

    assert scene_name("a/apartment_building/outdoor") == "outdoor apartment_building"
    assert scene_name("/a/abbey") == "abbey"
    assert split_camel_case("ApplyEyeMakeup") == "Apply_Eye_Makeup"
    assert year_first("Tesla Model S Sedan 2012") == "2012 Tesla Model S Sedan"


def test_stanford_cars_paths_are_relative_to_dataset_dir(coop_root):
    dataset = load(coop_root, "StanfordCars")
    assert dataset.train_x[0].impath.startswith(os.path.join(str(coop_root), "stanford_cars", "cars_train") + os.sep)


def test_fgvc_reads_official_txt_splits(coop_root):
    dataset = load(coop_root, "FGVCAircraft")
    assert len(dataset.train_x) == len(dataset.val) == 100
    assert "F-16A/B" in dataset.classnames


def test_oxford_pets_breeds_are_lowercase(tmp_path):
    FABRICATORS["oxford_pets"](tmp_path, with_split=False)
    dataset = load(tmp_path, "OxfordPets", rng_seed=0)
    assert dataset.classnames[0] == "abyssinian"
    assert os.path.basename(dataset.test[0].impath).startswith("Abyssinian_")


@pytest.mark.parametrize("config,n", [("imagenetv2", 1000), ("imagenet_sketch", 1000),
                                       ("imagenet_a", 200), ("imagenet_r", 200)])
def test_test_only_variants(tmp_path, config, n):
    from datasets.imagenet import SHIPPED_CLASSNAMES, read_classnames

    FABRICATORS[config](tmp_path)
    dataset = load(tmp_path, READERS[config], shots=16, subsample="base")  # both ignored
    assert dataset.is_test_only and dataset.train_x is None and dataset.val is None
    assert dataset.num_classes == n and len(dataset.test) == n
    names = read_classnames(SHIPPED_CLASSNAMES)
    if n == 200:
        wnids_file = {"imagenet_a": "imagenet_a_wnids.txt", "imagenet_r": "imagenet_r_wnids.txt"}[config]
        with open(os.path.join("datasets", wnids_file)) as f:
            wnids = sorted(f.read().split())
        assert dataset.classnames == [names[w] for w in wnids]
        assert all(os.path.basename(os.path.dirname(d.impath)) == wnids[d.label] for d in dataset.test)
    else:
        assert dataset.classnames == (list(names.values()) if config == "imagenetv2"
                                      else [names[w] for w in sorted(names)])


def test_imagenet_a_missing_class_folder_is_named(tmp_path):
    import shutil

    FABRICATORS["imagenet_a"](tmp_path)
    victim = sorted(os.listdir(tmp_path / "imagenet-adversarial" / "imagenet-a"))[5]
    shutil.rmtree(tmp_path / "imagenet-adversarial" / "imagenet-a" / victim)
    with pytest.raises(FileNotFoundError, match=victim):
        load(tmp_path, "ImageNetA")


def test_missing_dataset_folder_error_names_path_and_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load(tmp_path, "EuroSAT")
    msg = str(err.value)
    assert os.path.join(str(tmp_path), "eurosat") in msg
    assert "EuroSAT.zip" in msg and "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o" in msg
    assert "python -m tools.data check" in msg


def test_missing_split_file_without_raw_sources(tmp_path):
    (tmp_path / "ucf101" / "UCF-101-midframes").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as err:
        load(tmp_path, "UCF101")
    msg = str(err.value)
    assert "split_zhou_UCF101.json" in msg and "download-splits" in msg


def test_bad_subsample_value_is_rejected(coop_root):
    with pytest.raises(ValueError, match="all.*base.*new"):
        load(coop_root, "EuroSAT", subsample="novel")


def test_missing_image_fails_at_load_time_with_path(coop_root, tmp_path):
    from dassl.utils import read_image

    dataset = load(coop_root, "DescribableTextures")  # construction does not stat files
    ghost = dataset.test[0].impath + ".missing"
    with pytest.raises(FileNotFoundError, match=ghost.replace(".", r"\.")):
        read_image(ghost)
    assert read_image(dataset.test[0].impath).size == (8, 8)
