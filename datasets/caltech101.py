"""Caltech-101 (100 object classes: background and the duplicate face class removed)."""
from dassl.data.datasets import DATASET_REGISTRY
from dassl.data.datasets.protocol import CoOpDataset, DatasetSource, read_and_split_data

IGNORED = ["BACKGROUND_Google", "Faces_easy"]
NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@DATASET_REGISTRY.register()
class Caltech101(CoOpDataset):
    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_filename = "split_zhou_Caltech101.json"
    source = DatasetSource(
        config="caltech101",
        folder="caltech-101",
        downloads=("http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz",),
        required=("101_ObjectCategories",),
        split_file="split_zhou_Caltech101.json",
        split_drive_id="1hyarUivQE36mY6jSomru6Fjd-JzwcCzN",
    )

    def create_split(self):
        return read_and_split_data(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES)
