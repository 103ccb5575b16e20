"""Oxford Flowers-102."""
import json
import os
import random
from collections import defaultdict

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.data.datasets.protocol import CoOpDataset, DatasetSource

from ._matlab import loadmat


@DATASET_REGISTRY.register()
class OxfordFlowers(CoOpDataset):
    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"
    split_filename = "split_zhou_OxfordFlowers.json"
    source = DatasetSource(
        config="oxford_flowers",
        folder="oxford_flowers",
        downloads=(
            "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
            "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat",
        ),
        required=("jpg",),
        split_file="split_zhou_OxfordFlowers.json",
        split_drive_id="1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT",
        extra_files={"cat_to_name.json": "1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"},
    )

    def create_split(self):
        label_file = os.path.join(self.dataset_dir, "imagelabels.mat")
        names_file = os.path.join(self.dataset_dir, "cat_to_name.json")
        if not (os.path.isfile(label_file) and os.path.isfile(names_file)):
            return None
        tracker = defaultdict(list)  # label (1-based) -> paths, in first-appearance order
        for i, label in enumerate(loadmat(label_file)["labels"][0]):
            tracker[int(label)].append(os.path.join(self.image_dir, f"image_{i + 1:05d}.jpg"))
        with open(names_file) as f:
            lab2cname = json.load(f)
        print("Splitting data into 50% train, 20% val, and 30% test")
        train, val, test = [], [], []
        for label, impaths in tracker.items():
            random.shuffle(impaths)
            n_train, n_val = round(len(impaths) * 0.5), round(len(impaths) * 0.2)
            cname = lab2cname[str(label)]
            for part, chunk in (
                (train, impaths[:n_train]),
                (val, impaths[n_train:n_train + n_val]),
                (test, impaths[n_train + n_val:]),
            ):
                part.extend(Datum(p, label - 1, 0, cname) for p in chunk)
        return train, val, test
