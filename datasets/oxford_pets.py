"""Oxford-IIIT Pets (37 breeds)."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.data.datasets.protocol import CoOpDataset, DatasetSource, split_trainval


@DATASET_REGISTRY.register()
class OxfordPets(CoOpDataset):
    dataset_dir = "oxford_pets"
    image_subdir = "images"
    split_filename = "split_zhou_OxfordPets.json"
    source = DatasetSource(
        config="oxford_pets",
        folder="oxford_pets",
        downloads=(
            "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
            "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
        ),
        required=("images",),
        split_file="split_zhou_OxfordPets.json",
        split_drive_id="1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs",
    )

    @property
    def anno_dir(self) -> str:
        return os.path.join(self.dataset_dir, "annotations")

    def create_split(self):
        if not os.path.isfile(os.path.join(self.anno_dir, "trainval.txt")):
            return None
        train, val = split_trainval(self.read_data("trainval.txt"))
        return train, val, self.read_data("test.txt")

    def read_data(self, split_file: str) -> list:
        """Rows ``<Breed_id> <class 1..37> <species> <breed id>`` of an annotation file."""
        items = []
        with open(os.path.join(self.anno_dir, split_file)) as f:
            for line in f:
                if not line.strip() or line.startswith("#"):
                    continue
                imname, label = line.split()[:2]
                breed = imname.rsplit("_", 1)[0].lower()  # drop the image id
                items.append(Datum(os.path.join(self.image_dir, imname + ".jpg"), int(label) - 1, 0, breed))
        return items
