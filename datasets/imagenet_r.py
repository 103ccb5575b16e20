"""ImageNet-R (renditions, test only): 200 of the 1000 classes."""
from dassl.data.datasets import DATASET_REGISTRY
from dassl.data.datasets.protocol import DatasetSource

from ._imagenet_variants import SubsetVariant
from .imagenet import IMAGENET_CLASSNAMES_NOTE


@DATASET_REGISTRY.register()
class ImageNetR(SubsetVariant):
    dataset_dir = "imagenet-rendition"
    image_subdir = "imagenet-r"
    wnids_file = "imagenet_r_wnids.txt"
    source = DatasetSource(
        config="imagenet_r",
        folder="imagenet-rendition",
        downloads=("imagenet-r.tar from https://github.com/hendrycks/imagenet-r",),
        required=("imagenet-r",),
        notes=IMAGENET_CLASSNAMES_NOTE,
    )
