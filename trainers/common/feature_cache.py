"""Attaching the engine's image-feature server to a CLIP model's frozen image encoder.

The pieces are generic and live on the engine floor: the store on disk
(``dassl/features/store.py``), the run-time server (``dassl/features/serving.py``) and the
items' identity, which batches carry (``dassl/data/batch.py``: ``ImageBatch``). What is
CLIP's is here and in ``cache_identity.py``: which encoder of a model is frozen, what
identifies its computation, and the ``FEATURE_CACHE`` config node (docs/feature-cache.md).

After :func:`attach_feature_server`, the encoder's calls without prompts on an
``ImageBatch`` are served by the items' keys (``ImageEncoder.forward``); plain tensors
are computed canonically.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from dassl.features import FeatureStore, ImageFeatureServer

from .cache_identity import compute_identity, default_feature_cache_dir
from .image_encoder import ImageEncoder
from .precision import Precision


def attach_feature_server(
    model: nn.Module, cfg, precision: Precision, device: torch.device, backbone: str
) -> Tuple[Optional[ImageFeatureServer], str]:
    """Attach a server to ``model``'s frozen image encoder; return it (or None) and why not.

    A server serves only calls without prompts, so it is safe on any frozen encoder; it
    is not attached when the model says its image features depend on what it learns
    (``image_features_are_fixed`` False), or when it has several image towers.
    ``backbone`` is :func:`~trainers.common.cache_identity.backbone_key` of the checkpoint.
    """
    if getattr(model, "image_features_are_fixed", None) is False:
        return None, "the image features depend on what the method learns"
    encoders = [m for m in model.modules() if isinstance(m, ImageEncoder)]
    frozen = [e for e in encoders if not any(p.requires_grad for p in e.parameters())]
    if not frozen:
        return None, "no frozen image encoder"
    if len({id(e.visual) for e in frozen}) > 1:
        return None, "the model has several image towers"
    node = cfg.get("FEATURE_CACHE")
    if node is None:
        raise KeyError("cfg.FEATURE_CACHE is not defined: build the config with trainers.config.extend_cfg(cfg)")
    chunk = int(node.CHUNK)
    if chunk < 1:
        raise ValueError(f"FEATURE_CACHE.CHUNK={node.CHUNK}: images per encoder call must be >= 1")
    compute_id, description = compute_identity(backbone, frozen[0], precision, chunk, device)
    store = None
    if node.ENABLED:
        max_bytes = int(float(node.MAX_SIZE_GB) * 2**30) if float(node.MAX_SIZE_GB) > 0 else None
        store = FeatureStore(node.DIR or default_feature_cache_dir(), max_bytes)
        store.describe(compute_id, description)
        store.remove_stale_temporaries()
    server = ImageFeatureServer(
        encode=frozen[0].compute, context=precision.exact_autocast, device=torch.device(device), chunk=chunk,
        compute_id=compute_id, store=store, persist_training=cfg.SEED >= 0,
    )
    for encoder in frozen:
        encoder.feature_server = server
    return server, ""


__all__ = ["attach_feature_server"]
