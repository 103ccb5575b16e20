"""ImageNet-Sketch (test only): one folder per wnid, labels in sorted-folder order."""
import os

from dassl.data.datasets import DATASET_REGISTRY
from dassl.data.datasets.protocol import DatasetSource

from ._imagenet_variants import ImageNetVariant
from .imagenet import IMAGENET_CLASSNAMES_NOTE


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetVariant):
    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
    source = DatasetSource(
        config="imagenet_sketch",
        folder="imagenet-sketch",
        downloads=("ImageNet-Sketch from https://github.com/HaohanWang/ImageNet-Sketch",),
        required=("images",),
        notes=IMAGENET_CLASSNAMES_NOTE,
    )

    def class_folders(self, classnames):
        folders = sorted(e.name for e in os.scandir(self.image_dir) if e.is_dir() and not e.name.startswith("."))
        return [(f, f) for f in folders]
