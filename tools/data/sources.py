"""Where each of the 15 datasets' files come from, and what each file becomes under ``$DATA``.

The URLs and checksums of the archives torchvision can download are read from torchvision
itself (:func:`torchvision_downloads` asks its dataset classes), so they follow torchvision's
updates instead of rotting here. Only what no installed library knows is written below:
the CoOp split files (Google Drive ids from the readers' :class:`DatasetSource`), the ImageNet
variants (their authors' URLs) and the manual steps.

A :class:`RemoteFile` is one file to fetch: an archive (unpacked by :mod:`tools.data.install`,
kept under ``$DATA/archives/<folder>/`` meanwhile) or a plain file saved into the dataset
folder. Its ``outputs`` are the paths, relative to the dataset folder, that exist once it has
been put in place: a file whose outputs all exist is never fetched again.
"""
from __future__ import annotations

import functools
import inspect
import os
import sys
import tempfile
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlparse

from dassl.data.datasets.protocol import DatasetSource

from .check import benchmark_readers

# How a fetched file is turned into outputs (see tools/data/install.py):
#   "file": saved as is into the dataset folder under its name;
#   "moves": unpacked, then the archive paths ``src`` are moved to ``dst`` (dataset-relative);
#   "imagenet-train" / "imagenet-val" / "imagenet-devkit": torchvision's ImageNet archive parsers.
Moves = Tuple[Tuple[str, str], ...]


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it comes from, how it is checked, what it becomes."""

    name: str  # file name under $DATA/archives/<folder>/ and under a mirror's <folder>/
    outputs: Tuple[str, ...]  # dataset-relative paths that exist once the file is in place
    url: Optional[str] = None  # None: Google Drive (drive_id) or manual
    drive_id: Optional[str] = None
    md5: Optional[str] = None
    origin: str = ""  # who publishes the URL/checksum (shown by --dry-run)
    unpack: str = "file"
    moves: Moves = ()
    inner_archive: Optional[str] = None  # an archive inside the archive to unpack first (Caltech101)
    manual: Optional[str] = None  # set when no public source exists: the steps for a person
    size_hint: str = ""  # a size its publisher states, for the dry run (servers tell the exact one)
    optional: bool = False  # the readers work without it (with the split file)
    is_split_file: bool = False  # a CoOp split json: checked to parse with train/val/test

    @property
    def is_archive(self) -> bool:
        return self.unpack != "file"

    def source_text(self) -> str:
        if self.manual:
            return "manual (see the steps below)"
        if self.url:
            return self.url
        return f"Google Drive id {self.drive_id} (https://drive.google.com/uc?id={self.drive_id})"


@dataclass(frozen=True)
class DatasetPlan:
    """Every file a dataset needs, the folder they go to, and its manual steps if any."""

    config: str
    reader: str
    folder: str
    files: Tuple[RemoteFile, ...]
    manual_steps: str = ""  # shown once when a file has no public source
    notes: Tuple[str, ...] = field(default_factory=tuple)
    expects: Tuple[str, ...] = ()  # what ``tools.data check`` requires in the folder (the reader's source)


# ----------------------------------------------------------------- torchvision's knowledge
@functools.lru_cache(maxsize=None)  # depends only on the installed torchvision
def torchvision_downloads(class_name: str) -> Tuple[Tuple[str, str, Optional[str]], ...]:
    """``[(url, file name, md5)]`` that ``torchvision.datasets.<class_name>`` would download.

    Runs the class's own download code in an empty temporary folder with its download
    helpers replaced by recorders, so nothing touches the network: the result is exactly
    what the installed torchvision knows. Empty when the class no longer downloads (as
    StanfordCars, whose source is gone) or does not exist.
    """
    import torchvision.datasets as tv_datasets
    from torchvision.datasets import utils as tv_utils

    cls = getattr(tv_datasets, class_name, None)
    if cls is None:
        return ()
    module = sys.modules[cls.__module__]
    calls: List[Tuple[str, str, Optional[str]]] = []
    saved = {}
    for helper in ("download_and_extract_archive", "download_url", "download_file_from_google_drive"):
        original = getattr(tv_utils, helper, None)
        if original is None:
            continue
        signature = inspect.signature(original)

        def record(*args, _signature=signature, **kwargs):
            bound = _signature.bind(*args, **kwargs)
            url = bound.arguments.get("url") or f"https://drive.google.com/uc?id={bound.arguments.get('file_id')}"
            name = bound.arguments.get("filename") or os.path.basename(urlparse(url).path)
            calls.append((url, name, bound.arguments.get("md5")))

        if hasattr(module, helper):
            saved[helper] = getattr(module, helper)
            setattr(module, helper, record)

    def offline(*args, **kwargs):
        raise RuntimeError("no network while reading torchvision's sources")

    # A second guard: torchvision's own fetching primitives refuse, whatever path reaches them.
    guarded = {name: getattr(tv_utils, name) for name in ("_urlretrieve", "_get_redirect_url")
               if hasattr(tv_utils, name)}
    for name in guarded:
        setattr(tv_utils, name, offline)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                cls(root=tmp, download=True)
            except Exception:  # the class then finds no data (nothing was fetched): expected
                pass
    finally:
        for helper, original in saved.items():
            setattr(module, helper, original)
        for name, original in guarded.items():
            setattr(tv_utils, name, original)
    return tuple(calls)


def _torchvision_version() -> str:
    import torchvision

    return torchvision.__version__.split("+")[0]


def from_torchvision(class_name: str, name: str, **spec) -> RemoteFile:
    """The file ``name`` that torchvision's ``class_name`` downloads, with torchvision's URL and md5.

    When the installed torchvision no longer knows the file, it becomes a manual step, so a
    torchvision change shows up as a clear message rather than as a wrong download.
    """
    for url, filename, md5 in torchvision_downloads(class_name):
        if filename == name:
            return RemoteFile(name=name, url=url, md5=md5,
                              origin=f"torchvision {_torchvision_version()} datasets.{class_name}", **spec)
    return RemoteFile(
        name=name,
        manual=f"torchvision {_torchvision_version()} no longer knows where {name} ({class_name}) comes from",
        origin="unknown", **spec,
    )


# ------------------------------------------------------------------------ split files
def split_files(source: DatasetSource, *, optional_extras: bool = False) -> List[RemoteFile]:
    """The CoOp split json and extra files of a reader, from its Google Drive ids."""
    files = []
    if source.split_file:
        files.append(RemoteFile(name=source.split_file, outputs=(source.split_file,), drive_id=source.split_drive_id,
                                origin="CoOp (Zhou et al.) split file", is_split_file=True))
    for name, drive_id in source.extra_files.items():
        files.append(RemoteFile(name=name, outputs=(name,), drive_id=drive_id, origin="CoOp (Zhou et al.)",
                                optional=optional_extras))
    return files


def archive(name: str, moves: Dict[str, str], **spec) -> Dict:
    """Keyword arguments of a RemoteFile that is unpacked and moved (``archive path -> dataset path``)."""
    return dict(name=name, unpack="moves", moves=tuple(moves.items()), outputs=tuple(moves.values()), **spec)


# --------------------------------------------------------------------------- plans
IMAGENET_ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz")


def _imagenet(source: DatasetSource, archives_dir: str) -> DatasetPlan:
    from torchvision.datasets.imagenet import ARCHIVE_META

    md5 = {name: checksum for name, checksum in ARCHIVE_META.values()}
    here = os.path.join(archives_dir, source.folder)
    steps = (
        "ImageNet's licence allows downloads only to registered users, so a person must fetch it:\n"
        "  1. Sign in at https://image-net.org (create an account and accept the terms of access),\n"
        "     then open https://image-net.org/challenges/LSVRC/2012/2012-downloads.php.\n"
        f"  2. Download {', '.join(IMAGENET_ARCHIVES)} (about 138 GB, 6.3 GB, 2.5 MB)\n"
        f"     into {here}/ (or pass --archives DIR where they already are).\n"
        "  3. Run the same download command again: it checks their md5 (torchvision's),\n"
        "     unpacks train into images/train/<wnid>/ and sorts val into images/val/<wnid>/."
    )
    origin = f"torchvision {_torchvision_version()} datasets.imagenet.ARCHIVE_META"
    manual = "registered download from image-net.org"
    files = (
        RemoteFile(name=IMAGENET_ARCHIVES[0], outputs=("images/train",), md5=md5[IMAGENET_ARCHIVES[0]],
                   origin=origin, unpack="imagenet-train", manual=manual, size_hint="138 GB (image-net.org)"),
        # The devkit holds the val labels: it is needed exactly when images/val is.
        RemoteFile(name=IMAGENET_ARCHIVES[2], outputs=("images/val",), md5=md5[IMAGENET_ARCHIVES[2]],
                   origin=origin, unpack="imagenet-devkit", manual=manual, size_hint="2.5 MB (image-net.org)"),
        RemoteFile(name=IMAGENET_ARCHIVES[1], outputs=("images/val",), md5=md5[IMAGENET_ARCHIVES[1]],
                   origin=origin, unpack="imagenet-val", manual=manual, size_hint="6.3 GB (image-net.org)"),
    )
    return DatasetPlan(source.config, "ImageNet", source.folder, files, manual_steps=steps,
                       notes=("classnames.txt is optional: the project ships datasets/imagenet_classnames.txt",))


def _stanford_cars(source: DatasetSource, archives_dir: str) -> DatasetPlan:
    here = os.path.join(archives_dir, source.folder)
    names = ("cars_train.tgz", "cars_test.tgz", "car_devkit.tgz", "cars_test_annos_withlabels.mat")
    steps = (
        "Stanford Cars is no longer served by Stanford (ai.stanford.edu/~jkrause/ answers 404;\n"
        "torchvision dropped its download for that reason; CoOp issue 61), so a person must find the files:\n"
        f"  1. Get {', '.join(names)} (the original release)\n"
        "     from a mirror you trust (your institution, or a copy of the original files;\n"
        "     re-uploads on Kaggle and elsewhere often change the folder layout).\n"
        f"  2. Put them into {here}/, or pass --mirror URL when a server holds them as <URL>/stanford_cars/<file>.\n"
        "  3. Run the same download command again: it unpacks cars_train/, cars_test/ and devkit/;\n"
        "     the split file is fetched from Google Drive as for the other datasets."
    )
    manual = "no public source: see the steps"
    files = (
        RemoteFile(**archive("cars_train.tgz", {"cars_train": "cars_train"}, manual=manual, origin=source.downloads[0])),
        RemoteFile(**archive("cars_test.tgz", {"cars_test": "cars_test"}, manual=manual, origin=source.downloads[1])),
        RemoteFile(**archive("car_devkit.tgz", {"devkit": "devkit"}, manual=manual, origin=source.downloads[3])),
        RemoteFile(name=names[3], outputs=(names[3],), manual=manual, origin=source.downloads[2]),
    ) + tuple(split_files(source))
    return DatasetPlan(source.config, "StanfordCars", source.folder, files, manual_steps=steps)


def _ucf101(source: DatasetSource, archives_dir: str) -> DatasetPlan:
    here = os.path.join(archives_dir, source.folder)
    drive_id = "10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O"  # CoOp's DATASETS.md (the mid-frame archive)
    steps = (
        "UCF-101-midframes.zip (the middle frame of every UCF101 video, made by the CoOp authors) exists\n"
        "only on Google Drive, which refuses large automatic downloads when its daily quota is used up.\n"
        "If its download failed:\n"
        f"  1. Open https://drive.google.com/uc?id={drive_id} in a browser (signed in to Google) and save the file.\n"
        f"  2. Put UCF-101-midframes.zip into {here}/.\n"
        "  3. Run the same download command again: it unpacks UCF-101-midframes/<Action_Name>/*.jpg."
    )
    files = (
        RemoteFile(**archive("UCF-101-midframes.zip", {"UCF-101-midframes": "UCF-101-midframes"},
                             drive_id=drive_id, origin="CoOp (Zhou et al.), Google Drive")),
    ) + tuple(split_files(source))
    return DatasetPlan(source.config, "UCF101", source.folder, files, manual_steps=steps)


def _from_torchvision_plans() -> Dict[str, Callable[[DatasetSource], Tuple[RemoteFile, ...]]]:
    """Datasets whose archives torchvision knows: only the layout conversion is written here."""
    return {
        # caltech-101.zip holds caltech-101/101_ObjectCategories.tar.gz (torchvision unpacks it the same way).
        "caltech101": lambda s: (from_torchvision(
            "Caltech101", "caltech-101.zip", unpack="moves", inner_archive="caltech-101/101_ObjectCategories.tar.gz",
            moves=(("101_ObjectCategories", "101_ObjectCategories"),), outputs=("101_ObjectCategories",)),),
        "oxford_pets": lambda s: (
            from_torchvision("OxfordIIITPet", "images.tar.gz", unpack="moves", moves=(("images", "images"),),
                             outputs=("images",)),
            from_torchvision("OxfordIIITPet", "annotations.tar.gz", unpack="moves",
                             moves=(("annotations", "annotations"),), outputs=("annotations",)),
        ),
        "oxford_flowers": lambda s: (
            from_torchvision("Flowers102", "102flowers.tgz", unpack="moves", moves=(("jpg", "jpg"),), outputs=("jpg",)),
            from_torchvision("Flowers102", "imagelabels.mat", outputs=("imagelabels.mat",)),
        ),
        "food101": lambda s: (from_torchvision(
            "Food101", "food-101.tar.gz", unpack="moves",
            moves=(("food-101/images", "images"), ("food-101/meta", "meta")), outputs=("images", "meta")),),
        # CoOp keeps only the archive's data/ folder, renamed fgvc_aircraft.
        "fgvc_aircraft": lambda s: (from_torchvision(
            "FGVCAircraft", "fgvc-aircraft-2013b.tar.gz", unpack="moves",
            moves=tuple((f"fgvc-aircraft-2013b/data/{rel}", rel) for rel in s.required),
            outputs=tuple(s.required)),),
        "sun397": lambda s: (
            from_torchvision("SUN397", "SUN397.tar.gz", unpack="moves", moves=(("SUN397", "SUN397"),),
                             outputs=("SUN397",)),
            # Only needed to rebuild a split without the split file; torchvision does not fetch it.
            # Copies differ in whether the txt files sit in a Partitions/ folder: install.py finds
            # a move's source at the top or one folder down.
            RemoteFile(**archive("Partitions.zip", {n: n for n in ("ClassName.txt", "Training_01.txt", "Testing_01.txt")},
                                 url=s.downloads[1], origin="SUN397 authors (Princeton)", optional=True)),
        ),
        "dtd": lambda s: (from_torchvision(
            "DTD", "dtd-r1.0.1.tar.gz", unpack="moves",
            moves=(("dtd/images", "images"), ("dtd/imdb", "imdb"), ("dtd/labels", "labels")),
            outputs=("images", "imdb", "labels")),),
        "eurosat": lambda s: (from_torchvision(
            "EuroSAT", "EuroSAT.zip", unpack="moves", moves=(("2750", "2750"),), outputs=("2750",)),),
    }


# The ImageNet variants: no installed library downloads them; URLs and checksums as published by
# their authors (md5 of imagenet-a/-r as recorded by torch-uncertainty's dataset classes).
VARIANT_FILES: Dict[str, Dict] = {
    "imagenetv2": archive(
        "imagenetv2-matched-frequency.tar.gz",
        {"imagenetv2-matched-frequency-format-val": "imagenetv2-matched-frequency-format-val"},
        url="https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-matched-frequency.tar.gz",
        origin="ImageNetV2 authors (github.com/modestyachts/ImageNetV2)"),
    "imagenet_sketch": archive(
        "ImageNet-Sketch.zip", {"sketch": "images"},
        url="https://huggingface.co/datasets/songweig/imagenet_sketch/resolve/main/data/ImageNet-Sketch.zip",
        origin="ImageNet-Sketch authors (github.com/HaohanWang/ImageNet-Sketch)"),
    "imagenet_a": archive(
        "imagenet-a.tar", {"imagenet-a": "imagenet-a"},
        url="https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar", md5="c3e55429088dc681f30d81f4726b6595",
        origin="ImageNet-A authors (github.com/hendrycks/natural-adv-examples)"),
    "imagenet_r": archive(
        "imagenet-r.tar", {"imagenet-r": "imagenet-r"},
        url="https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar", md5="a61312130a589d0ca1a8fca1f2bd3337",
        origin="ImageNet-R authors (github.com/hendrycks/imagenet-r)"),
}
VARIANT_NOTE = "classnames.txt is optional: the readers use ImageNet's (shipped as datasets/imagenet_classnames.txt)"


def build_plans(archives_dir: str) -> Dict[str, DatasetPlan]:
    """``{config: DatasetPlan}`` for every dataset the tool can plan (the 15 CoOp datasets).

    Offline: torchvision's URLs are read from the installed package, nothing is asked online.
    """
    readers = benchmark_readers()
    special = {"imagenet": _imagenet, "stanford_cars": _stanford_cars, "ucf101": _ucf101}
    torchvision_plans = _from_torchvision_plans()
    plans: Dict[str, DatasetPlan] = {}
    for config, cls in readers.items():
        source: DatasetSource = cls.source
        if config in special:
            plan = special[config](source, archives_dir)
        elif config in torchvision_plans:
            files = tuple(torchvision_plans[config](source)) + tuple(split_files(source))
            plan = DatasetPlan(config, cls.__name__, source.folder, files)
        elif config in VARIANT_FILES:
            plan = DatasetPlan(config, cls.__name__, source.folder, (RemoteFile(**VARIANT_FILES[config]),),
                               notes=(VARIANT_NOTE,))
        else:
            continue  # not a downloadable dataset (the synthetic world generates itself)
        expects = tuple(source.required) + ((source.split_file,) if source.split_file else ())
        plans[config] = replace(plan, reader=cls.__name__, expects=expects)
    return plans


def with_manual_steps(plan: DatasetPlan, archives_dir: str, root: str) -> str:
    """The person's steps for ``plan`` (its own text, or the generic one for a file torchvision
    lost), and what ``tools.data check`` then expects."""
    if plan.manual_steps:
        steps = plan.manual_steps
    else:
        here = os.path.join(archives_dir, plan.folder)
        steps = "\n".join(
            [f"  {f.name}: {f.manual}." for f in plan.files if f.manual]
            + [f"  Get these files from the dataset's page or a mirror, put them into {here}/,",
               "  and run the same download command again."]
        )
    folder = os.path.join(root, plan.folder)
    return (steps + f"\nThen `python -m tools.data check --root {root} --dataset {plan.config}` expects in {folder}/: "
            + ", ".join(plan.expects) + ", and reads a sample of its test images.")


def select_plans(plans: Dict[str, DatasetPlan], names: Sequence[str]) -> List[DatasetPlan]:
    """The plans for ``names`` (config names, reader class names, or ``all``), in the given order."""
    if not names or "all" in names:
        return list(plans.values())
    chosen: List[DatasetPlan] = []
    readers = benchmark_readers()
    for name in names:
        match = [p for p in plans.values() if name in (p.config, p.reader)]
        if not match and any(name in (config, cls.__name__) for config, cls in readers.items()):
            raise SystemExit(f"{name} has nothing to download (its reader builds the data itself); "
                             f"choose among: all, {', '.join(plans)}")
        if not match:
            raise SystemExit(f"Unknown dataset {name!r}; choose among: all, {', '.join(plans)}")
        if match[0] not in chosen:
            chosen.append(match[0])
    return chosen
