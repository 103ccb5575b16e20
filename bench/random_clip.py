"""Randomly initialised CLIP checkpoints in the released OpenAI layout, for the benchmarks."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import torch

# clip.model.CLIP's arguments: embed_dim, image_resolution, vision_layers, vision_width,
# patch, context, vocab, text width, heads, layers.
VIT_B16: Tuple[int, ...] = (512, 224, 12, 768, 16, 77, 49408, 512, 8, 12)


def write_random_clip(path: Path, arch: Tuple[int, ...]) -> int:
    """Write a seeded random CLIP of ``arch`` to ``path`` (fp16 matrices, as the released
    checkpoints); return its image resolution."""
    from trainers.common.openai_clip import clip

    torch.manual_seed(0)
    model = clip.model.CLIP(*arch)
    clip.model.convert_weights(model)
    torch.save(model.state_dict(), path)
    return arch[1]
