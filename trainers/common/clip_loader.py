"""Loading CLIP: by model name (cache or download) or from a checkpoint path.

``MODEL.BACKBONE.NAME`` is either

* a CLIP model name (``RN50``, ``RN101``, ``ViT-B/32``, ``ViT-B/16``, ... see
  ``clip.available_models()``), looked up in the cache directory and downloaded
  there by the ``clip`` package when missing; or
* a path to a checkpoint file: an OpenAI JIT archive or a plain state dict (a
  ``{"state_dict": ...}`` wrapper is accepted too). The architecture is inferred
  from the tensor shapes by ``clip.model.build_model``. A relative path is looked
  up in the current directory, then in the repository root.

Environment variables:

* ``CLIP_CACHE_DIR``: where model files are looked up / downloaded
  (default ``~/.cache/clip``, the ``clip`` package's own default).
* ``CLIP_OFFLINE=1``: never try to download; fail at once with instructions.

``open_clip:<model | config.json>`` selects an open_clip model instead, with its weights in
``MODEL.BACKBONE.PRETRAINED`` (``trainers/common/open_clip_backbone.py``).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

from .open_clip_backbone import OpenCLIP, is_open_clip_name, load_open_clip
from .openai_clip import clip

CACHE_ENV = "CLIP_CACHE_DIR"
OFFLINE_ENV = "CLIP_OFFLINE"
REPO_ROOT = Path(__file__).resolve().parents[2]


def clip_cache_dir() -> Path:
    """The directory CLIP model files are cached in (``$CLIP_CACHE_DIR`` or ``~/.cache/clip``)."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/clip").expanduser()


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").lower() not in ("", "0", "false", "no")


def _cache_path(name: str) -> Path:
    return clip_cache_dir() / os.path.basename(clip.clip._MODELS[name])


def _missing_weights_error(name: str, reason: str) -> FileNotFoundError:
    url = clip.clip._MODELS[name]
    return FileNotFoundError(
        f"CLIP weights for {name!r} are not available ({reason}).\n"
        f"  Download {url}\n"
        f"  to       {_cache_path(name)}\n"
        f"or point elsewhere: set the environment variable {CACHE_ENV} to the folder holding "
        f"{os.path.basename(url)}, or set MODEL.BACKBONE.NAME to the path of a CLIP checkpoint file."
    )


def resolve_clip_checkpoint(name: str, download: Optional[bool] = None) -> Path:
    """Return the checkpoint file for a CLIP model name or path, downloading a named model if needed.

    ``download=None`` means "download unless ``CLIP_OFFLINE`` is set".
    """
    if not name:
        raise ValueError(
            "MODEL.BACKBONE.NAME is empty; set it to a CLIP model name "
            f"({', '.join(clip.available_models())}) or to a checkpoint path"
        )
    if name in clip.clip._MODELS:
        cached = _cache_path(name)
        if cached.is_file():
            # The SHA256 check of clip._download reads the whole file on every start;
            # a present file is trusted and a corrupt one fails loudly in load_clip_state_dict.
            return cached
        if download is None:
            download = not _offline()
        if not download:
            raise _missing_weights_error(name, f"not in the cache and {OFFLINE_ENV} is set")
        try:
            return Path(clip.clip._download(clip.clip._MODELS[name], str(clip_cache_dir())))
        except (OSError, RuntimeError) as err:  # URLError is an OSError
            raise _missing_weights_error(name, f"download failed: {err}") from err

    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_ROOT / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"MODEL.BACKBONE.NAME={name!r} is neither a CLIP model name "
        f"({', '.join(clip.available_models())}) nor an existing checkpoint file "
        f"(looked at: {', '.join(str(c) for c in candidates)})"
    )


def load_clip_state_dict(path: Path | str) -> Dict[str, torch.Tensor]:
    """Read a CLIP state dict from a JIT archive or a plain (optionally wrapped) state dict."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch.jit.load is deprecated, yet OpenAI ships JIT archives
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu").eval().state_dict()
    except RuntimeError:
        pass  # not a TorchScript archive: a plain state dict
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise RuntimeError(
            f"Cannot read the CLIP checkpoint {path} ({err}). If it is a partial download, "
            f"delete it and run again."
        ) from err
    if isinstance(state, dict) and "state_dict" in state and "positional_embedding" not in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or "positional_embedding" not in state:
        raise RuntimeError(f"{path} does not hold a CLIP state dict (no 'positional_embedding' key)")
    return state


def load_clip(name_or_path: str, download: Optional[bool] = None) -> clip.model.CLIP:
    """Build a CLIP model on the CPU, in the layout of ``clip.build_model`` (fp16 weights, eval mode)."""
    path = resolve_clip_checkpoint(name_or_path, download=download)
    state = load_clip_state_dict(path)
    return clip.model.build_model(dict(state))


def load_clip_to_cpu(cfg) -> nn.Module:
    """Upstream-compatible entry point: the CLIP named by ``cfg.MODEL.BACKBONE.NAME``, on the CPU
    (an open_clip one, ``open_clip:...``, with the weights of ``MODEL.BACKBONE.PRETRAINED``)."""
    name = cfg.MODEL.BACKBONE.NAME
    if is_open_clip_name(name):
        return load_open_clip(name, cfg.MODEL.BACKBONE.PRETRAINED)
    return load_clip(name)


def backbone_identity(name: str, clip_model: Optional[nn.Module] = None) -> Path | str:
    """What identifies the weights of ``MODEL.BACKBONE.NAME`` for caches: the checkpoint file
    of an OpenAI CLIP (nothing is downloaded), or the loaded open_clip model's
    :attr:`~trainers.common.open_clip_backbone.OpenCLIP.identity` (config, weights, tokenizer)."""
    if is_open_clip_name(name):
        if not isinstance(clip_model, OpenCLIP):
            raise ValueError(f"backbone_identity({name!r}) needs the loaded open_clip model")
        return clip_model.identity
    return resolve_clip_checkpoint(name, download=False)


__all__ = [
    "CACHE_ENV",
    "OFFLINE_ENV",
    "clip_cache_dir",
    "resolve_clip_checkpoint",
    "load_clip_state_dict",
    "load_clip",
    "load_clip_to_cpu",
    "backbone_identity",
]
