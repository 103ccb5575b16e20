"""Rendered images as the tiny CLIP's input, shared by its pretraining and its story check.

The normalisation is CLIP's, as the CoOp test transform applies it (``INPUT.PIXEL_MEAN`` /
``INPUT.PIXEL_STD`` of the trainers' configs).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def images_to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 HxWx3 images -> normalised float batch, as the CoOp test transform does."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std
