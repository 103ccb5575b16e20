"""The built-in synthetic attribute world (40 invented classes), generated on first use.

``DATASET.ROOT/synthetic/`` is written by :func:`datasets.synthetic_world.ensure_world`
the first time the reader runs (seconds; atomic, so parallel runs are safe) and then read
like every CoOp dataset: split file, few-shot cache, base/new subsampling.
See ``datasets/SYNTHETIC.md``.
"""
from dassl.data.datasets import DATASET_REGISTRY
from dassl.data.datasets.protocol import CoOpDataset, DatasetSource

from . import synthetic_world as world


@DATASET_REGISTRY.register()
class Synthetic(CoOpDataset):
    dataset_dir = world.FOLDER
    image_subdir = world.IMAGE_DIR
    split_filename = world.SPLIT_FILE
    source = DatasetSource(
        config="synthetic",
        folder=world.FOLDER,
        downloads=("nothing: the reader generates the world itself",),
        required=(world.IMAGE_DIR, world.SPLIT_FILE),
        notes="Delete the folder to have it regenerated on the next run.",
    )

    def check_layout(self) -> None:
        # Generate (or validate the version of) the world before the usual layout check.
        world.ensure_world(self.root, seed=world.DEFAULT_SEED)
        super().check_layout()
