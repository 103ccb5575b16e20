"""FGVC-Aircraft 2013b (100 variants). No CoOp split file: the official txt splits are used."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.data.datasets.protocol import CoOpDataset, DatasetSource


@DATASET_REGISTRY.register()
class FGVCAircraft(CoOpDataset):
    dataset_dir = "fgvc_aircraft"
    image_subdir = "images"
    source = DatasetSource(
        config="fgvc_aircraft",
        folder="fgvc_aircraft",
        downloads=("https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",),
        required=(
            "images", "variants.txt", "images_variant_train.txt",
            "images_variant_val.txt", "images_variant_test.txt",
        ),
        notes="Keep only the archive's fgvc-aircraft-2013b/data/ folder and rename it to fgvc_aircraft.",
    )

    def read_splits(self):
        with open(os.path.join(self.dataset_dir, "variants.txt")) as f:
            classnames = [line.strip() for line in f if line.strip()]
        cname2lab = {c: i for i, c in enumerate(classnames)}
        return tuple(self.read_data(cname2lab, f"images_variant_{s}.txt") for s in ("train", "val", "test"))

    def read_data(self, cname2lab: dict, split_file: str) -> list:
        """Rows ``<image id> <variant words>``."""
        items = []
        with open(os.path.join(self.dataset_dir, split_file)) as f:
            for line in f:
                parts = line.strip().split(" ")
                if not parts[0]:
                    continue
                classname = " ".join(parts[1:])
                impath = os.path.join(self.image_dir, parts[0] + ".jpg")
                items.append(Datum(impath, cname2lab[classname], 0, classname))
        return items
