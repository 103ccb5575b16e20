"""SUN397 scenes."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.data.datasets.protocol import CoOpDataset, DatasetSource, split_trainval


def scene_name(class_path: str) -> str:
    """``"a/apartment_building/outdoor"`` -> ``"outdoor apartment_building"``.

    Drops the letter folder and reverses the rest, so qualifiers like indoor/outdoor
    come first (upstream's naming).
    """
    return " ".join(class_path.strip("/").split("/")[1:][::-1])


@DATASET_REGISTRY.register()
class SUN397(CoOpDataset):
    dataset_dir = "sun397"
    image_subdir = "SUN397"
    split_filename = "split_zhou_SUN397.json"
    source = DatasetSource(
        config="sun397",
        folder="sun397",
        downloads=(
            "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
            "http://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip",
        ),
        required=("SUN397",),
        split_file="split_zhou_SUN397.json",
        split_drive_id="1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq",
        notes="Partitions.zip gives ClassName.txt, Training_01.txt, Testing_01.txt (put them in sun397/). "
        "The Princeton links have died; any mirror with the same files works.",
    )

    def create_split(self):
        files = [os.path.join(self.dataset_dir, n) for n in ("ClassName.txt", "Training_01.txt", "Testing_01.txt")]
        if not all(os.path.isfile(p) for p in files):
            return None
        with open(files[0]) as f:
            classes = [line.strip()[1:] for line in f if line.strip()]  # "/a/abbey" -> "a/abbey"
        cname2lab = {c: i for i, c in enumerate(classes)}
        trainval = self.read_data(cname2lab, files[1])
        train, val = split_trainval(trainval)
        return train, val, self.read_data(cname2lab, files[2])

    def read_data(self, cname2lab: dict, text_file: str) -> list:
        items = []
        with open(text_file) as f:
            for line in f:
                imname = line.strip()[1:]  # remove the leading "/"
                if not imname:
                    continue
                class_path = os.path.dirname(imname)
                impath = os.path.join(self.image_dir, imname)
                items.append(Datum(impath, cname2lab[class_path], 0, scene_name(class_path)))
        return items
