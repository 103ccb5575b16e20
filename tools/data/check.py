"""``check`` and ``download-splits``: a data root against the expected layouts; the CoOp split files.

``check`` prints, per dataset, which folders and files are present or missing, whether
a sample of images can be read, and the exact fix. The exit code is 1 when a checked
dataset is not usable.
"""
from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from tabulate import tabulate

from dassl.config import get_cfg_default
from dassl.data.datasets import DATASET_REGISTRY
from dassl.data.datasets.protocol import DatasetSource
from dassl.utils.tools import read_image

import datasets  # noqa: F401  (registers the readers)

N_SAMPLE_IMAGES = 5
OK, MISSING, FAILED = "ok", "MISSING", "FAILED"


def benchmark_readers() -> Dict[str, type]:
    """``{config name: reader class}`` for every registered reader that has a download source."""
    readers = {}
    for name in DATASET_REGISTRY.registered_names():
        cls = DATASET_REGISTRY.get(name)
        source = getattr(cls, "source", None)
        if isinstance(source, DatasetSource):
            readers[source.config] = cls
    return dict(sorted(readers.items()))


def select(readers: Dict[str, type], name: Optional[str]) -> Dict[str, type]:
    """All readers, or the one named by its config name or registered class name."""
    if name is None:
        return readers
    for config, cls in readers.items():
        if name in (config, cls.__name__):
            return {config: cls}
    raise SystemExit(f"Unknown dataset {name!r}; choose one of: {', '.join(readers)}")


def reader_cfg(root: str, name: str):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = root
    cfg.DATASET.NAME = name
    return cfg


def sample_images(dataset) -> Tuple[str, str]:
    """Try to read a few images spread over the test split."""
    items = dataset.test or []
    if not items:
        return FAILED, "the test split is empty"
    step = max(1, len(items) // N_SAMPLE_IMAGES)
    picks = items[::step][:N_SAMPLE_IMAGES]
    errors = []
    for item in picks:
        try:
            read_image(item.impath)
        except OSError as err:
            errors.append(str(err))
    if errors:
        return FAILED, f"{len(picks) - len(errors)}/{len(picks)} readable; " + "; ".join(errors[:2])
    return OK, f"{len(picks)}/{len(picks)} readable ({len(items)} test images, {dataset.num_classes} classes)"


def check_dataset(root: str, cls: type) -> Tuple[bool, List[List[str]], List[str]]:
    """``(usable, table rows, fixes)`` for one dataset."""
    source: DatasetSource = cls.source
    dataset_dir = os.path.join(root, source.folder)
    rows: List[List[str]] = []
    fixes: List[str] = []

    def row(what: str, path: str, present: bool, note: str = "") -> bool:
        rows.append([what, path, OK if present else MISSING, note])
        return present

    if not row("dataset folder", dataset_dir, os.path.isdir(dataset_dir)):
        fixes.append(source.fix(root) + f"\nOr let the tool do it: python -m tools.data download --root {root} {source.config}")
        return False, rows, fixes
    layout_ok = all([row("required", os.path.join(dataset_dir, rel), os.path.exists(os.path.join(dataset_dir, rel)))
                     for rel in source.required])
    if not layout_ok:
        fixes.append(source.fix(root) + f"\nOr let the tool do it: python -m tools.data download --root {root} {source.config}")
    split_ok = True
    if source.split_file:
        split_path = os.path.join(dataset_dir, source.split_file)
        split_ok = row("split file", split_path, os.path.isfile(split_path),
                       "" if os.path.isfile(split_path) else "without it a new, unpublished split is created")
        if not split_ok:
            fixes.append(
                f"Fetch {source.split_file} (Google Drive id {source.split_drive_id}) into {dataset_dir}/: "
                f"python -m tools.data download-splits --root {root} --dataset {source.config}"
            )
    for name, drive_id in source.extra_files.items():
        path = os.path.join(dataset_dir, name)
        row("extra file", path, os.path.isfile(path), f"optional; Google Drive id {drive_id}")
    if not (layout_ok and split_ok):  # loading would create a split: check never writes one
        return False, rows, fixes
    try:
        dataset = cls(reader_cfg(root, cls.__name__))
    except (OSError, ValueError, KeyError) as err:
        rows.append(["reader", cls.__name__, FAILED, str(err).splitlines()[0]])
        fixes.append(str(err))
        return False, rows, fixes
    status, note = sample_images(dataset)
    rows.append(["images", "sample of the test split", status, note])
    if status != OK:
        fixes.append(f"Some images cannot be read: re-download or re-unpack {source.folder}. {source.fix(root)}")
    return status == OK, rows, fixes


def cmd_check(root: str, name: Optional[str]) -> int:
    root = os.path.abspath(os.path.expanduser(root))
    summary = []
    for config, cls in select(benchmark_readers(), name).items():
        usable, rows, fixes = check_dataset(root, cls)
        print(f"\n== {config} ({cls.__name__}) ==")
        print(tabulate(rows, headers=["item", "path", "status", "note"]))
        for fix in fixes:
            print("\nFix:\n" + fix)
        summary.append([config, "ready" if usable else "NOT READY"])
    print("\n" + tabulate(summary, headers=["dataset", "status"]))
    return 0 if all(status == "ready" for _, status in summary) else 1


def drive_files(source: DatasetSource) -> List[Tuple[str, str]]:
    """``(file name, Drive id)`` pairs that ``download-splits`` fetches for a dataset."""
    files = [(source.split_file, source.split_drive_id)] if source.split_file else []
    return files + list(source.extra_files.items())


def cmd_download_splits(root: str, name: Optional[str]) -> int:
    import gdown

    root = os.path.abspath(os.path.expanduser(root))
    failures = 0
    for config, cls in select(benchmark_readers(), name).items():
        for filename, drive_id in drive_files(cls.source):
            target = os.path.join(root, cls.source.folder, filename)
            if os.path.isfile(target):
                print(f"{config}: {target} already present")
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                result = gdown.download(id=drive_id, output=target, quiet=True)
                error = None if result else "gdown returned no file"
            except Exception as err:  # gdown/requests raise many types; all mean "not fetched"
                error = f"{type(err).__name__}: {err}"
            if error is None and os.path.isfile(target):
                print(f"{config}: downloaded {target}")
                continue
            failures += 1
            print(
                f"{config}: could not download {filename} ({error}).\n"
                f"  Is the network available? Otherwise download https://drive.google.com/uc?id={drive_id} "
                f"by hand and save it as {target}",
                file=sys.stderr,
            )
    return 1 if failures else 0
