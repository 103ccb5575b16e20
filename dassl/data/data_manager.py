"""``DataManager``, ``DatasetWrapper`` and ``build_data_loader`` (upstream Dassl's ``dassl/data/data_manager.py``).

Reproducibility beyond upstream (docs/upstream-differences.md, "Data augmentation"):

- a training loader shuffles with its own ``torch.Generator`` seeded from torch's global
  RNG when the loader is built (so ``SEED`` fixes it) and exposed as ``loader.generator``
  (the trainer checkpoints its state, so a resumed run sees the same batches);
- the random augmentation of training item ``i`` in epoch ``e`` is a pure function of
  ``(augment seed, e, i)`` (:func:`sample_seed`): the item is transformed under its own
  seed with the global RNGs forked, so it does not depend on ``NUM_WORKERS``, on the
  batch size or on anything else drawn in the run, and draws nothing from the run's RNG.
  The augment seed is ``SEED`` (or, unseeded, one value drawn per run); the trainer
  tells the dataset the epoch (``DatasetWrapper.set_epoch``);
- evaluation loaders get a private fixed generator, so evaluating never consumes the
  global RNG that training depends on.

Each item also says what it is (``sample_key``: the image file, the transform and, for
training, the augmentation seed; ``sample_group``), so that results computed from its
pixels alone (the frozen image features of ``dassl/features/``) can be reused. Batches
carry that identity with their images (``dassl/data/batch.py``: ``ImageBatch``); a
wrapper told that the pixels are not needed (``pixels_needed = False``) skips reading the
images, and its batches' ``img`` is then an ``ImageBatch`` naming the items, without pixels.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import random
import secrets
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import PIL
import torch
import torchvision
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset as TorchDataset, RandomSampler, SequentialSampler
from torchvision.transforms import Compose, Normalize, Resize, ToTensor

from dassl.cpu_allocation import capped_workers
from dassl.utils import read_image

from .batch import ITEM_GROUP, ITEM_KEY, collate_items
from .datasets import Datum, build_dataset
from .transforms import INTERPOLATION_MODES, build_transform

__all__ = [
    "DataManager",
    "DatasetWrapper",
    "build_data_loader",
    "build_sampler",
    "sample_seed",
    "seed_worker",
    "transform_fingerprint",
]

SAMPLERS = ("RandomSampler", "SequentialSampler")


def sample_seed(augment_seed: int, epoch: int, index: int) -> int:
    """The seed of item ``index``'s augmentation in ``epoch``: a 63-bit hash of the three numbers."""
    digest = hashlib.blake2b(f"{augment_seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def run_augment_seed(seed: int) -> int:
    """``SEED`` when fixed; otherwise one value for the run, drawn without touching the seeded RNGs."""
    return int(seed) if seed >= 0 else secrets.randbits(62)


def transform_fingerprint(transform: Any) -> Optional[str]:
    """What makes a transform's output: its description and the versions of the libraries
    that compute it, or None when it cannot be described (a callable without a ``repr``
    of its own prints its memory address, which names no computation)."""
    described = repr(transform)
    if " at 0x" in described:
        return None
    return f"{described}|torchvision {torchvision.__version__}|PIL {PIL.__version__}"


@contextlib.contextmanager
def _fork_global_rngs(seed: int) -> Iterator[None]:
    """Run a block with Python's, NumPy's and torch's CPU RNGs seeded by ``seed``, then put them back."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def seed_worker(worker_id: int) -> None:
    """Seed a worker's ``random``/NumPy from the per-worker torch seed the loader assigned."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def build_sampler(sampler_type: str, data_source: Sequence[Datum], generator: Optional[torch.Generator] = None):
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source, generator=generator)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    raise ValueError(
        f'Unknown sampler "{sampler_type}"; this engine supports {list(SAMPLERS)} '
        "(set DATALOADER.TRAIN_X.SAMPLER / DATALOADER.TEST.SAMPLER)"
    )


class DatasetWrapper(TorchDataset):
    """Reads and transforms one ``Datum``; items are dicts (``img``, ``label``, ``index``, ...).

    A training wrapper (``is_train``) with an ``augment_seed`` transforms item ``i`` in
    epoch ``e`` (``set_epoch(e)``) under the seed ``sample_seed(augment_seed, e, i)``,
    with the global RNGs forked, so the augmented image is a pure function of the three
    numbers. Without an augment seed the transforms draw from the global RNGs (upstream).

    When every item is one image tensor made from its file, the transform and (training)
    its seed alone (``describes_samples``), items also carry ``sample_key``, a digest of
    exactly that, and ``sample_group`` (the dataset and split, plus seed and epoch for
    training). Setting ``pixels_needed = False`` then skips reading the images, for a
    consumer that already has what it computes from the pixels: items have no ``img``, and
    the loader's batches hold an ``ImageBatch`` without pixels there (``collate_items``).
    """

    def __init__(
        self, cfg, data_source: Sequence[Datum], transform=None, is_train: bool = False,
        augment_seed: Optional[int] = None,
    ) -> None:
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform  # a callable, or a list/tuple of callables
        self.is_train = is_train
        self.augment_seed = augment_seed
        self.epoch = 0
        # K augmented views per image, training only.
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise ValueError(
                f"DATALOADER.K_TRANSFORMS={self.k_tfm} needs a transform; set INPUT.NO_TRANSFORM False"
            )
        to_tensor: List[Callable] = [
            Resize(tuple(cfg.INPUT.SIZE), interpolation=INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]),
            ToTensor(),
        ]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            to_tensor.append(Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = Compose(to_tensor)
        self._pixels_needed = True
        self._file_identities: Dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.data_source)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentations the next items get (training)."""
        self.epoch = int(epoch)

    # -- what an item is -------------------------------------------------------
    @property
    def describes_samples(self) -> bool:
        """Whether each item is one image tensor determined by its file, the transform and
        (training) its augmentation seed alone, so that ``sample_key`` names it."""
        single = self.transform is not None and not isinstance(self.transform, (list, tuple))
        seeded = not self.is_train or self.augment_seed is not None
        return single and seeded and self.k_tfm == 1 and not self.return_img0 and self._fingerprint() is not None

    def _fingerprint(self) -> Optional[str]:
        if not hasattr(self, "_transform_fingerprint"):
            self._transform_fingerprint = transform_fingerprint(self.transform)
        return self._transform_fingerprint

    def sample_group(self) -> str:
        """``<dataset>/eval``, or ``<dataset>/train/seed<S>/epoch<E>``: the items whose keys belong together."""
        name = self.cfg.DATASET.NAME or "unnamed"
        if not self.is_train:
            return f"{name}/eval"
        return f"{name}/train/seed{self.augment_seed}/epoch{self.epoch}"

    def file_identity(self, idx: int) -> str:
        """The image file of item ``idx``: its path relative to ``DATASET.ROOT``, size and modification time."""
        identity = self._file_identities.get(idx)
        if identity is None:
            impath = self.data_source[idx].impath
            try:
                stat = os.stat(impath)
            except FileNotFoundError:
                read_image(impath)  # raises the error that names the path and the fix
                raise
            root = os.path.abspath(self.cfg.DATASET.ROOT) if self.cfg.DATASET.ROOT else ""
            path = os.path.abspath(impath)
            if root and path.startswith(root + os.sep):
                path = os.path.relpath(path, root)
            identity = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
            self._file_identities[idx] = identity
        return identity

    def sample_key(self, idx: int) -> str:
        """A digest of what item ``idx``'s image tensor is made from (see ``describes_samples``)."""
        if not self.describes_samples:
            raise ValueError("sample_key: the items of this wrapper are not determined by their file and seed alone")
        augmentation = sample_seed(self.augment_seed, self.epoch, idx) if self.is_train else "-"
        text = f"{self.file_identity(idx)}\n{self._fingerprint()}\n{augmentation}"
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    @property
    def pixels_needed(self) -> bool:
        return self._pixels_needed

    @pixels_needed.setter
    def pixels_needed(self, needed: bool) -> None:
        if not needed and not self.describes_samples:
            raise ValueError("Only a wrapper whose items are described by sample_key can skip reading images")
        self._pixels_needed = bool(needed)

    # -- items -----------------------------------------------------------------
    def __getitem__(self, idx: int) -> Dict[str, Any]:
        item = self.data_source[idx]
        output: Dict[str, Any] = {
            "label": item.label,
            "domain": item.domain,
            "impath": item.impath,
            "index": idx,
        }
        if self.describes_samples:
            output[ITEM_KEY] = self.sample_key(idx)
            output[ITEM_GROUP] = self.sample_group()
        if not self._pixels_needed:
            return output  # the batch's img names these items instead (collate_items)
        if self.is_train and self.augment_seed is not None:
            with _fork_global_rngs(sample_seed(self.augment_seed, self.epoch, idx)):
                self._read_and_transform(item.impath, output)
        else:
            self._read_and_transform(item.impath, output)
        return output

    def _read_and_transform(self, impath: str, output: Dict[str, Any]) -> None:
        img0 = read_image(impath)
        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                output["img" if i == 0 else f"img{i + 1}"] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)

    def _transform_image(self, tfm: Callable, img0):
        views = [tfm(img0) for _ in range(self.k_tfm)]
        return views[0] if len(views) == 1 else views


def build_data_loader(
    cfg,
    sampler_type: str = "SequentialSampler",
    data_source: Optional[Sequence[Datum]] = None,
    batch_size: int = 64,
    n_domain: int = 0,
    n_ins: int = 2,
    tfm=None,
    is_train: bool = True,
    dataset_wrapper=None,
    generator: Optional[torch.Generator] = None,
) -> DataLoader:
    """A ``DataLoader`` over ``data_source`` (upstream signature + ``generator``).

    Training loaders drop the last incomplete batch when there is at least one full
    batch (as upstream). Without a ``generator`` a training loader seeds one from
    torch's global RNG; evaluation loaders use a fixed private one. A training loader's
    dataset augments each item under its own seed (``DatasetWrapper``), from ``SEED``
    (unseeded runs: one value drawn for the run).
    """
    if not data_source:
        raise ValueError("build_data_loader() got an empty data source")
    if generator is None:
        generator = torch.Generator()
        if is_train:
            generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        else:
            generator.manual_seed(0)
    sampler = build_sampler(sampler_type, data_source, generator=generator)
    wrapper = (dataset_wrapper or DatasetWrapper)(cfg, data_source, transform=tfm, is_train=is_train)
    if is_train:
        # Set after construction: wrappers written for upstream Dassl take no such argument.
        wrapper.augment_seed = run_augment_seed(cfg.SEED)
    loader = DataLoader(
        wrapper,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=capped_workers(cfg.DATALOADER.NUM_WORKERS),  # never more than the CPUs allocated
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
        worker_init_fn=seed_worker,
        generator=generator,
        collate_fn=collate_items,
    )
    if len(loader) == 0:
        raise ValueError(f"The data loader is empty ({len(data_source)} items, batch size {batch_size})")
    return loader


def check_loader_config(cfg) -> None:
    """Refuse loader settings no loader can run with, naming the key (before any data is read)."""
    for key in ("TRAIN_X", "TRAIN_U", "TEST"):
        size = cfg.DATALOADER[key].BATCH_SIZE
        if size < 1:
            raise ValueError(f"DATALOADER.{key}.BATCH_SIZE is {size}; a batch size must be at least 1 "
                             f"(e.g. DATALOADER.{key}.BATCH_SIZE 32)")
    if cfg.DATALOADER.NUM_WORKERS < 0:
        raise ValueError(f"DATALOADER.NUM_WORKERS is {cfg.DATALOADER.NUM_WORKERS}; use 0 (load in the main "
                         "process) or more")


class DataManager:
    """Builds the dataset, its transforms and its loaders from ``cfg``.

    ``train_loader_x`` is ``None`` for test-only datasets (``dataset.is_test_only``).
    """

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None) -> None:
        check_loader_config(cfg)
        dataset = build_dataset(cfg)
        tfm_train = custom_tfm_train if custom_tfm_train is not None else build_transform(cfg, is_train=True)
        tfm_test = custom_tfm_test if custom_tfm_test is not None else build_transform(cfg, is_train=False)

        self.train_loader_x: Optional[DataLoader] = None
        if not dataset.is_test_only:
            self.train_loader_x = build_data_loader(
                cfg,
                sampler_type=cfg.DATALOADER.TRAIN_X.SAMPLER,
                data_source=dataset.train_x,
                batch_size=cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
                n_domain=cfg.DATALOADER.TRAIN_X.N_DOMAIN,
                n_ins=cfg.DATALOADER.TRAIN_X.N_INS,
                tfm=tfm_train,
                is_train=True,
                dataset_wrapper=dataset_wrapper,
            )

        self.train_loader_u: Optional[DataLoader] = None
        if dataset.train_u:
            u = cfg.DATALOADER.TRAIN_X if cfg.DATALOADER.TRAIN_U.SAME_AS_X else cfg.DATALOADER.TRAIN_U
            self.train_loader_u = build_data_loader(
                cfg,
                sampler_type=u.SAMPLER,
                data_source=dataset.train_u,
                batch_size=u.BATCH_SIZE,
                n_domain=u.N_DOMAIN,
                n_ins=u.N_INS,
                tfm=tfm_train,
                is_train=True,
                dataset_wrapper=dataset_wrapper,
            )

        def eval_loader(data_source):
            return build_data_loader(
                cfg,
                sampler_type=cfg.DATALOADER.TEST.SAMPLER,
                data_source=data_source,
                batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
                tfm=tfm_test,
                is_train=False,
                dataset_wrapper=dataset_wrapper,
            )

        self.val_loader: Optional[DataLoader] = eval_loader(dataset.val) if dataset.val else None
        if not dataset.test:
            raise ValueError(f"Dataset {cfg.DATASET.NAME} has no test split")
        self.test_loader: DataLoader = eval_loader(dataset.test)

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset
        self.tfm_train = tfm_train
        self.tfm_test = tfm_test
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def num_source_domains(self) -> int:
        return self._num_source_domains

    @property
    def lab2cname(self) -> Dict[int, str]:
        return self._lab2cname

    def show_dataset_summary(self, cfg) -> None:
        rows = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            rows.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            rows.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        rows.append(["# classes", f"{self.num_classes:,}"])
        if self.dataset.train_x:
            rows.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            rows.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            rows.append(["# val", f"{len(self.dataset.val):,}"])
        rows.append(["# test", f"{len(self.dataset.test):,}"])
        print(tabulate(rows))
