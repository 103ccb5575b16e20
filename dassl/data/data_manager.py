"""``DataManager``, ``DatasetWrapper`` and ``build_data_loader`` (upstream Dassl's ``dassl/data/data_manager.py``).

Reproducibility beyond upstream: a training loader shuffles with its own
``torch.Generator`` seeded from torch's global RNG when the loader is built (so
``SEED`` fixes it) and exposed as ``loader.generator`` (the trainer checkpoints its
state, so a resumed run sees the same batches). Evaluation loaders get a private fixed
generator, so evaluating never consumes the global RNG that training depends on.
"""
from __future__ import annotations

import random
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset as TorchDataset, RandomSampler, SequentialSampler
from torchvision.transforms import Compose, Normalize, Resize, ToTensor

from dassl.utils import read_image

from .datasets import Datum, build_dataset
from .transforms import INTERPOLATION_MODES, build_transform

__all__ = ["DataManager", "DatasetWrapper", "build_data_loader", "build_sampler", "seed_worker"]

SAMPLERS = ("RandomSampler", "SequentialSampler")


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
    """Reads and transforms one ``Datum``; items are dicts (``img``, ``label``, ...)."""

    def __init__(self, cfg, data_source: Sequence[Datum], transform=None, is_train: bool = False) -> None:
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform  # a callable, or a list/tuple of callables
        self.is_train = is_train
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

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        item = self.data_source[idx]
        output: Dict[str, Any] = {
            "label": item.label,
            "domain": item.domain,
            "impath": item.impath,
            "index": idx,
        }
        img0 = read_image(item.impath)
        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                output["img" if i == 0 else f"img{i + 1}"] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

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
    torch's global RNG; evaluation loaders use a fixed private one.
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
    wrapper = dataset_wrapper or DatasetWrapper
    loader = DataLoader(
        wrapper(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
        worker_init_fn=seed_worker,
        generator=generator,
    )
    if len(loader) == 0:
        raise ValueError(f"The data loader is empty ({len(data_source)} items, batch size {batch_size})")
    return loader


class DataManager:
    """Builds the dataset, its transforms and its loaders from ``cfg``.

    ``train_loader_x`` is ``None`` for test-only datasets (``dataset.is_test_only``).
    """

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None) -> None:
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
