"""The CoOp data protocol, written once: split files, class subsampling, few-shot caches.

Upstream keeps these helpers on ``OxfordPets`` / ``DTD`` and every reader repeats the
same ``__init__``. Here they are plain functions plus :class:`CoOpDataset`, a base class
that runs the whole protocol (read split -> few-shot via cache -> subsample) so that a
reader only says where its files are and how to create its split.

Behaviour matches upstream (CoOp's ``datasets/oxford_pets.py`` and ``datasets/dtd.py`` helpers),
with the fixes of docs/upstream-differences.md, "Datasets and caches":

* few-shot caches we write are JSON rows ``[relpath, label, classname]`` relative to the
  dataset folder, so a moved data root keeps working;
* an upstream ``split_fewshot/shot_K-seed_S.pkl`` (``Datum`` objects with absolute
  paths, maybe from another root) is read and remapped, so users keep their splits;
* caches go into the dataset folder when it is writable, else into
  ``DATASET.CACHE_DIR`` (default: the user cache dir); reading never needs write access;
* ``SEED < 0`` (unseeded) samples are never cached;
* ``subsample_classes`` is O(N) with a dict.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from dassl.utils.atomic_io import atomic_write_bytes
from dassl.utils.tools import listdir_nohidden

from .base_dataset import DatasetBase, Datum

DataSource = List[Datum]
Splits = Tuple[DataSource, DataSource, DataSource]

# base / new: the base-to-novel protocol (the first ceil(n/2) labels / the rest). pseudo_base /
# pseudo_new split the *base* labels the same way again, so hyper-parameters can be chosen on
# a base-to-novel problem made of base classes only, never looking at a novel class.
SUBSAMPLE_CHOICES = ("all", "base", "new", "pseudo_base", "pseudo_new")
FEWSHOT_DIRNAME = "split_fewshot"
VAL_SHOTS_CAP = 4  # upstream samples val with min(K, 4) shots


# ----------------------------------------------------------------------------- errors
class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder or file is missing; the message names the path and the fix."""


# ----------------------------------------------------------------------- split files
def read_json_file(path: str, fix: str) -> Any:
    """``json.load`` of ``path``; a truncated or damaged file raises ``ValueError`` naming it and ``fix``."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON (truncated or damaged: {err}). {fix}") from None


def _relpath(impath: str, prefix: str) -> str:
    """``impath`` relative to ``prefix`` (string slicing: no filesystem access)."""
    return (impath[len(prefix):] if impath.startswith(prefix) else impath).lstrip("/\\")


def read_split(filepath: str, path_prefix: str) -> Splits:
    """Read a ``split_zhou_*.json`` file into ``(train, val, test)`` lists of ``Datum``.

    Items keep the file order (few-shot sampling depends on it); image paths are
    ``os.path.join(path_prefix, relpath)``.
    """
    print(f"Reading split from {filepath}")
    split = read_json_file(
        filepath, "Delete it and fetch the official one (python -m tools.data download-splits), "
        "or let the dataset reader write it again."
    )
    missing = [key for key in ("train", "val", "test") if key not in split]
    if missing:
        raise ValueError(
            f"{filepath} lacks the keys {missing}; it is not a CoOp split file. "
            "Delete it and fetch the official one (python -m tools.data download-splits)."
        )

    def _convert(rows: Sequence[Sequence[Any]]) -> DataSource:
        return [Datum(os.path.join(path_prefix, rel), int(label), 0, cname) for rel, label, cname in rows]

    return _convert(split["train"]), _convert(split["val"]), _convert(split["test"])


def _items_to_rows(items: Iterable[Datum], prefix: str) -> List[List[Any]]:
    return [[_relpath(item.impath, prefix), item.label, item.classname] for item in items]


def _write_json_atomic(obj: Any, path: str, indent: Optional[int] = None) -> None:
    """Write JSON atomically (``dassl.utils.atomic_io``), so parallel runs never read a half file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    text = json.dumps(obj, indent=indent, separators=(",", ": ") if indent else (",", ":"))
    atomic_write_bytes(path, text.encode("utf-8"))


def save_split(train: DataSource, val: DataSource, test: DataSource, filepath: str, path_prefix: str) -> None:
    """Write ``(train, val, test)`` as a CoOp split file (relative paths, indent 4)."""
    split = {name: _items_to_rows(items, path_prefix) for name, items in (("train", train), ("val", val), ("test", test))}
    _write_json_atomic(split, filepath, indent=4)
    print(f"Saved split to {filepath}")


# ----------------------------------------------------------------- class subsampling
def subsample_classes(*splits: DataSource, subsample: str = "all") -> List[DataSource]:
    """Keep the base (first ``ceil(n/2)``) or new (remaining) labels, relabelled from 0; the
    ``pseudo_`` choices split the base labels in the same way.

    The label set comes from the first split (the train split, after few-shot), as
    upstream. Returns one list per input split (the inputs unchanged for ``"all"``).
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(
            f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, got {subsample!r}"
        )
    if subsample == "all":
        return list(splits)
    labels = sorted({item.label for item in splits[0]})
    m = math.ceil(len(labels) / 2)
    if subsample.startswith("pseudo_"):
        labels = labels[:m]
        m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample.endswith("base") else labels[m:]
    relabeler = {old: new for new, old in enumerate(selected)}
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    output = []
    for split in splits:
        output.append([
            Datum(item.impath, relabeler[item.label], 0, item.classname)
            for item in split
            if item.label in relabeler
        ])
    return output


# -------------------------------------------------------------------- split creation
def split_trainval(trainval: DataSource, p_val: float = 0.2) -> Tuple[DataSource, DataSource]:
    """Split per class into train/val with ``n_val = round(p_val * n)`` (uses ``random``)."""
    print(f"Splitting trainval into {1 - p_val:.0%} train and {p_val:.0%} val")
    tracker: Dict[int, List[int]] = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)
    train, val = [], []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        if n_val < 1:
            raise ValueError(f"label {label} has {len(idxs)} trainval images: too few to hold out a val image")
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def read_and_split_data(
    image_dir: str,
    p_trn: float = 0.5,
    p_val: float = 0.2,
    ignored: Sequence[str] = (),
    new_cnames: Optional[Mapping[str, str]] = None,
) -> Splits:
    """Create a split from ``image_dir/<class>/<image>`` (upstream ``DTD.read_and_split_data``).

    Classes are the sorted folder names (minus ``ignored``); each class is shuffled
    with ``random`` and cut ``round(p_trn*n)`` / ``round(p_val*n)`` / rest. Unlike
    upstream, images are sorted before shuffling, so the result does not depend on
    the filesystem's listing order.
    """
    categories = sorted(c for c in listdir_nohidden(image_dir) if c not in ignored)
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {1 - p_trn - p_val:.0%} test")
    train, val, test = [], [], []
    for label, category in enumerate(categories):
        category_dir = os.path.join(image_dir, category)
        images = [os.path.join(category_dir, im) for im in listdir_nohidden(category_dir, sort=True)]
        random.shuffle(images)
        n_train, n_val = round(len(images) * p_trn), round(len(images) * p_val)
        if n_train < 1 or n_val < 1 or len(images) - n_train - n_val < 1:
            raise ValueError(f"{category_dir} has {len(images)} images: too few for a train/val/test split")
        cname = new_cnames.get(category, category) if new_cnames else category
        for part, chunk in (
            (train, images[:n_train]),
            (val, images[n_train:n_train + n_val]),
            (test, images[n_train + n_val:]),
        ):
            part.extend(Datum(im, label, 0, cname) for im in chunk)
    return train, val, test


# ------------------------------------------------------------------- cache locations
def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/sempt/datasets`` (``~/.cache/sempt/datasets``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sempt", "datasets")


class DatasetCache:
    """Where a dataset's derived files live: its own folder if writable, else a cache dir.

    ``find(rel)`` looks in both places (the dataset folder first) and never writes;
    ``write_path(rel)`` picks the dataset folder when it is writable, otherwise
    ``<cache_dir>/<dataset folder name>/rel``.
    """

    def __init__(self, dataset_dir: str, cache_dir: str = "") -> None:
        self.dataset_dir = dataset_dir
        base = os.path.abspath(os.path.expanduser(cache_dir)) if cache_dir else default_cache_dir()
        self.fallback_dir = os.path.join(base, os.path.basename(os.path.normpath(dataset_dir)))

    def candidates(self, rel: str) -> List[str]:
        return [os.path.join(self.dataset_dir, rel), os.path.join(self.fallback_dir, rel)]

    def find(self, rel: str) -> Optional[str]:
        for path in self.candidates(rel):
            if os.path.isfile(path):
                return path
        return None

    def write_path(self, rel: str) -> str:
        target = os.path.join(self.dataset_dir, rel)
        parent = os.path.dirname(target)
        probe = parent if os.path.isdir(parent) else self.dataset_dir
        if os.access(probe, os.W_OK):
            return target
        return os.path.join(self.fallback_dir, rel)

    def write_json(self, rel: str, obj: Any, indent: Optional[int] = None) -> str:
        """Write ``obj`` at ``write_path(rel)``; falls back to the cache dir on a permission error."""
        path = self.write_path(rel)
        try:
            _write_json_atomic(obj, path, indent)
        except PermissionError:
            path = os.path.join(self.fallback_dir, rel)
            _write_json_atomic(obj, path, indent)
        return path


# --------------------------------------------------------------- upstream pickle I/O
class _DatumUnpickler(pickle.Unpickler):
    """Unpickles upstream Dassl caches, which hold only ``Datum`` objects and builtins.

    Refusing every other global keeps a stray pickle from running arbitrary code.
    """

    _ALLOWED = {("dassl.data.datasets.base_dataset", "Datum"): Datum}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"unexpected object {module}.{name} in a dataset cache; only Dassl Datum lists are read"
            ) from None


def _remap_root(items: DataSource, dataset_dir: str, source: str) -> DataSource:
    """Rebase absolute paths written under another data root onto ``dataset_dir``.

    The old dataset folder is found in the first path as the last component named like
    the current dataset folder; every item must share that prefix.
    """
    if not items:
        return items
    new_prefix = dataset_dir.rstrip("/\\")
    first = items[0].impath
    if first.startswith(new_prefix + os.sep):
        old_prefix = new_prefix
    else:
        name = os.path.basename(new_prefix)
        parts = first.replace("\\", "/").split("/")
        hits = [i for i, part in enumerate(parts[:-1]) if part == name]
        if not hits:
            raise ValueError(
                f"{source}: image path {first!r} does not contain the dataset folder name {name!r}, "
                "so it cannot be mapped to this data root. Delete the file to resample."
            )
        old_prefix = first[: len("/".join(parts[: hits[-1] + 1]))]
    if old_prefix == new_prefix:
        return items
    cut = len(old_prefix)
    out = []
    for item in items:
        if not item.impath.startswith(old_prefix):
            raise ValueError(f"{source}: {item.impath!r} is not under {old_prefix!r}; delete the file to resample.")
        out.append(Datum(new_prefix + item.impath[cut:], item.label, item.domain, item.classname))
    return out


def load_upstream_pickle(path: str, dataset_dir: str) -> Dict[str, DataSource]:
    """Read an upstream Dassl pickle (``{"train": [Datum], ...}``), remapping old roots."""
    with open(path, "rb") as f:
        data = _DatumUnpickler(f).load()
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not an upstream Dassl cache (expected a dict of Datum lists)")
    return {key: _remap_root(list(items), dataset_dir, path) for key, items in data.items()}


# ---------------------------------------------------------------------- few-shot cache
class FewShotCache:
    """``split_fewshot/shot_K-seed_S`` caches: JSON (ours) or upstream ``.pkl``."""

    FORMAT = "sempt-fewshot"
    VERSION = 1

    def __init__(self, cache: DatasetCache) -> None:
        self.cache = cache

    @staticmethod
    def stem(num_shots: int, seed: int) -> str:
        return f"{FEWSHOT_DIRNAME}/shot_{num_shots}-seed_{seed}"

    def load(self, num_shots: int, seed: int) -> Optional[Dict[str, DataSource]]:
        """The cached split, or ``None``. An upstream pickle wins so users keep their splits."""
        stem = self.stem(num_shots, seed)
        pkl = os.path.join(self.cache.dataset_dir, stem + ".pkl")
        if os.path.isfile(pkl):
            print(f"Loading preprocessed few-shot data from {pkl}")
            return load_upstream_pickle(pkl, self.cache.dataset_dir)
        path = self.cache.find(stem + ".json")
        if path is None:
            return None
        print(f"Loading preprocessed few-shot data from {path}")
        data = read_json_file(path, "Delete it: the few-shot split is sampled again, identically (it depends "
                                    "only on the seed), and saved anew.")
        if not isinstance(data, dict) or data.get("format") != self.FORMAT:
            raise ValueError(f"{path} is not a SemPT few-shot cache; delete it to resample")
        prefix = self.cache.dataset_dir
        return {
            key: [Datum(os.path.join(prefix, rel), int(label), 0, cname) for rel, label, cname in rows]
            for key, rows in data["splits"].items()
        }

    def save(self, num_shots: int, seed: int, splits: Mapping[str, DataSource]) -> str:
        obj = {
            "format": self.FORMAT,
            "version": self.VERSION,
            "num_shots": num_shots,
            "seed": seed,
            "splits": {key: _items_to_rows(items, self.cache.dataset_dir) for key, items in splits.items()},
        }
        path = self.cache.write_json(self.stem(num_shots, seed) + ".json", obj)
        print(f"Saving preprocessed few-shot data to {path}")
        return path


# --------------------------------------------------------------------- source records
@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset comes from and what its folder must contain (for errors and the check tool).

    ``required`` are paths relative to the dataset folder that must exist;
    ``extra_files`` maps other fetchable files to their Google Drive ids.
    """

    config: str  # configs/datasets/<config>.yaml
    folder: str  # folder under $DATA
    downloads: Tuple[str, ...]  # archives / pages to fetch
    required: Tuple[str, ...]
    split_file: Optional[str] = None
    split_drive_id: Optional[str] = None
    extra_files: Mapping[str, str] = field(default_factory=dict)
    notes: str = ""

    def fix(self, root: str) -> str:
        """Human instructions that turn ``root`` into a valid tree for this dataset."""
        target = os.path.join(root, self.folder)
        lines = [f"Download {' and '.join(self.downloads)}", f"and unpack it into {target}/ so that it holds: "
                 + ", ".join(r + ("/" if "." not in os.path.basename(r) else "") for r in self.required) + "."]
        if self.notes:
            lines.append(self.notes)
        if self.split_file:
            lines.append(
                f"The split file {self.split_file} (Google Drive id {self.split_drive_id}) goes to {target}/: "
                f"python -m tools.data download-splits --root {root} --dataset {self.config}"
            )
        for name, drive_id in self.extra_files.items():
            lines.append(f"{name}: Google Drive id {drive_id}, into {target}/.")
        lines.append(f"Check with: python -m tools.data check --root {root} --dataset {self.config} (see DATASETS.md)")
        return "\n".join(lines)


def missing_error(
    reader: str, source: Optional[DatasetSource], root: str, what: str, path: str
) -> DatasetNotFoundError:
    """An error naming the missing ``path`` and how to fix the data root."""
    fix = source.fix(root) if source else "See DATASETS.md."
    return DatasetNotFoundError(f"{reader}: {what} not found: {path}\n{fix}")


def check_layout(reader: str, source: Optional[DatasetSource], root: str, dataset_dir: str) -> None:
    """Fail early, naming the first missing folder/file and the fix, before any reading."""
    if not os.path.isdir(dataset_dir):
        raise missing_error(reader, source, root, "dataset folder", dataset_dir)
    for rel in source.required if source else ():
        path = os.path.join(dataset_dir, rel)
        if not os.path.exists(path):
            raise missing_error(reader, source, root, "required path", path)


# ------------------------------------------------------------------------ base reader
def cfg_dataset_options(cfg: Any) -> Tuple[str, int, str, str, int]:
    """``(root, num_shots, subsample, cache_dir, seed)`` from a config, validated (see also
    ``DATASET.VAL_FEWSHOT``, read by :class:`CoOpDataset`)."""
    ds = cfg.DATASET
    root = os.path.abspath(os.path.expanduser(ds.ROOT))
    subsample = ds.get("SUBSAMPLE_CLASSES", "all")
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(
            f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, got {subsample!r}"
        )
    return root, int(ds.NUM_SHOTS), subsample, ds.get("CACHE_DIR", "") or "", int(cfg.SEED)


class CoOpDataset(DatasetBase):
    """Base of the CoOp benchmark readers: read split -> few-shot (cached) -> subsample.

    Subclasses set ``dataset_dir`` (folder under ``DATASET.ROOT``), ``image_subdir``,
    ``split_filename`` and ``source``, and override :meth:`create_split` when
    upstream can build the split from the raw download. ``read_splits`` may be
    overridden by datasets without a split file.
    """

    dataset_dir = ""
    image_subdir = ""
    split_filename: Optional[str] = None
    split_prefix_is_dataset_dir = False  # StanfordCars stores paths like cars_train/x.jpg
    fewshot_keys: Tuple[str, ...] = ("train", "val")
    source: Optional[DatasetSource] = None

    # Upstream-compatible aliases (forks call e.g. ``OxfordPets.read_split``).
    read_split = staticmethod(read_split)
    save_split = staticmethod(save_split)
    subsample_classes = staticmethod(subsample_classes)
    split_trainval = staticmethod(split_trainval)
    read_and_split_data = staticmethod(read_and_split_data)

    def __init__(self, cfg: Any) -> None:
        root, num_shots, subsample, cache_dir, seed = cfg_dataset_options(cfg)
        self.root = root
        self.dataset_dir = os.path.join(root, type(self).dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        self.split_path = os.path.join(self.dataset_dir, self.split_filename) if self.split_filename else None
        self.split_fewshot_dir = os.path.join(self.dataset_dir, FEWSHOT_DIRNAME)
        self.cache = DatasetCache(self.dataset_dir, cache_dir)
        self.check_layout()

        splits = dict(zip(("train", "val", "test"), self.read_splits()))
        whole_val = splits.get("val")
        splits.update(self.fewshot(splits, num_shots, seed))
        if not cfg.DATASET.get("VAL_FEWSHOT", True) and whole_val is not None:
            # The whole val split (upstream samples min(K, 4) per class, too few to choose
            # hyper-parameters on); the few-shot train samples and their cache are unchanged.
            splits["val"] = whole_val
        names = list(splits)
        splits = dict(zip(names, subsample_classes(*splits.values(), subsample=subsample)))
        super().__init__(train_x=splits["train"], val=splits.get("val"), test=splits["test"])

    # -- layout -------------------------------------------------------------------
    def missing_error(self, what: str, path: str) -> DatasetNotFoundError:
        return missing_error(type(self).__name__, self.source, self.root, what, path)

    def check_layout(self) -> None:
        check_layout(type(self).__name__, self.source, self.root, self.dataset_dir)

    # -- splits -------------------------------------------------------------------
    @property
    def split_prefix(self) -> str:
        return self.dataset_dir if self.split_prefix_is_dataset_dir else self.image_dir

    def read_splits(self) -> Splits:
        """The official split file if present; else create it as upstream (uses ``random``)."""
        assert self.split_filename, "datasets without a split file override read_splits()"
        path = self.cache.find(self.split_filename)
        if path is not None:
            return read_split(path, self.split_prefix)
        splits = self.create_split()
        if splits is None:
            raise self.missing_error("split file", self.split_path)
        print(
            f"WARNING: {self.split_path} is missing, so a new split was created with `random`. "
            "It differs from the published split and shifts the few-shot sampling; "
            f"fetch the official file with `python -m tools.data download-splits --root {self.root}`."
        )
        rows = {name: _items_to_rows(items, self.split_prefix) for name, items in zip(("train", "val", "test"), splits)}
        print(f"Saved split to {self.cache.write_json(self.split_filename, rows, indent=4)}")
        return splits

    def create_split(self) -> Optional[Splits]:
        """Build ``(train, val, test)`` from the raw download; ``None`` if not possible."""
        return None

    # -- few-shot -----------------------------------------------------------------
    def fewshot(self, splits: Mapping[str, DataSource], num_shots: int, seed: int) -> Dict[str, DataSource]:
        """Few-shot ``fewshot_keys`` splits: train K shots, val ``min(K, 4)``, cached per (K, seed)."""
        if num_shots < 1:
            return {}
        fewshot_cache = FewShotCache(self.cache)
        cached = fewshot_cache.load(num_shots, seed)
        if cached is not None:
            missing = [key for key in self.fewshot_keys if key not in cached]
            if missing:
                raise ValueError(f"few-shot cache for shot {num_shots} seed {seed} lacks {missing}; delete it to resample")
            return {key: cached[key] for key in self.fewshot_keys}
        sampled = {}
        for key in self.fewshot_keys:  # train first: the RNG order is upstream's
            shots = num_shots if key == "train" else min(num_shots, VAL_SHOTS_CAP)
            sampled[key] = self.generate_fewshot_dataset(splits[key], num_shots=shots)
        if seed >= 0:  # an unseeded sample is not reproducible, so never reuse it
            fewshot_cache.save(num_shots, seed, sampled)
        return sampled


__all__ = [
    "CoOpDataset",
    "DatasetCache",
    "DatasetNotFoundError",
    "DatasetSource",
    "FewShotCache",
    "cfg_dataset_options",
    "check_layout",
    "missing_error",
    "default_cache_dir",
    "load_upstream_pickle",
    "read_and_split_data",
    "read_split",
    "save_split",
    "split_trainval",
    "subsample_classes",
]
