"""The dataset registry and its factory."""
from __future__ import annotations

from dassl.utils.registry import Registry, check_availability

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg):
    """Instantiate ``DATASET_REGISTRY[cfg.DATASET.NAME](cfg)``."""
    available = DATASET_REGISTRY.registered_names()
    check_availability(cfg.DATASET.NAME, available)
    if cfg.VERBOSE:
        print(f"Loading dataset: {cfg.DATASET.NAME}")
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
