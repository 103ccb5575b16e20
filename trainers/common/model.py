"""CLIP classifiers: image features against class text features.

``CLIPClassifier`` holds what every method shares (image encoder, logit scale,
``logits``); subclasses say where the class text features come from:

* ``FixedTextCLIP``: features computed once (zero-shot CLIP);
* ``PromptCLIP``: features from a ``PromptLearner`` through the ``TextEncoder``
  (CoOp's ``CustomCLIP``; KgCoOp and SemPT extend it).

``forward(image, text_features=None)`` returns logits; trainers pass the text
features they computed once per evaluation.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .prompt_learner import PromptLearner
from .text_encoder import TextEncoder


class CLIPClassifier(nn.Module):
    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.image_encoder = clip_model.visual
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features."""
        return F.normalize(self.image_encoder(image.to(self.dtype)), dim=-1)

    def text_features(self) -> torch.Tensor:
        """L2-normalised class text features ``(n_cls, dim)``."""
        raise NotImplementedError

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale.exp() * image_features @ text_features.t()

    def forward(self, image: torch.Tensor, text_features: Optional[torch.Tensor] = None) -> torch.Tensor:
        if text_features is None:
            text_features = self.text_features()
        return self.logits(self.encode_image(image), text_features)


class FixedTextCLIP(CLIPClassifier):
    """Zero-shot classifier over precomputed (normalised) class text features."""

    def __init__(self, clip_model: nn.Module, text_features: torch.Tensor) -> None:
        super().__init__(clip_model)
        self.register_buffer("class_text_features", text_features, persistent=False)

    def text_features(self) -> torch.Tensor:
        return self.class_text_features


class PromptCLIP(CLIPClassifier):
    """CoOp's ``CustomCLIP``: learned prompts -> text features."""

    def __init__(self, clip_model: nn.Module, prompt_learner: PromptLearner) -> None:
        super().__init__(clip_model)
        self.prompt_learner = prompt_learner
        self.text_encoder = TextEncoder(clip_model)

    def text_features(self) -> torch.Tensor:
        prompts = self.prompt_learner()
        features = self.text_encoder(prompts, self.prompt_learner.tokenized_prompts)
        return F.normalize(features, dim=-1)


__all__ = ["CLIPClassifier", "FixedTextCLIP", "PromptCLIP"]
