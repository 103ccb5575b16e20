"""PromptSRC's self-regulation and Gaussian prompt aggregation (Khattak et al., ICCV 2023;
muzairkhattak/PromptSRC ``trainers/promptsrc.py``). Used by PromptSRC and by SemPT's
``promptsrc`` label branch.

* ``SelfRegulation``: the three regularisers towards the frozen CLIP (text features, image
  features, logits).
* ``GaussianPromptAggregation`` (GPA): after epoch ``t`` (1-based) the prompts are added to a
  running sum with weight ``N(t; mean, std)``, normalised over the ``MAX_EPOCH`` epochs; after
  the last epoch the sum replaces the prompts. ``GPATrainerMixin`` runs it from a trainer's
  hooks and keeps its running sum in every epoch checkpoint (exact resume).
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from dassl.config import CfgNode

from ..common.model import PromptCLIP
from ..common.templates import IMAGENET_TEMPLATES
from ..common.text_encoder import class_text_features
from .vl_prompts import vl_prompt_config_node


def self_regulated_prompt_config_node() -> CfgNode:
    """Upstream's ``TRAINER.PROMPTSRC`` keys and defaults (upstream train.py = the base-to-novel
    config): the IVLP prompt keys, the loss weights and GPA's Gaussian. Integers, as upstream's
    YAMLs write them (the config types must match)."""
    node = vl_prompt_config_node(n_ctx_text=4, n_ctx_vision=4, depth_text=9, depth_vision=9)
    node.TEXT_LOSS_WEIGHT = 25  # lambda of the L1 term on the class text features
    node.IMAGE_LOSS_WEIGHT = 10  # lambda of the L1 term on the image features
    node.GPA_MEAN = 15  # GPA: Gaussian over the 1-based epochs, mean ...
    node.GPA_STD = 1  # ... and standard deviation
    return node


def gpa_epoch_weights(mean: float, std: float, n_epochs: int, config_prefix: str = "TRAINER.PROMPTSRC") -> List[float]:
    """GPA weight of each epoch ``t = 1 .. n_epochs``: the normal density ``N(t; mean, std)``,
    normalised to sum to 1 (float64, as upstream's NumPy computation)."""
    if std <= 0:
        raise ValueError(f"{config_prefix}.GPA_STD must be > 0, got {std}")
    if n_epochs < 1:
        raise ValueError(f"GPA needs at least one epoch, got OPTIM.MAX_EPOCH={n_epochs}")
    epochs = np.arange(1, n_epochs + 1, dtype=np.float64)
    density = np.exp(-0.5 * ((epochs - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))
    total = density.sum()
    if not total > 0:
        raise ValueError(
            f"GPA_MEAN={mean}, GPA_STD={std}: every epoch 1..{n_epochs} has weight 0 (underflow); "
            "put GPA_MEAN within the epochs or widen GPA_STD"
        )
    return [float(w) for w in density / total]


class SelfRegulation:
    """PromptSRC's regularisers towards the frozen CLIP (its "teacher"), for any ``PromptCLIP``
    whose prompts reach the towers: used by PromptSRC and by SemPT's ``promptsrc`` label branch.

    ``teacher_text``: the mean over the 60 ``IMAGENET_TEMPLATES`` of the frozen text tower's
    *unnormalised* per-template features (then normalised), computed on first use (evaluation
    never needs it), in float32 whatever PREC (upstream's teacher is an fp32 copy of the
    fp16-rounded CLIP). The image teacher is the image tower without prompts (exactly zero-shot
    CLIP's) on the same augmented batch.
    """

    def __init__(self, text_weight: float, image_weight: float) -> None:
        self.text_weight = text_weight
        self.image_weight = image_weight
        self.teacher_text: Optional[torch.Tensor] = None  # not saved: rebuilt from the run's class names

    @torch.no_grad()
    def teacher_text_features(self, model: PromptCLIP) -> torch.Tensor:
        if self.teacher_text is None:
            encoder = model.text_encoder
            if encoder.dtype != torch.float32:
                encoder = copy.deepcopy(encoder).float()
            with torch.autocast(model.logit_scale.device.type, enabled=False):
                self.teacher_text = class_text_features(
                    encoder, model.prompt_learner.classnames, IMAGENET_TEMPLATES, normalize_templates=False
                )
        return self.teacher_text

    @staticmethod
    @torch.no_grad()
    def teacher_image_features(model: PromptCLIP, image: torch.Tensor) -> torch.Tensor:
        """Normalised features of the frozen image tower (no prompts: zero-shot CLIP's)."""
        return F.normalize(model.image_encoder(image), dim=-1)

    def losses(
        self, model: PromptCLIP, image: torch.Tensor, image_features: torch.Tensor,
        text_features: torch.Tensor, logits: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        """The three terms, from the prompted features and logits the caller computed."""
        zs_text = self.teacher_text_features(model)
        zs_image = self.teacher_image_features(model, image)
        zs_logits = model.logits(zs_image, zs_text.to(zs_image.dtype))
        # The regularisers in float32: exact in fp32, and stable under fp16/amp.
        kl = F.kl_div(
            F.log_softmax(logits.float(), dim=1), F.log_softmax(zs_logits.float(), dim=1),
            reduction="sum", log_target=True,
        )
        return {
            "loss_scl_text": self.text_weight * F.l1_loss(text_features.float(), zs_text),
            "loss_scl_image": self.image_weight * F.l1_loss(image_features.float(), zs_image.float()),
            "loss_scl_logits": kl / logits.numel(),  # per logit (B * C), not per image
        }


class GaussianPromptAggregation:
    """GPA: the prompts after each epoch, weighted by ``gpa_epoch_weights``, summed in float32
    (the fp16 context of ``PREC fp16`` would otherwise sum its rounding errors)."""

    def __init__(self, mean: float, std: float, n_epochs: int, config_prefix: str = "TRAINER.PROMPTSRC") -> None:
        self.weights = gpa_epoch_weights(mean, std, n_epochs, config_prefix)
        self.sum: Optional[Dict[str, torch.Tensor]] = None
        self.epochs = 0

    @property
    def complete(self) -> bool:
        return self.epochs == len(self.weights)

    def add(self, prompts: Dict[str, torch.Tensor], epoch: int) -> None:
        """Add the prompts after 1-based ``epoch`` with its weight."""
        if epoch != self.epochs + 1:
            raise RuntimeError(
                f"GPA holds {self.epochs} epochs but epoch {epoch} just ended; the running sum is restored "
                "from the checkpoint on resume, so this checkpoint was not written by a GPA training"
            )
        weight = self.weights[epoch - 1]
        weighted = {k: v.detach().float() * weight for k, v in prompts.items()}
        self.sum = weighted if self.sum is None else {k: self.sum[k] + weighted[k] for k in weighted}
        self.epochs = epoch

    def checkpoint_state(self) -> Dict[str, Any]:
        if self.sum is None:
            return {}
        return {"gpa_sum": self.sum, "gpa_epochs": self.epochs, "gpa_weights": self.weights}

    def restore(self, extras: Dict[str, Any], epoch: int, where: str, device: torch.device) -> None:
        """The running sum of a run resumed after ``epoch`` epochs, from its checkpoint's extras."""
        if extras.get("gpa_epochs") != epoch:
            raise RuntimeError(
                f"The checkpoint of epoch {epoch} in {where} holds no GPA state for it, so the Gaussian "
                "prompt aggregate cannot be completed; train in a new folder"
            )
        if list(extras["gpa_weights"]) != self.weights:
            raise RuntimeError(
                "The run being resumed used other GPA weights (GPA_MEAN, GPA_STD or OPTIM.MAX_EPOCH changed); "
                "resume with the same config or train in a new folder"
            )
        self.sum = {k: v.to(device) for k, v in extras["gpa_sum"].items()}
        self.epochs = epoch


class GPATrainerMixin:
    """Trainer hooks running ``self.gpa`` (a :class:`GaussianPromptAggregation`, or None: off) on
    ``self.model.prompt_learner``: accumulate after each epoch, deploy after the last (so
    ``model.pth.tar-<MAX_EPOCH>`` holds the aggregate), keep the running sum in every epoch
    checkpoint and restore it on resume (upstream's resumed runs silently lost it)."""

    gpa: Optional[GaussianPromptAggregation] = None

    def after_epoch(self) -> None:
        if self.gpa is not None:
            self.gpa.add(self.model.prompt_learner.state_dict(), self.epoch + 1)
            if self.gpa.complete:
                print("Using the GPA model (Gaussian-weighted prompts of all epochs) for the final model")
                self.model.prompt_learner.load_state_dict(self.gpa.sum)
        super().after_epoch()  # saves the epoch checkpoint (with the GPA state, see checkpoint_extras)

    def checkpoint_extras(self) -> Dict[str, Any]:
        extras = super().checkpoint_extras()
        if self.gpa is not None:
            extras.update(self.gpa.checkpoint_state())
        return extras

    def before_train(self) -> None:
        super().before_train()  # resumes from the output folder's last checkpoint, if any
        if self.gpa is None or self.start_epoch == 0 or self.start_epoch >= self.max_epoch:
            return  # a fresh run, or a finished one (its last checkpoint holds the GPA model)
        device = next(self.model.prompt_learner.parameters()).device
        self.gpa.restore(self.loaded_extras, self.start_epoch, self.cfg.RESUME or self.output_dir, device)


def announce_gpa(gpa: GaussianPromptAggregation) -> None:
    print("GPA weight per epoch: " + ", ".join(f"{t + 1}: {w:.3f}" for t, w in enumerate(gpa.weights)))


__all__ = [
    "GPATrainerMixin",
    "GaussianPromptAggregation",
    "SelfRegulation",
    "announce_gpa",
    "gpa_epoch_weights",
    "self_regulated_prompt_config_node",
]
