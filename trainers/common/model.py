"""CLIP classifiers: image features against class text features.

``CLIPClassifier`` holds what every method shares (the image tower, the logit scale,
``logits``); subclasses say where the class text features come from:

* ``FixedTextCLIP``: features computed once (zero-shot CLIP, the description classifiers);
* ``PromptCLIP``: features from a ``PromptLearner`` through the ``TextEncoder`` (CoOp's
  ``CustomCLIP``; KgCoOp, SemPT and the deep-prompt methods extend it). The learner's
  deep-prompt seams (``text_deep_prompts``, ``visual_prompts``, ``visual_deep_prompts``)
  are handed to the two towers, so a method with prompts inside both towers only
  writes its learner.

``forward(image, text_features=None)`` returns logits; trainers pass the text
features they computed once per evaluation. ``encode_image(image, normalize=True)``
gives the image features L2-normalised (what the logits use) or raw (the image tower's
projected output, e.g. for a head on the features); ``image`` is a tensor or the
``ImageBatch`` a trainer received, whose features a frozen tower's cache serves.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from dassl.data.batch import ImageBatch

from .image_encoder import ImageEncoder
from .prompt_learner import PromptLearner
from .text_encoder import TextEncoder

# Sequences per checkpointed text-encoder call with activation checkpointing.
CHECKPOINT_CHUNK_SIZE = 256

#: What the image side takes: pixels, or a loader batch's images with their identities.
Images = Union[torch.Tensor, ImageBatch]


def _normalized(features: torch.Tensor, normalize: bool) -> torch.Tensor:
    return F.normalize(features, dim=-1) if normalize else features


class CLIPClassifier(nn.Module):
    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.image_encoder = ImageEncoder(clip_model.visual)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype

    @property
    def image_features_are_fixed(self) -> bool:
        """Whether ``encode_image`` depends on the image alone (nothing learned reaches the
        image tower), so its features may be computed once and reused."""
        return True

    def encode_image(self, image: Images, normalize: bool = True) -> torch.Tensor:
        """Image features ``(N, dim)``: L2-normalised, or raw (``normalize=False``: the image
        tower's projected output). The feature cache holds the raw ones, so both are served
        exactly as they are computed."""
        return _normalized(self.image_encoder(image), normalize)

    def text_features(self) -> torch.Tensor:
        """L2-normalised class text features ``(n_cls, dim)``."""
        raise NotImplementedError

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale.exp() * image_features @ text_features.t()

    def forward(self, image: Images, text_features: Optional[torch.Tensor] = None) -> torch.Tensor:
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
    """CoOp's ``CustomCLIP``: learned prompts -> text features (and, through the learner's
    seams, prompts inside the towers).

    ``activation_checkpointing`` trades compute for memory: the text side runs in chunks of
    ``CHECKPOINT_CHUNK_SIZE`` classes whose activations are recomputed in the backward pass
    (bounded memory on ImageNet's 1000 classes), and so do the image tower's blocks.
    """

    def __init__(self, clip_model: nn.Module, prompt_learner: PromptLearner, activation_checkpointing: bool = False) -> None:
        super().__init__(clip_model)
        self.prompt_learner = prompt_learner
        self.text_encoder = TextEncoder(clip_model)
        self.activation_checkpointing = activation_checkpointing

    @property
    def activation_checkpointing(self) -> bool:
        return self._activation_checkpointing

    @activation_checkpointing.setter
    def activation_checkpointing(self, enabled: bool) -> None:
        self._activation_checkpointing = bool(enabled)
        self.image_encoder.checkpointing = bool(enabled)

    @property
    def image_features_are_fixed(self) -> bool:
        return not self.prompt_learner.prompts_image_tower

    def encode_image(self, image: Images, normalize: bool = True) -> torch.Tensor:
        learner = self.prompt_learner
        features = self.image_encoder(
            image, prompts=learner.visual_prompts(), deep_prompts=learner.visual_deep_prompts()
        )
        return _normalized(features, normalize)

    def text_features(self, normalize: bool = True) -> torch.Tensor:
        """Class text features of the learned prompts ``(n_cls, dim)``, L2-normalised unless
        ``normalize`` is False."""
        learner = self.prompt_learner
        features = self.text_encoder.encode_prompts(
            learner(),
            learner.tokenized_prompts,
            deep_prompts=learner.text_deep_prompts(),
            chunk_size=CHECKPOINT_CHUNK_SIZE if self.activation_checkpointing else None,
            checkpointing=self.activation_checkpointing,
        )
        return _normalized(features, normalize)


__all__ = ["CHECKPOINT_CHUNK_SIZE", "CLIPClassifier", "FixedTextCLIP", "Images", "PromptCLIP"]
