"""Where the project's caches live, and how a cache names the CLIP computation it holds.

``$SEMPT_CACHE_DIR`` (default ``~/.cache/sempt``) holds the description embeddings
(``descriptions/``, ``trainers/parts/description_bank.py``) and the image features
(``features/``: the store is ``dassl/features/store.py``, attached to a trainer by
``trainers/common/feature_cache.py``).

``backbone_key`` names the CLIP weights; ``compute_identity`` names a computation of image
features (everything but the image: weights, encoder, precision, chunk size, torch and
the device), the folder the features' shards go to.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Tuple

import torch

from .openai_clip import clip

if TYPE_CHECKING:  # imported for annotations only: this module stays light (description caches)
    from .image_encoder import ImageEncoder
    from .precision import Precision

PROJECT_CACHE_ENV = "SEMPT_CACHE_DIR"


def project_cache_dir() -> Path:
    """``$SEMPT_CACHE_DIR`` or ``~/.cache/sempt``."""
    return Path(os.environ.get(PROJECT_CACHE_ENV) or "~/.cache/sempt").expanduser()


def file_identity(path: Path) -> str:
    """A weights file's identity for caches: resolved path, size and modification time."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def backbone_key(backbone: str, checkpoint: Path | str, dtype: torch.dtype, variant: str = "") -> str:
    """Identity of the CLIP weights (at ``dtype``; ``variant``: anything else the outputs depend
    on, e.g. the precision mode and device) whose outputs a cache holds.

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
        identity = file_identity(checkpoint)
    digest = hashlib.sha256(f"{identity}|{dtype}{'|' + variant if variant else ''}".encode()).hexdigest()[:16]
    readable = "".join(ch if ch.isalnum() else "-" for ch in Path(backbone).stem)[:40]
    return f"{readable}-{digest}"


def default_feature_cache_dir() -> Path:
    """``$SEMPT_CACHE_DIR/features`` or ``~/.cache/sempt/features``."""
    return project_cache_dir() / "features"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: torch.device) -> str:
    """What decides the bits a kernel produces on ``device``: the chip (BLAS libraries pick
    their blocking from it), the libraries and, on the CPU, the number of threads (how a
    reduction is split between them can change its last bits: measured with 3 threads
    against 1, 2 and 4)."""
    device = torch.device(device)
    if device.type == "cuda":
        return (
            f"{torch.cuda.get_device_name(device)} cuda {torch.version.cuda} cudnn {torch.backends.cudnn.version()} "
            f"tf32 {torch.backends.cuda.matmul.allow_tf32}/{torch.backends.cudnn.allow_tf32}"
        )
    if device.type == "cpu":
        return f"cpu {_cpu_model()} {torch.backends.cpu.get_cpu_capability()} threads {torch.get_num_threads()}"
    return device.type


def compute_identity(
    backbone: str, encoder: "ImageEncoder", precision: "Precision", chunk: int, device: torch.device
) -> Tuple[str, Dict[str, Any]]:
    """``(id, description)`` of the computation of image features: everything but the image.

    ``backbone`` is :func:`backbone_key` of the checkpoint.
    """
    description = {
        "backbone": backbone,
        "encoder": type(encoder.visual).__name__,
        "input_resolution": int(getattr(encoder.visual, "input_resolution", 0)),
        "weight_dtype": str(encoder.dtype),
        "precision": precision.name,
        "autocast": str(precision.autocast_dtype),
        "chunk": int(chunk),
        "torch": torch.__version__,
        "device": device_description(device),
    }
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:12]
    return f"{backbone}-{precision.name}-{digest}", description


__all__ = [
    "PROJECT_CACHE_ENV",
    "backbone_key",
    "compute_identity",
    "default_feature_cache_dir",
    "device_description",
    "file_identity",
    "project_cache_dir",
]
