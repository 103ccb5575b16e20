"""A tiny randomly initialised CLIP for tests: real BPE vocabulary, small widths.

``clip.model.build_model`` infers the architecture from tensor shapes and uses
``heads = width // 64``, so widths are multiples of 64.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import torch

from trainers.common.openai_clip import clip

VOCAB_SIZE = 49408  # CLIP's BPE vocabulary: real tokenizer ids must be valid rows
CONTEXT_LENGTH = 77


def build_tiny_clip(
    image_resolution: int = 32,
    patch_size: int = 16,
    vision_width: int = 64,
    vision_layers: int = 1,
    text_width: int = 64,
    text_layers: int = 2,
    embed_dim: int = 32,
    seed: int = 0,
) -> clip.model.CLIP:
    """The float32 model itself (random weights from ``seed``)."""
    for width in (vision_width, text_width):
        if width % 64:
            raise ValueError(f"widths must be multiples of 64 (heads = width // 64), got {width}")
    if image_resolution % patch_size:
        raise ValueError("image_resolution must be a multiple of patch_size")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = clip.model.CLIP(
            embed_dim,
            image_resolution, vision_layers, vision_width, patch_size,
            CONTEXT_LENGTH, VOCAB_SIZE, text_width, text_width // 64, text_layers,
        )
        # CLIP's init leaves biases at zero and a uniform token scale; random
        # biases make the tests sensitive to every term of the computation.
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith("bias"):
                    param.normal_(std=0.02)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def make_tiny_clip(path: Union[str, Path], image_resolution: int = 32, **kwargs) -> Path:
    """Write a tiny ViT CLIP state dict to ``path`` (loadable by ``clip.model.build_model``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = build_tiny_clip(image_resolution=image_resolution, **kwargs)
    torch.save(model.state_dict(), path)
    return path


__all__ = ["VOCAB_SIZE", "build_tiny_clip", "make_tiny_clip"]
