"""Stanford Cars (196 models)."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.data.datasets.protocol import CoOpDataset, DatasetSource, split_trainval

from ._matlab import loadmat


def year_first(name: str) -> str:
    """``"Tesla Model S Sedan 2012"`` -> ``"2012 Tesla Model S Sedan"`` (upstream's naming)."""
    words = name.split(" ")
    return " ".join([words[-1]] + words[:-1])


@DATASET_REGISTRY.register()
class StanfordCars(CoOpDataset):
    dataset_dir = "stanford_cars"
    split_filename = "split_zhou_StanfordCars.json"
    split_prefix_is_dataset_dir = True  # split paths look like cars_train/00001.jpg
    source = DatasetSource(
        config="stanford_cars",
        folder="stanford_cars",
        downloads=(
            "http://ai.stanford.edu/~jkrause/car196/cars_train.tgz",
            "http://ai.stanford.edu/~jkrause/car196/cars_test.tgz",
            "http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat",
            "https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz",
        ),
        required=("cars_train", "cars_test"),
        split_file="split_zhou_StanfordCars.json",
        split_drive_id="1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT",
        notes="These links are often dead; any mirror with the same files works.",
    )

    def create_split(self):
        devkit = os.path.join(self.dataset_dir, "devkit")
        train_annos = os.path.join(devkit, "cars_train_annos.mat")
        test_annos = os.path.join(self.dataset_dir, "cars_test_annos_withlabels.mat")
        meta = os.path.join(devkit, "cars_meta.mat")
        if not all(os.path.isfile(p) for p in (train_annos, test_annos, meta)):
            return None
        trainval = self.read_data("cars_train", train_annos, meta)
        test = self.read_data("cars_test", test_annos, meta)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, image_subdir: str, anno_file: str, meta_file: str) -> list:
        annos = loadmat(anno_file)["annotations"][0]
        names = loadmat(meta_file)["class_names"][0]
        items = []
        for anno in annos:
            label = int(anno["class"][0, 0]) - 1
            impath = os.path.join(self.dataset_dir, image_subdir, str(anno["fname"][0]))
            items.append(Datum(impath, label, 0, year_first(str(names[label][0]))))
        return items
