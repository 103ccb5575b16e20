"""PromptSRC (Khattak et al., ICCV 2023): IVLP's prompts, regulated by the frozen CLIP
(muzairkhattak/PromptSRC ``trainers/promptsrc.py``).

Loss, with ``^`` the L2-normalised features, ``p`` the prompted and ``z`` the frozen model:

    CE(s f^_p T^_p', y) + TEXT_LOSS_WEIGHT * mean|T^_p - T^_z| + IMAGE_LOSS_WEIGHT * mean|f^_p - f^_z|
        + sum_{b,c} KL(softmax(s f^_z T^_z') || softmax(s f^_p T^_p')) / (B * C)

``T_z``: the mean over the 60 ``IMAGENET_TEMPLATES`` of the frozen CLIP's *unnormalised*
per-template features of each class name (computed once, in float32, as upstream's fp32
teacher); ``f_z``: the image tower without prompts (exactly zero-shot CLIP's) on the same
augmented batch. At test time only the prompted branch runs.

Gaussian prompt aggregation (GPA): after epoch ``t`` (1-based) the prompts are added to a
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

import copy
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy

from .common.model import PromptCLIP
from .common.prompt_learner import PromptLearner
from .common.templates import IMAGENET_TEMPLATES
from .common.text_encoder import class_text_features
from .common.trainer import LossOutput
from .config import register_config
from .ivlp import IVLP, vl_prompt_config_node


@register_config
def promptsrc_config(cfg) -> None:
    # Defaults as upstream train.py (= the base-to-novel config). Integers, as upstream's
    # YAMLs write them (the config types must match).
    node = vl_prompt_config_node(n_ctx_text=4, n_ctx_vision=4, depth_text=9, depth_vision=9)
    node.TEXT_LOSS_WEIGHT = 25  # lambda of the L1 term on the class text features
    node.IMAGE_LOSS_WEIGHT = 10  # lambda of the L1 term on the image features
    node.GPA_MEAN = 15  # GPA: Gaussian over the 1-based epochs, mean ...
    node.GPA_STD = 1  # ... and standard deviation
    cfg.TRAINER.PROMPTSRC = node


def gpa_epoch_weights(mean: float, std: float, n_epochs: int) -> List[float]:
    """GPA weight of each epoch ``t = 1 .. n_epochs``: the normal density ``N(t; mean, std)``,
    normalised to sum to 1 (float64, as upstream's NumPy computation)."""
    if std <= 0:
        raise ValueError(f"TRAINER.PROMPTSRC.GPA_STD must be > 0, got {std}")
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


class PromptSRCCLIP(PromptCLIP):
    """IVLP's model + the frozen teacher: ``zs_text_features`` (normalised, set by the trainer
    before the first training step) and the image tower without prompts."""

    def __init__(self, clip_model: nn.Module, prompt_learner: PromptLearner) -> None:
        super().__init__(clip_model, prompt_learner)
        # Not saved: rebuilt from the class names of the run.
        self.register_buffer("zs_text_features", None, persistent=False)

    @torch.no_grad()
    def encode_image_zero_shot(self, image: torch.Tensor) -> torch.Tensor:
        """Normalised features of the frozen image tower (no prompts: zero-shot CLIP's)."""
        return F.normalize(self.image_encoder(image), dim=-1)


@TRAINER_REGISTRY.register()
class PromptSRC(IVLP):
    CFG_NODE = "PROMPTSRC"

    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        node = self.method_cfg
        self.gpa_weights = gpa_epoch_weights(node.GPA_MEAN, node.GPA_STD, cfg.OPTIM.MAX_EPOCH)
        print("GPA weight per epoch: " + ", ".join(f"{t + 1}: {w:.3f}" for t, w in enumerate(self.gpa_weights)))
        self.gpa_sum: Optional[Dict[str, torch.Tensor]] = None
        self.gpa_epochs = 0
        return PromptSRCCLIP(clip_model, self.build_prompt_learner(classnames, clip_model))

    # -- the frozen teacher -----------------------------------------------------
    @torch.no_grad()
    def zero_shot_text_features(self) -> torch.Tensor:
        """The teacher's class features, computed on first use (evaluation never needs them)
        in float32 whatever PREC: upstream's teacher is an fp32 copy of the fp16-rounded CLIP."""
        model = self.model
        if model.zs_text_features is None:
            encoder = model.text_encoder
            if encoder.dtype != torch.float32:
                encoder = copy.deepcopy(encoder).float()
            with torch.autocast(self.device.type, enabled=False):
                features = class_text_features(
                    encoder, model.prompt_learner.classnames, IMAGENET_TEMPLATES, normalize_templates=False
                )
            model.zs_text_features = features
        return model.zs_text_features

    def compute_loss(self, image: torch.Tensor, label: torch.Tensor) -> LossOutput:
        model, node = self.model, self.method_cfg
        text_features = model.text_features()
        image_features = model.encode_image(image)
        logits = model.logits(image_features, text_features)
        zs_text = self.zero_shot_text_features()
        zs_image = model.encode_image_zero_shot(image)
        zs_logits = model.logits(zs_image, zs_text.to(zs_image.dtype))
        # The regularisers in float32: exact in fp32, and stable under fp16/amp.
        kl = F.kl_div(
            F.log_softmax(logits.float(), dim=1), F.log_softmax(zs_logits.float(), dim=1),
            reduction="sum", log_target=True,
        )
        losses = {
            "loss_ce": F.cross_entropy(logits, label),
            "loss_scl_text": node.TEXT_LOSS_WEIGHT * F.l1_loss(text_features.float(), zs_text),
            "loss_scl_image": node.IMAGE_LOSS_WEIGHT * F.l1_loss(image_features.float(), zs_image.float()),
            "loss_scl_logits": kl / logits.numel(),  # per logit (B * C), not per image
        }
        return losses, {"acc": compute_accuracy(logits, label)[0]}

    # -- Gaussian prompt aggregation -----------------------------------------------
    def prompt_state(self) -> Dict[str, torch.Tensor]:
        """The tensors GPA averages: the learner's saved state (its prompts)."""
        return self.model.prompt_learner.state_dict()

    def accumulate_gpa(self, epoch: int) -> None:
        """Add the prompts after 1-based ``epoch`` with its weight (in float32: the fp16
        context of ``PREC fp16`` would otherwise sum its rounding errors)."""
        if epoch != self.gpa_epochs + 1:
            raise RuntimeError(
                f"GPA holds {self.gpa_epochs} epochs but epoch {epoch} just ended; the running sum is restored "
                "from the checkpoint on resume, so this checkpoint was not written by PromptSRC's training"
            )
        weight = self.gpa_weights[epoch - 1]
        weighted = {k: v.detach().float() * weight for k, v in self.prompt_state().items()}
        if self.gpa_sum is None:
            self.gpa_sum = weighted
        else:
            self.gpa_sum = {k: self.gpa_sum[k] + weighted[k] for k in weighted}
        self.gpa_epochs = epoch

    def after_epoch(self) -> None:
        self.accumulate_gpa(self.epoch + 1)
        if self.gpa_epochs == len(self.gpa_weights):
            print("Using the GPA model (Gaussian-weighted prompts of all epochs) for the final model")
            self.model.prompt_learner.load_state_dict(self.gpa_sum)
        super().after_epoch()  # saves the epoch checkpoint (with the GPA state, see checkpoint_extras)

    def checkpoint_extras(self) -> Dict[str, Any]:
        extras = super().checkpoint_extras()
        if self.gpa_sum is not None:
            extras.update(gpa_sum=self.gpa_sum, gpa_epochs=self.gpa_epochs, gpa_weights=self.gpa_weights)
        return extras

    def before_train(self) -> None:
        super().before_train()  # resumes from the output folder's last checkpoint, if any
        if self.start_epoch == 0 or self.start_epoch >= self.max_epoch:
            return  # a fresh run, or a finished one (its last checkpoint holds the GPA model)
        extras = self.loaded_extras
        if extras.get("gpa_epochs") != self.start_epoch:
            raise RuntimeError(
                f"The checkpoint of epoch {self.start_epoch} in {self.cfg.RESUME or self.output_dir} holds no "
                "GPA state for it, so the Gaussian prompt aggregate cannot be completed; train in a new folder"
            )
        if list(extras["gpa_weights"]) != self.gpa_weights:
            raise RuntimeError(
                "The run being resumed used other GPA weights (GPA_MEAN, GPA_STD or OPTIM.MAX_EPOCH changed); "
                "resume with the same config or train in a new folder"
            )
        device = next(self.model.prompt_learner.parameters()).device
        self.gpa_sum = {k: v.to(device) for k, v in extras["gpa_sum"].items()}
        self.gpa_epochs = self.start_epoch


__all__ = ["PromptSRC", "PromptSRCCLIP", "gpa_epoch_weights"]
