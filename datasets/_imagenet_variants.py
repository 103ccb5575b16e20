"""The evaluation-only ImageNet variants: shared reader logic (one file per variant)."""
import os
from typing import Any, Dict, List, Sequence

from dassl.data.datasets import DatasetBase, Datum
from dassl.data.datasets.protocol import DatasetSource, check_layout, missing_error

from .imagenet import classnames_file, read_classnames

SHIPPED_DIR = os.path.dirname(os.path.abspath(__file__))


def read_wnids(filename: str) -> List[str]:
    """A wnid list shipped with the project (one per line)."""
    with open(os.path.join(SHIPPED_DIR, filename)) as f:
        return [line.strip() for line in f if line.strip()]


def list_images(folder: str) -> List[str]:
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


class ImageNetVariant(DatasetBase):
    """A test-only dataset: ``test`` holds everything, ``train_x`` is None.

    NUM_SHOTS and SUBSAMPLE_CLASSES are ignored: these sets are only evaluated on.
    Subclasses return ``[(folder name, wnid), ...]`` in label order from
    :meth:`class_folders`.
    """

    dataset_dir = ""
    image_subdir = ""
    source: DatasetSource

    def __init__(self, cfg: Any) -> None:
        self.root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = os.path.join(self.root, type(self).dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        check_layout(type(self).__name__, self.source, self.root, self.dataset_dir)
        classnames = read_classnames(classnames_file(self.dataset_dir))
        super().__init__(train_x=None, test=self.read_data(classnames))

    def class_folders(self, classnames: Dict[str, str]) -> Sequence:
        raise NotImplementedError

    def read_data(self, classnames: Dict[str, str]) -> List[Datum]:
        items = []
        # The wnid of each label: how attribute files find the right entry for classes
        # whose names repeat in ImageNet ("missile", "sunglasses").
        self.wnids: List[str] = []
        for label, (folder, wnid) in enumerate(self.class_folders(classnames)):
            self.wnids.append(wnid)
            class_dir = os.path.join(self.image_dir, folder)
            if not os.path.isdir(class_dir):
                raise missing_error(type(self).__name__, self.source, self.root, "class folder", class_dir)
            if wnid not in classnames:
                raise KeyError(f"{type(self).__name__}: wnid {wnid} is not in {classnames_file(self.dataset_dir)}")
            cname = classnames[wnid]
            items.extend(Datum(os.path.join(class_dir, n), label, 0, cname) for n in list_images(class_dir))
        return items


class SubsetVariant(ImageNetVariant):
    """ImageNet-A / -R: 200 wnid folders; labels follow the sorted shipped wnid list."""

    wnids_file = ""

    def class_folders(self, classnames):
        return [(wnid, wnid) for wnid in sorted(read_wnids(self.wnids_file))]
