"""Describable Textures (47 classes)."""
from dassl.data.datasets import DATASET_REGISTRY
from dassl.data.datasets.protocol import CoOpDataset, DatasetSource, read_and_split_data


@DATASET_REGISTRY.register()
class DescribableTextures(CoOpDataset):
    dataset_dir = "dtd"
    image_subdir = "images"
    split_filename = "split_zhou_DescribableTextures.json"
    source = DatasetSource(
        config="dtd",
        folder="dtd",
        downloads=("https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",),
        required=("images",),
        split_file="split_zhou_DescribableTextures.json",
        split_drive_id="1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x",
        notes="The archive unpacks to dtd/ with images/, imdb/, labels/.",
    )

    def create_split(self):
        return read_and_split_data(self.image_dir)


# Upstream forks import ``DTD`` for its split helpers (``DTD.read_and_split_data``).
DTD = DescribableTextures
