"""Where the project's caches live, and how a cache names the CLIP backbone it was made with.

``$SEMPT_CACHE_DIR`` (default ``~/.cache/sempt``) holds the description embeddings
(``descriptions/``, ``trainers/sempt/description_bank.py``) and the image features
(``features/``, ``trainers/common/feature_cache.py``).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .openai_clip import clip

PROJECT_CACHE_ENV = "SEMPT_CACHE_DIR"


def project_cache_dir() -> Path:
    """``$SEMPT_CACHE_DIR`` or ``~/.cache/sempt``."""
    return Path(os.environ.get(PROJECT_CACHE_ENV) or "~/.cache/sempt").expanduser()


def backbone_key(backbone: str, checkpoint: Path | str, dtype: torch.dtype) -> str:
    """Identity of the CLIP weights (at ``dtype``) whose outputs a cache holds.

    Named CLIP models are identified by the SHA-256 in their download URL; a
    checkpoint file by its resolved path, size and modification time (hashing a
    335 MB file on every start would cost more than it saves); an open_clip model by
    the identity string ``clip_loader.backbone_identity`` gives for it (model config,
    weights, tokenizer).
    """
    if isinstance(checkpoint, str):
        identity = checkpoint
    elif backbone in clip.clip._MODELS:
        identity = clip.clip._MODELS[backbone].split("/")[-2]
    else:
        stat = checkpoint.stat()
        identity = f"{checkpoint.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(f"{identity}|{dtype}".encode()).hexdigest()[:16]
    readable = "".join(ch if ch.isalnum() else "-" for ch in Path(backbone).stem)[:40]
    return f"{readable}-{digest}"


__all__ = ["PROJECT_CACHE_ENV", "project_cache_dir", "backbone_key"]
