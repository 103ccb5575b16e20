"""Food-101 (101 classes)."""
from dassl.data.datasets import DATASET_REGISTRY
from dassl.data.datasets.protocol import CoOpDataset, DatasetSource, read_and_split_data


@DATASET_REGISTRY.register()
class Food101(CoOpDataset):
    dataset_dir = "food-101"
    image_subdir = "images"
    split_filename = "split_zhou_Food101.json"
    source = DatasetSource(
        config="food101",
        folder="food-101",
        downloads=("food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/",),
        required=("images",),
        split_file="split_zhou_Food101.json",
        split_drive_id="1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl",
    )

    def create_split(self):
        return read_and_split_data(self.image_dir)
