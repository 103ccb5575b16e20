"""UCF101 actions (middle frame of each video)."""
import os
import re

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.data.datasets.protocol import CoOpDataset, DatasetSource, split_trainval


def split_camel_case(action: str) -> str:
    """``"ApplyEyeMakeup"`` -> ``"Apply_Eye_Makeup"`` (the midframes folder names)."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(CoOpDataset):
    dataset_dir = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_filename = "split_zhou_UCF101.json"
    source = DatasetSource(
        config="ucf101",
        folder="ucf101",
        downloads=("UCF-101-midframes.zip (Google Drive id 10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O)",),
        required=("UCF-101-midframes",),
        split_file="split_zhou_UCF101.json",
        split_drive_id="1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y",
    )

    def create_split(self):
        list_dir = os.path.join(self.dataset_dir, "ucfTrainTestlist")
        files = [os.path.join(list_dir, n) for n in ("classInd.txt", "trainlist01.txt", "testlist01.txt")]
        if not all(os.path.isfile(p) for p in files):
            return None
        cname2lab = {}
        with open(files[0]) as f:
            for line in f:
                if line.strip():
                    label, action = line.split()
                    cname2lab[action] = int(label) - 1
        train, val = split_trainval(self.read_data(cname2lab, files[1]))
        return train, val, self.read_data(cname2lab, files[2])

    def read_data(self, cname2lab: dict, text_file: str) -> list:
        items = []
        with open(text_file) as f:
            for line in f:
                if not line.strip():
                    continue
                action, filename = line.split()[0].split("/")  # trainlist rows also hold a label
                renamed = split_camel_case(action)
                impath = os.path.join(self.image_dir, renamed, filename.replace(".avi", ".jpg"))
                items.append(Datum(impath, cname2lab[action], 0, renamed))
        return items
