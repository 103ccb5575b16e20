"""ImageNetV2 matched-frequency (test only): folder ``i`` holds class ``i``."""
from dassl.data.datasets import DATASET_REGISTRY
from dassl.data.datasets.protocol import DatasetSource

from ._imagenet_variants import ImageNetVariant
from .imagenet import IMAGENET_CLASSNAMES_NOTE


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetVariant):
    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"
    source = DatasetSource(
        config="imagenetv2",
        folder="imagenetv2",
        downloads=("https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz",),
        required=("imagenetv2-matched-frequency-format-val",),
        notes=IMAGENET_CLASSNAMES_NOTE,
    )

    def class_folders(self, classnames):
        return [(str(label), wnid) for label, wnid in enumerate(classnames)]
