"""Turn a fetched archive into the CoOp layout the readers read.

An archive is unpacked into a staging folder next to it (``$DATA/archives/<folder>/.unpack-<name>``),
then each of its paths is moved to its place in the dataset folder with one rename. A dataset
path therefore appears only whole: an interrupted unpack leaves the staging folder, which the
next run deletes and redoes. Unpacking uses torchvision's ``extract_archive`` and, for
ImageNet, its ILSVRC-2012 archive parsers.
"""
from __future__ import annotations

import os
import shutil
from typing import Dict, Optional

from .fetch import FetchError
from .sources import RemoteFile


def _staging(archive_path: str) -> str:
    folder, name = os.path.split(archive_path)
    staging = os.path.join(folder, f".unpack-{name}")
    if os.path.exists(staging):  # left by an interrupted run: start again
        shutil.rmtree(staging)
    os.makedirs(staging)
    return staging


def _extract(archive_path: str, into: str) -> None:
    from torchvision.datasets.utils import extract_archive

    try:
        extract_archive(archive_path, into)
    except Exception as err:  # tarfile/zipfile/gzip raise many types: all mean a bad archive
        raise FetchError(f"cannot unpack {archive_path}: {type(err).__name__}: {err}. "
                         "Delete it to fetch it again.") from None


def _find(staging: str, src: str) -> Optional[str]:
    """``src`` inside the unpacked tree: at its path, or inside one wrapping folder."""
    direct = os.path.join(staging, src)
    if os.path.exists(direct):
        return direct
    for entry in sorted(os.scandir(staging), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith("__MACOSX"):
            candidate = os.path.join(entry.path, src)
            if os.path.exists(candidate):
                return candidate
    return None


def _move_into_place(staging: str, moves, dataset_dir: str, archive_path: str) -> None:
    missing = [src for src, _ in moves if _find(staging, src) is None]
    if missing:
        raise FetchError(f"{archive_path} does not hold {', '.join(missing)}: not the expected archive "
                         "(a mirror with another version?). Delete it to fetch it again.")
    for src, dst in moves:
        target = os.path.join(dataset_dir, dst)
        if os.path.exists(target):  # put in place by an earlier, interrupted run
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(_find(staging, src), target)


def unpack_moves(entry: RemoteFile, archive_path: str, dataset_dir: str) -> None:
    staging = _staging(archive_path)
    try:
        _extract(archive_path, staging)
        if entry.inner_archive:
            inner = os.path.join(staging, entry.inner_archive)
            if not os.path.isfile(inner):
                raise FetchError(f"{archive_path} does not hold {entry.inner_archive}: not the expected archive. "
                                 "Delete it to fetch it again.")
            _extract(inner, staging)
        _move_into_place(staging, entry.moves, dataset_dir, archive_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def unpack_imagenet(entry: RemoteFile, archive_path: str, dataset_dir: str, paths: Dict[str, str]) -> None:
    """ILSVRC-2012 through torchvision: train's per-class tars, val sorted by the devkit's labels."""
    from torchvision.datasets import imagenet as tv_imagenet

    archives_dir = os.path.dirname(archive_path)
    if entry.unpack == "imagenet-devkit":
        return  # read by the val step
    staging = _staging(archive_path)
    target = os.path.join(dataset_dir, entry.outputs[0])
    try:
        if entry.unpack == "imagenet-train":
            tv_imagenet.parse_train_archive(archives_dir, file=os.path.basename(archive_path),
                                            folder=os.path.join(staging, "train"))
            built = os.path.join(staging, "train")
        else:
            devkit = paths.get("ILSVRC2012_devkit_t12.tar.gz")
            if devkit is None:
                raise FetchError("ILSVRC2012_devkit_t12.tar.gz is needed to sort the val images into class folders")
            tv_imagenet.parse_devkit_archive(os.path.dirname(devkit), file=os.path.basename(devkit))
            wnids = tv_imagenet.load_meta_file(os.path.dirname(devkit))[1]
            tv_imagenet.parse_val_archive(archives_dir, file=os.path.basename(archive_path), wnids=wnids,
                                          folder=os.path.join(staging, "val"))
            built = os.path.join(staging, "val")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            os.replace(built, target)
    except RuntimeError as err:  # torchvision's "archive not present or corrupted"
        raise FetchError(str(err)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install(entry: RemoteFile, fetched: str, dataset_dir: str, paths: Dict[str, str]) -> None:
    """Put the fetched file ``fetched`` in place under ``dataset_dir``."""
    os.makedirs(dataset_dir, exist_ok=True)
    if entry.unpack == "file":
        target = os.path.join(dataset_dir, entry.outputs[0])
        if os.path.abspath(fetched) != os.path.abspath(target):
            shutil.copyfile(fetched, target + ".tmp")
            os.replace(target + ".tmp", target)
    elif entry.unpack == "moves":
        unpack_moves(entry, fetched, dataset_dir)
    elif entry.unpack.startswith("imagenet-"):
        unpack_imagenet(entry, fetched, dataset_dir, paths)
    else:
        raise ValueError(f"unknown unpack kind {entry.unpack!r} for {entry.name}")
