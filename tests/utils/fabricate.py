"""Fabricate miniature dataset trees, in the exact upstream layouts, for tests.

Every function takes the DATA root (a temp dir), writes one dataset folder below it
with a few tiny real JPEG images per class, and returns the DATA root as a ``str``.
Class lists are the real ones wherever counts or label order matter.

Other areas' tests rely on ``make_eurosat_tree(root, n_per_class=...)``: keep its
signature stable.
"""
from __future__ import annotations

import copyreg
import io
import json
import os
import pickle
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple, Union

from PIL import Image

PathLike = Union[str, os.PathLike]

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_IMAGENET_CLASSNAMES = REPO_ROOT / "datasets" / "imagenet_classnames.txt"

EUROSAT_FOLDERS = [
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
    "Pasture", "PermanentCrop", "Residential", "River", "SeaLake",
]
EUROSAT_NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}

# A palette keeps classes visually distinct, so a tiny model can learn something.
_PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
]

SplitRows = List[Tuple[str, int, str]]


def jpeg_bytes(label: int, index: int = 0, size: int = 8) -> bytes:
    """A tiny valid JPEG whose colour depends on the class (and a little on ``index``)."""
    r, g, b = _PALETTE[label % len(_PALETTE)]
    shift = (label // len(_PALETTE)) * 7 + index % 5
    color = ((r + shift) % 256, (g + 3 * shift) % 256, (b + 5 * shift) % 256)
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_image(path: PathLike, label: int, index: int = 0, size: int = 8) -> None:
    """Write one tiny JPEG at ``path`` (creating parent folders)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(label, index, size))


def write_split_json(path: PathLike, train: SplitRows, val: SplitRows, test: SplitRows) -> None:
    """Write a ``split_zhou_*.json`` file in upstream's format (indent 4)."""
    with open(path, "w") as f:
        json.dump({"train": train, "val": val, "test": test}, f, indent=4)


def split_counts(n: int) -> Tuple[int, int, int]:
    """The 50/20/30 per-class split sizes of upstream's split creation."""
    n_train, n_val = round(n * 0.5), round(n * 0.2)
    return n_train, n_val, n - n_train - n_val


def _check_n(n_per_class: int) -> None:
    if min(split_counts(n_per_class)) < 1:
        raise ValueError(
            f"n_per_class={n_per_class} leaves a 50/20/30 split part empty; use 4 or more"
        )


def _class_split_tree(
    image_dir: Path,
    folders: Sequence[str],
    classnames: Sequence[str],
    n_per_class: int,
    filename: str = "{folder}_{i}.jpg",
) -> Tuple[SplitRows, SplitRows, SplitRows]:
    """Images ``image_dir/<folder>/<file>``; rows split 50/20/30 per class in label order."""
    train: SplitRows = []
    val: SplitRows = []
    test: SplitRows = []
    n_train, n_val, _ = split_counts(n_per_class)
    for label, (folder, cname) in enumerate(zip(folders, classnames)):
        for i in range(n_per_class):
            rel = f"{folder}/{filename.format(folder=folder, i=i + 1)}"
            write_image(image_dir / rel, label, i)
            row = (rel, label, cname)
            (train if i < n_train else val if i < n_train + n_val else test).append(row)
    return train, val, test


def read_classlist(name: str) -> List[str]:
    """A class list shipped with the tests' fixtures (``tests/utils/classnames``)."""
    path = Path(__file__).resolve().parent / "classnames" / f"{name}.txt"
    return [line.rstrip("\n") for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- EuroSAT
def make_eurosat_tree(root: PathLike, n_per_class: int = 10, *, with_split: bool = True) -> str:
    """Fabricate ``eurosat/2750/<Folder>/<Folder>_<i>.jpg`` + ``split_zhou_EuroSAT.json``.

    10 classes in upstream label order with upstream's new class names; each class's
    ``n_per_class`` images are split 50/20/30 (train/val/test) with ``round``.
    Returns the DATA root.
    """
    _check_n(n_per_class)
    root = Path(root)
    dataset_dir = root / "eurosat"
    rows = _class_split_tree(
        dataset_dir / "2750", EUROSAT_FOLDERS,
        [EUROSAT_NEW_CNAMES[f] for f in EUROSAT_FOLDERS], n_per_class,
    )
    if with_split:
        write_split_json(dataset_dir / "split_zhou_EuroSAT.json", *rows)
    return str(root)


# ---------------------------------------------------------- generic folder datasets
def _folder_dataset(
    root: PathLike,
    folder: str,
    image_subdir: str,
    class_folders: Sequence[str],
    classnames: Sequence[str],
    n_per_class: int,
    split_file: str,
    with_split: bool,
) -> str:
    _check_n(n_per_class)
    dataset_dir = Path(root) / folder
    rows = _class_split_tree(dataset_dir / image_subdir, class_folders, classnames, n_per_class)
    if with_split:
        write_split_json(dataset_dir / split_file, *rows)
    return str(root)


def _underscored(name: str) -> str:
    return name.replace(" ", "_")


def make_dtd_tree(root: PathLike, n_per_class: int = 4, *, with_split: bool = True) -> str:
    """``dtd/images/<texture>/<texture>_<i>.jpg`` (47 real classes) + split json."""
    names = [_underscored(n) for n in read_classlist("dtd")]
    return _folder_dataset(root, "dtd", "images", names, names, n_per_class,
                           "split_zhou_DescribableTextures.json", with_split)


def make_food101_tree(root: PathLike, n_per_class: int = 4, *, with_split: bool = True) -> str:
    """``food-101/images/<dish>/<i>.jpg`` (101 real classes) + split json."""
    names = [_underscored(n) for n in read_classlist("food101")]
    return _folder_dataset(root, "food-101", "images", names, names, n_per_class,
                           "split_zhou_Food101.json", with_split)


CALTECH_RENAMED = {"airplane": "airplanes", "face": "Faces", "leopard": "Leopards", "motorbike": "Motorbikes"}


def make_caltech101_tree(root: PathLike, n_per_class: int = 4, *, with_split: bool = True) -> str:
    """``caltech-101/101_ObjectCategories/<folder>/image_<i>.jpg`` with the two ignored folders."""
    names = [_underscored(n) for n in read_classlist("caltech101")]
    folders = [CALTECH_RENAMED.get(n, n) for n in names]
    out = _folder_dataset(root, "caltech-101", "101_ObjectCategories", folders, names, n_per_class,
                          "split_zhou_Caltech101.json", with_split)
    for ignored in ("BACKGROUND_Google", "Faces_easy"):
        for i in range(n_per_class):
            write_image(Path(root) / "caltech-101" / "101_ObjectCategories" / ignored / f"image_{i:04d}.jpg", 0, i)
    return out


# ------------------------------------------------------------------------- Oxford Pets
CAT_BREEDS = {
    "abyssinian", "bengal", "birman", "bombay", "british shorthair", "egyptian mau",
    "maine coon", "persian", "ragdoll", "russian blue", "siamese", "sphynx",
}


def make_oxford_pets_tree(root: PathLike, n_per_class: int = 4, *, with_split: bool = True) -> str:
    """``oxford_pets/images/<Breed>_<i>.jpg`` + ``annotations/{trainval,test}.txt`` (+ split json).

    Cat breeds are capitalised as in the real archive. Per breed, all but one image
    go to trainval, the last one to test; the split json uses 50/20/30.
    """
    _check_n(n_per_class)
    dataset_dir = Path(root) / "oxford_pets"
    trainval_lines, test_lines = [], []
    rows: Tuple[SplitRows, SplitRows, SplitRows] = ([], [], [])
    n_train, n_val, _ = split_counts(n_per_class)
    for label, name in enumerate(read_classlist("oxford_pets")):
        stem = _underscored(name.title() if name in CAT_BREEDS else name)
        species = 1 if name in CAT_BREEDS else 2
        for i in range(n_per_class):
            imname = f"{stem}_{i + 1}"
            write_image(dataset_dir / "images" / f"{imname}.jpg", label, i)
            line = f"{imname} {label + 1} {species} {label + 1}"
            (test_lines if i == n_per_class - 1 else trainval_lines).append(line)
            part = 0 if i < n_train else 1 if i < n_train + n_val else 2
            rows[part].append((f"{imname}.jpg", label, _underscored(name)))
    (dataset_dir / "annotations").mkdir(parents=True, exist_ok=True)
    (dataset_dir / "annotations" / "trainval.txt").write_text("\n".join(trainval_lines) + "\n")
    (dataset_dir / "annotations" / "test.txt").write_text("\n".join(test_lines) + "\n")
    if with_split:
        write_split_json(dataset_dir / "split_zhou_OxfordPets.json", *rows)
    return str(root)


# ------------------------------------------------------------------------ Stanford Cars
def _savemat(path: Path, obj: Dict) -> None:
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), obj)


def _cars_annos(fnames: List[str], classes: List[int]):
    import numpy as np

    annos = np.zeros((1, len(fnames)), dtype=[("fname", "O"), ("class", "O")])
    for i, (fname, cls) in enumerate(zip(fnames, classes)):
        annos[0, i]["fname"] = np.array([fname])
        annos[0, i]["class"] = np.array([[cls]], dtype=np.uint8)
    return annos


def make_stanford_cars_tree(root: PathLike, n_per_class: int = 4, *, with_split: bool = True) -> str:
    """``stanford_cars/cars_{train,test}/<5 digits>.jpg``, the devkit ``.mat`` files, split json.

    ``cars_meta.mat`` holds names with the year last (``Tesla Model S Sedan 2012``) as
    the real devkit; per class ``n_per_class - 1`` train images and one test image.
    """
    import numpy as np

    _check_n(n_per_class)
    dataset_dir = Path(root) / "stanford_cars"
    names = read_classlist("stanford_cars")
    meta = [" ".join(n.split(" ")[1:] + [n.split(" ")[0]]) for n in names]
    train_f, train_c, test_f, test_c = [], [], [], []
    rows: Tuple[SplitRows, SplitRows, SplitRows] = ([], [], [])
    n_train, n_val, _ = split_counts(n_per_class)
    for label, name in enumerate(names):
        for i in range(n_per_class):
            is_test = i == n_per_class - 1
            fnames, classes = (test_f, test_c) if is_test else (train_f, train_c)
            fname = f"{len(fnames) + 1:05d}.jpg"
            fnames.append(fname)
            classes.append(label + 1)
            sub = "cars_test" if is_test else "cars_train"
            write_image(dataset_dir / sub / fname, label, i)
            part = 0 if i < n_train else 1 if i < n_train + n_val else 2
            rows[part].append((f"{sub}/{fname}", label, name))
    class_names = np.zeros((1, len(meta)), dtype=object)
    for i, m in enumerate(meta):
        class_names[0, i] = np.array([m])
    _savemat(dataset_dir / "devkit" / "cars_meta.mat", {"class_names": class_names})
    _savemat(dataset_dir / "devkit" / "cars_train_annos.mat", {"annotations": _cars_annos(train_f, train_c)})
    _savemat(dataset_dir / "cars_test_annos_withlabels.mat", {"annotations": _cars_annos(test_f, test_c)})
    if with_split:
        write_split_json(dataset_dir / "split_zhou_StanfordCars.json", *rows)
    return str(root)


# ----------------------------------------------------------------------- Oxford Flowers
def make_oxford_flowers_tree(root: PathLike, n_per_class: int = 4, *, with_split: bool = True) -> str:
    """``oxford_flowers/jpg/image_<5 digits>.jpg``, ``imagelabels.mat``, ``cat_to_name.json``."""
    import numpy as np

    _check_n(n_per_class)
    dataset_dir = Path(root) / "oxford_flowers"
    names = read_classlist("oxford_flowers")
    labels = []
    rows: Tuple[SplitRows, SplitRows, SplitRows] = ([], [], [])
    n_train, n_val, _ = split_counts(n_per_class)
    for label, name in enumerate(names):
        for i in range(n_per_class):
            labels.append(label + 1)
            fname = f"image_{len(labels):05d}.jpg"
            write_image(dataset_dir / "jpg" / fname, label, i)
            part = 0 if i < n_train else 1 if i < n_train + n_val else 2
            rows[part].append((fname, label, name))
    _savemat(dataset_dir / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    with open(dataset_dir / "cat_to_name.json", "w") as f:
        json.dump({str(i + 1): n for i, n in enumerate(names)}, f)
    if with_split:
        write_split_json(dataset_dir / "split_zhou_OxfordFlowers.json", *rows)
    return str(root)


# ------------------------------------------------------------------------ FGVC Aircraft
def make_fgvc_aircraft_tree(root: PathLike, n_per_class: int = 3) -> str:
    """``fgvc_aircraft/images/<id>.jpg``, ``variants.txt``, ``images_variant_{train,val,test}.txt``."""
    if n_per_class < 3:
        raise ValueError("n_per_class must be >= 3 (one train, one val, the rest test)")
    dataset_dir = Path(root) / "fgvc_aircraft"
    names = read_classlist("fgvc_aircraft")
    lines: Dict[str, List[str]] = {"train": [], "val": [], "test": []}
    image_id = 1000000
    for label, name in enumerate(names):
        for i in range(n_per_class):
            image_id += 1
            write_image(dataset_dir / "images" / f"{image_id}.jpg", label, i)
            split = "train" if i == 0 else "val" if i == 1 else "test"
            lines[split].append(f"{image_id} {name}")
    (dataset_dir / "variants.txt").write_text("\n".join(names) + "\n")
    for split, rows in lines.items():
        (dataset_dir / f"images_variant_{split}.txt").write_text("\n".join(rows) + "\n")
    return str(root)


# ------------------------------------------------------------------------------- SUN397
def make_sun397_tree(root: PathLike, n_per_class: int = 4, *, with_split: bool = True) -> str:
    """``sun397/SUN397/<letter>/<class>/sun_<i>.jpg``, the partition files, split json.

    Classes are one folder deep (``/o/outdoor_apartment_building``), which yields the
    real names after ``_`` -> space; the reversal of two-level names is unit-tested.
    """
    _check_n(n_per_class)
    dataset_dir = Path(root) / "sun397"
    names = [_underscored(n) for n in read_classlist("sun397")]
    class_lines, train_lines, test_lines = [], [], []
    rows: Tuple[SplitRows, SplitRows, SplitRows] = ([], [], [])
    n_train, n_val, _ = split_counts(n_per_class)
    for label, name in enumerate(names):
        class_path = f"{name[0]}/{name}"
        class_lines.append(f"/{class_path}")
        for i in range(n_per_class):
            rel = f"{class_path}/sun_{label:03d}{i:03d}.jpg"
            write_image(dataset_dir / "SUN397" / rel, label, i)
            (test_lines if i == n_per_class - 1 else train_lines).append(f"/{rel}")
            part = 0 if i < n_train else 1 if i < n_train + n_val else 2
            rows[part].append((rel, label, name))
    (dataset_dir / "ClassName.txt").write_text("\n".join(class_lines) + "\n")
    (dataset_dir / "Training_01.txt").write_text("\n".join(train_lines) + "\n")
    (dataset_dir / "Testing_01.txt").write_text("\n".join(test_lines) + "\n")
    if with_split:
        write_split_json(dataset_dir / "split_zhou_SUN397.json", *rows)
    return str(root)


# ------------------------------------------------------------------------------- UCF101
def make_ucf101_tree(root: PathLike, n_per_class: int = 4, *, with_split: bool = True) -> str:
    """``ucf101/UCF-101-midframes/<Renamed_Action>/v_<Action>_g01_c<i>.jpg`` + ``ucfTrainTestlist``."""
    _check_n(n_per_class)
    dataset_dir = Path(root) / "ucf101"
    names = read_classlist("ucf101")
    class_lines, train_lines, test_lines = [], [], []
    rows: Tuple[SplitRows, SplitRows, SplitRows] = ([], [], [])
    n_train, n_val, _ = split_counts(n_per_class)
    for label, name in enumerate(names):
        action, renamed = name.replace(" ", ""), _underscored(name)
        class_lines.append(f"{label + 1} {action}")
        for i in range(n_per_class):
            video = f"v_{action}_g01_c{i + 1:02d}"
            write_image(dataset_dir / "UCF-101-midframes" / renamed / f"{video}.jpg", label, i)
            if i == n_per_class - 1:
                test_lines.append(f"{action}/{video}.avi")
            else:
                train_lines.append(f"{action}/{video}.avi {label + 1}")
            part = 0 if i < n_train else 1 if i < n_train + n_val else 2
            rows[part].append((f"{renamed}/{video}.jpg", label, renamed))
    lists = dataset_dir / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_text("\n".join(class_lines) + "\n")
    (lists / "trainlist01.txt").write_text("\n".join(train_lines) + "\n")
    (lists / "testlist01.txt").write_text("\n".join(test_lines) + "\n")
    if with_split:
        write_split_json(dataset_dir / "split_zhou_UCF101.json", *rows)
    return str(root)


# ----------------------------------------------------------------------------- ImageNet
def imagenet_wnids() -> List[str]:
    """The 1000 wnids in the shipped ``classnames.txt`` order."""
    return [line.split(" ")[0] for line in SHIPPED_IMAGENET_CLASSNAMES.read_text().splitlines() if line.strip()]


def _write_files(folder: Path, names: Iterable[str], label: int, empty: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (folder / name).write_bytes(b"" if empty else jpeg_bytes(label, i))


def make_imagenet_tree(
    root: PathLike,
    n_train: int = 2,
    n_val: int = 1,
    *,
    n_classes: int = 1000,
    empty: bool = False,
    with_classnames: bool = False,
) -> str:
    """``imagenet/images/{train,val}/<wnid>/...JPEG`` for the first ``n_classes`` wnids.

    ``empty=True`` writes zero-byte files (index benchmarks); ``with_classnames``
    also writes ``imagenet/classnames.txt`` (else the shipped copy is used).
    """
    dataset_dir = Path(root) / "imagenet"
    wnids = imagenet_wnids()[:n_classes]
    for label, wnid in enumerate(sorted(wnids)):
        # Names in reverse creation order, so a reader that does not sort is caught.
        _write_files(dataset_dir / "images" / "train" / wnid,
                     [f"{wnid}_{i}.JPEG" for i in reversed(range(n_train))], label, empty)
        _write_files(dataset_dir / "images" / "val" / wnid,
                     [f"ILSVRC2012_val_{label:05d}{i:03d}.JPEG" for i in range(n_val)], label, empty)
    if with_classnames:
        (dataset_dir / "classnames.txt").write_text(SHIPPED_IMAGENET_CLASSNAMES.read_text())
    return str(root)


def make_imagenetv2_tree(root: PathLike, n_per_class: int = 1) -> str:
    """``imagenetv2/imagenetv2-matched-frequency-format-val/<0..999>/<hash>.jpeg``."""
    base = Path(root) / "imagenetv2" / "imagenetv2-matched-frequency-format-val"
    for label in range(1000):
        _write_files(base / str(label), [f"{label:04x}{i}.jpeg" for i in range(n_per_class)], label, False)
    return str(root)


def make_imagenet_sketch_tree(root: PathLike, n_per_class: int = 1) -> str:
    """``imagenet-sketch/images/<wnid>/sketch_<i>.JPEG`` for the 1000 wnids."""
    base = Path(root) / "imagenet-sketch" / "images"
    for label, wnid in enumerate(sorted(imagenet_wnids())):
        _write_files(base / wnid, [f"sketch_{i}.JPEG" for i in range(n_per_class)], label, False)
    return str(root)


def _subset_tree(root: PathLike, folder: str, image_subdir: str, wnids_file: str, n_per_class: int) -> str:
    wnids = (REPO_ROOT / "datasets" / wnids_file).read_text().split()
    base = Path(root) / folder / image_subdir
    for label, wnid in enumerate(sorted(wnids)):
        _write_files(base / wnid, [f"{wnid}_{i}.jpg" for i in range(n_per_class)], label, False)
    (base / "README.txt").write_text("not a class folder\n")
    return str(root)


def make_imagenet_a_tree(root: PathLike, n_per_class: int = 1) -> str:
    """``imagenet-adversarial/imagenet-a/<wnid>/`` for the 200 wnids, plus ``README.txt``."""
    return _subset_tree(root, "imagenet-adversarial", "imagenet-a", "imagenet_a_wnids.txt", n_per_class)


def make_imagenet_r_tree(root: PathLike, n_per_class: int = 1) -> str:
    """``imagenet-rendition/imagenet-r/<wnid>/`` for the 200 wnids, plus ``README.txt``."""
    return _subset_tree(root, "imagenet-rendition", "imagenet-r", "imagenet_r_wnids.txt", n_per_class)


# ------------------------------------------------------------------ upstream caches
def upstream_pickle_bytes(obj: object) -> bytes:
    """Pickle ``obj`` exactly as upstream Dassl does: Datum state as a plain ``__dict__``."""
    from dassl.data.datasets import Datum

    class UpstreamPickler(pickle.Pickler):
        def reducer_override(self, o):
            if isinstance(o, Datum):
                return (copyreg.__newobj__, (Datum,), {
                    "_impath": o.impath, "_label": o.label, "_domain": o.domain, "_classname": o.classname})
            return NotImplemented

    buf = io.BytesIO()
    UpstreamPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


# Config name -> fabricator, for tests that loop over every dataset.
FABRICATORS = {
    "eurosat": make_eurosat_tree,
    "dtd": make_dtd_tree,
    "food101": make_food101_tree,
    "caltech101": make_caltech101_tree,
    "oxford_pets": make_oxford_pets_tree,
    "stanford_cars": make_stanford_cars_tree,
    "oxford_flowers": make_oxford_flowers_tree,
    "fgvc_aircraft": make_fgvc_aircraft_tree,
    "sun397": make_sun397_tree,
    "ucf101": make_ucf101_tree,
    "imagenet": make_imagenet_tree,
    "imagenetv2": make_imagenetv2_tree,
    "imagenet_sketch": make_imagenet_sketch_tree,
    "imagenet_a": make_imagenet_a_tree,
    "imagenet_r": make_imagenet_r_tree,
}
