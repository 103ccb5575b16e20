"""ImageNet-1k (ILSVRC-2012). Evaluation uses the official val set, as in CoOp.

Images are listed in sorted order (upstream used unsorted ``os.listdir``, so its
splits depended on the filesystem). The listing is cached as a compact JSON index of
relative names (``sempt_index.json``); an upstream ``preprocessed.pkl`` is read and used
instead when present, so existing few-shot splits stay valid.
"""
import json
import os
from collections import OrderedDict
from typing import Dict, List

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.data.datasets.protocol import CoOpDataset, DatasetSource, load_upstream_pickle

SHIPPED_CLASSNAMES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_classnames.txt")
INDEX_FILENAME = "sempt_index.json"
INDEX_FORMAT = "sempt-imagenet-index"

IMAGENET_CLASSNAMES_NOTE = (
    "classnames.txt (Google Drive id 1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF) is optional: "
    "the project ships a copy (datasets/imagenet_classnames.txt)."
)


def read_classnames(text_file: str) -> "OrderedDict[str, str]":
    """``{wnid: class name}`` from lines ``<wnid> <name words>``, in file order."""
    classnames: "OrderedDict[str, str]" = OrderedDict()
    with open(text_file) as f:
        for line in f:
            parts = line.strip().split(" ")
            if parts[0]:
                classnames[parts[0]] = " ".join(parts[1:])
    return classnames


def classnames_file(dataset_dir: str) -> str:
    """The dataset's own ``classnames.txt`` if present, else the shipped copy."""
    own = os.path.join(dataset_dir, "classnames.txt")
    return own if os.path.isfile(own) else SHIPPED_CLASSNAMES


def list_class_folders(split_dir: str) -> List[List]:
    """``[[folder, [sorted image names]], ...]`` for the sorted class folders of ``split_dir``."""
    folders = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    return [
        [folder, sorted(n for n in os.listdir(os.path.join(split_dir, folder)) if not n.startswith("."))]
        for folder in folders
    ]


def items_from_listing(split_dir: str, listing: List[List], classnames: Dict[str, str]) -> List[Datum]:
    """Datum per image; label = index of the class folder in sorted order."""
    items = []
    for label, (folder, names) in enumerate(listing):
        if folder not in classnames:
            raise KeyError(f"class folder {os.path.join(split_dir, folder)} is not listed in classnames.txt")
        cname = classnames[folder]
        base = os.path.join(split_dir, folder, "")
        items.extend(Datum(base + name, label, 0, cname) for name in names)
    return items


@DATASET_REGISTRY.register()
class ImageNet(CoOpDataset):
    dataset_dir = "imagenet"
    image_subdir = "images"
    fewshot_keys = ("train",)  # upstream samples (and caches) train only
    source = DatasetSource(
        config="imagenet",
        folder="imagenet",
        downloads=("ILSVRC-2012 train and val from https://image-net.org (registration)",),
        required=("images/train", "images/val"),
        notes="Val images must be sorted into one folder per wnid. " + IMAGENET_CLASSNAMES_NOTE,
    )
    read_classnames = staticmethod(read_classnames)

    def read_splits(self):
        """``(train, test, test)``: the val set is both the dataset's val and test, as upstream."""
        preprocessed = os.path.join(self.dataset_dir, "preprocessed.pkl")
        if os.path.isfile(preprocessed):
            data = load_upstream_pickle(preprocessed, self.dataset_dir)
            return data["train"], data["test"], data["test"]
        classnames = read_classnames(classnames_file(self.dataset_dir))
        index = self.load_index()
        train = items_from_listing(os.path.join(self.image_dir, "train"), index["train"], classnames)
        test = items_from_listing(os.path.join(self.image_dir, "val"), index["val"], classnames)
        return train, test, test

    def load_index(self) -> Dict[str, List[List]]:
        """The cached image listing, or a fresh scan that is then cached."""
        path = self.cache.find(INDEX_FILENAME)
        if path is not None:
            with open(path) as f:
                index = json.load(f)
            if index.get("format") == INDEX_FORMAT:
                return index
        index = {"format": INDEX_FORMAT, "version": 1}
        for split in ("train", "val"):
            index[split] = list_class_folders(os.path.join(self.image_dir, split))
        print(f"Saved the image index to {self.cache.write_json(INDEX_FILENAME, index)}")
        return index
