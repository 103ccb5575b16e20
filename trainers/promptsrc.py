"""PromptSRC (Khattak et al., ICCV 2023): IVLP's prompts, regulated by the frozen CLIP
(muzairkhattak/PromptSRC ``trainers/promptsrc.py``).

Loss, with ``^`` the L2-normalised features, ``p`` the prompted and ``z`` the frozen model:

    CE(s f^_p T^_p', y) + TEXT_LOSS_WEIGHT * mean|T^_p - T^_z| + IMAGE_LOSS_WEIGHT * mean|f^_p - f^_z|
        + sum_{b,c} KL(softmax(s f^_z T^_z') || softmax(s f^_p T^_p')) / (B * C)

``T_z``: the mean over the 60 ``IMAGENET_TEMPLATES`` of the frozen CLIP's *unnormalised*
per-template features of each class name (computed once, in float32, as upstream's fp32
teacher); ``f_z``: the image tower without prompts (exactly zero-shot CLIP's) on the same
augmented batch. At test time only the prompted branch runs.

Gaussian prompt aggregation (GPA, ``trainers/parts/self_regulation.py``): after epoch ``t`` (1-based) the prompts are added to a
running sum with weight ``N(t; GPA_MEAN, GPA_STD)``, the weights normalised over the
``MAX_EPOCH`` epochs; after the last epoch the sum replaces the prompts and is what
``model.pth.tar-<MAX_EPOCH>`` holds, so the final test and eval-only runs use it.

Differences from upstream (docs/upstream-differences.md, "PromptSRC"): GPA averages the
prompt tensors only (upstream: the whole state dict, frozen CLIP included) and its running sum
is in every epoch checkpoint, so a resumed run ends with the same weights (upstream's resume
silently saves non-GPA weights); ``PREC fp32`` and ``amp`` work (upstream crashes); CLIP is
loaded once, not three times.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy

from .common.model import PromptCLIP
from .common.trainer import LossOutput, PromptTrainer
from .config import register_config
from .parts.self_regulation import (
    GaussianPromptAggregation,
    GPATrainerMixin,
    SelfRegulation,
    announce_gpa,
    gpa_epoch_weights,
    self_regulated_prompt_config_node,
)
from .parts.vl_prompts import CHECKPOINT_NAME, VLPromptLearner, build_vl_prompt_learner, translate_upstream_state_dict


@register_config
def promptsrc_config(cfg) -> None:
    cfg.TRAINER.PROMPTSRC = self_regulated_prompt_config_node()


@TRAINER_REGISTRY.register()
class PromptSRC(GPATrainerMixin, PromptTrainer):
    CFG_NODE = "PROMPTSRC"
    PROMPT_LEARNER = VLPromptLearner

    def build_prompt_learner(self, classnames: Sequence[str], clip_model: nn.Module, **overrides) -> VLPromptLearner:
        return build_vl_prompt_learner(
            classnames, clip_model, self.method_cfg, f"TRAINER.{self.CFG_NODE}", self.PROMPT_LEARNER, **overrides
        )

    def trainable_modules(self) -> Dict[str, nn.Module]:
        return {CHECKPOINT_NAME: self.model.prompt_learner}

    def translate_checkpoint(self, name: str, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return translate_upstream_state_dict(state_dict)

    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        node = self.method_cfg
        self.gpa = GaussianPromptAggregation(node.GPA_MEAN, node.GPA_STD, cfg.OPTIM.MAX_EPOCH)
        announce_gpa(self.gpa)
        self.self_regulation = SelfRegulation(node.TEXT_LOSS_WEIGHT, node.IMAGE_LOSS_WEIGHT)
        return PromptCLIP(clip_model, self.build_prompt_learner(classnames, clip_model))

    def compute_loss(self, image: torch.Tensor, label: torch.Tensor) -> LossOutput:
        model = self.model
        text_features = model.text_features()
        image_features = model.encode_image(image)
        logits = model.logits(image_features, text_features)
        losses = {"loss_ce": F.cross_entropy(logits, label)}
        losses.update(self.self_regulation.losses(model, image, image_features, text_features, logits))
        return losses, {"acc": compute_accuracy(logits, label)[0]}


__all__ = ["PromptSRC", "gpa_epoch_weights", "promptsrc_config"]
