"""Configs and reader construction for dataset tests (and any test that needs a reader)."""
from __future__ import annotations

import random
from typing import Optional

from dassl.config import get_cfg_default
from dassl.data.datasets import DATASET_REGISTRY

import datasets  # noqa: F401  (registers the readers)

# config name -> registered reader name
READERS = {
    "eurosat": "EuroSAT", "dtd": "DescribableTextures", "food101": "Food101",
    "caltech101": "Caltech101", "oxford_pets": "OxfordPets", "stanford_cars": "StanfordCars",
    "oxford_flowers": "OxfordFlowers", "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397",
    "ucf101": "UCF101", "imagenet": "ImageNet", "imagenetv2": "ImageNetV2",
    "imagenet_sketch": "ImageNetSketch", "imagenet_a": "ImageNetA", "imagenet_r": "ImageNetR",
    "synthetic": "Synthetic",
}


def make_cfg(root, name: str, shots: int = -1, subsample: str = "all", seed: int = 1, cache_dir: str = ""):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.DATASET.CACHE_DIR = str(cache_dir)
    cfg.SEED = seed
    return cfg


def load(root, name: str, shots: int = -1, subsample: str = "all", seed: int = 1,
         cache_dir: str = "", rng_seed: Optional[int] = None):
    """Build a reader; ``rng_seed`` seeds ``random`` first (what the trainer's seeding does)."""
    if rng_seed is not None:
        random.seed(rng_seed)
    return DATASET_REGISTRY.get(name)(make_cfg(root, name, shots, subsample, seed, cache_dir))
