"""The built-in synthetic attribute world (40 invented classes): its reader.

``DATASET.ROOT/synthetic/`` is written by the world's generator, ``tools/synthetic/generate.py``
(``python -m tools.synthetic.generate --root DATA``); ``train.py`` runs it on first use of
this dataset, so the scripts and ``python -m tools.run_synthetic`` need no extra step. The
folder is then read like every CoOp dataset: split file, few-shot cache, base/new
subsampling. See ``datasets/SYNTHETIC.md``.
"""
import os

from dassl.data.datasets import DATASET_REGISTRY
from dassl.data.datasets.protocol import CoOpDataset, DatasetNotFoundError, DatasetSource

GENERATE_COMMAND = "python -m tools.synthetic.generate --root {root}"


@DATASET_REGISTRY.register()
class Synthetic(CoOpDataset):
    dataset_dir = "synthetic"
    image_subdir = "images"
    split_filename = "split_zhou_Synthetic.json"
    source = DatasetSource(
        config="synthetic",
        folder="synthetic",
        downloads=("nothing (the world is generated, see below)",),
        required=("images", "split_zhou_Synthetic.json"),
        notes=f"Generate it with: {GENERATE_COMMAND.format(root='DATA')} (train.py does so on first use); "
        "delete the folder to have it regenerated.",
    )

    def check_layout(self) -> None:
        # The reader never generates (the generator lives in tools/, above the readers): it
        # names the command that does.
        for path in (self.dataset_dir, self.image_dir, self.split_path):
            if not os.path.exists(path):
                raise DatasetNotFoundError(
                    f"Synthetic: {path} not found: the synthetic world is not generated under "
                    f"{self.root}. Generate it with `{GENERATE_COMMAND.format(root=self.root)}` "
                    "(train.py does so on first use of this dataset)."
                )
