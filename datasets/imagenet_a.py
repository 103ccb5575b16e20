"""ImageNet-A (natural adversarial examples, test only): 200 of the 1000 classes."""
from dassl.data.datasets import DATASET_REGISTRY
from dassl.data.datasets.protocol import DatasetSource

from ._imagenet_variants import SubsetVariant
from .imagenet import IMAGENET_CLASSNAMES_NOTE


@DATASET_REGISTRY.register()
class ImageNetA(SubsetVariant):
    dataset_dir = "imagenet-adversarial"
    image_subdir = "imagenet-a"
    wnids_file = "imagenet_a_wnids.txt"
    source = DatasetSource(
        config="imagenet_a",
        folder="imagenet-adversarial",
        downloads=("imagenet-a.tar from https://github.com/hendrycks/natural-adv-examples",),
        required=("imagenet-a",),
        notes=IMAGENET_CLASSNAMES_NOTE,
    )
