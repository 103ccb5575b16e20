"""DePT (Zhang et al., CVPR 2024, "DePT: Decoupled Prompt Tuning") on CoOp.

Upstream: Koorye/DePT ``trainers/elp_coop.py`` (``ExtrasLinearProbeCoOp``), the ``FiLM`` of
``trainers/elp_maple.py``, the defaults of its ``train.py`` and ``configs/trainers/CoOp/
vit_b16_ep10_bs4_lr35.yaml``. CoOp's prompts plus a channel-wise transformation head (cwT)
trained on the base classes:

* head: ``image_scale * f + image_bias`` for the raw (unnormalised) image features,
  ``text_scale * t + text_bias`` for the raw class text features (scales start at 1, biases
  at 0), then one linear classifier over the base classes;
* loss: ``(1 - HEAD_WEIGHT) CE(s <f^, t^>, y) + HEAD_WEIGHT CE(head([cwT(t_y); cwT(f)]), [y; y])``
  (the classifier learns from the class's text feature and the image feature alike);
* learning rate: the head at ``HEAD_LR_MULT`` (6.5) times ``OPTIM.LR``, the prompts at ``OPTIM.LR``;
* test: on the classes the head was trained on, ``(1 - HEAD_WEIGHT) CoOp logits +
  HEAD_WEIGHT head logits`` (``TEST_TIME_FUSION``); on any other class set (the new classes,
  another dataset) CoOp's logits alone, and the head, built for another class set, is not loaded.

Differences from upstream (docs/upstream-differences.md, "DePT"): which classes the head
applies to is read from the checkpoint (the class names it was trained on) instead of
``DATASET.SUBSAMPLE_CLASSES`` and the dataset's name; ImageNet-A/-R, whose classes are a subset
of ImageNet's, use CoOp's logits (upstream keeps the matching rows of the classifier); the head
has its own optimizer (the same SGD and schedule as a parameter group would give); the
similarity head variant (``LINEAR_PROBE.TYPE similarity``) is not implemented.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy

from .common.model import PromptCLIP
from .common.prompt_learner import PromptLearner
from .common.text_encoder import text_feature_width
from .common.trainer import LossOutput, PromptTrainer
from .config import prompt_config_node, register_config

HEAD = "head"  # the head's checkpoint folder
#: The head's class-count-dependent keys.
CLASSIFIER_KEYS = ("classifier.weight", "classifier.bias")


@register_config
def dept_config(cfg) -> None:
    # CoOp's node as upstream DePT's train.py sets it (16 random context vectors, fp16).
    cfg.TRAINER.DEPT = prompt_config_node(n_ctx=16, ctx_init="", prec="fp16")
    # Upstream TRAINER.LINEAR_PROBE.WEIGHT: the head's share of the loss and of the fused logits.
    cfg.TRAINER.DEPT.HEAD_WEIGHT = 0.7
    # Upstream OPTIM.LR_EXP: the head's learning rate is OPTIM.LR times this.
    cfg.TRAINER.DEPT.HEAD_LR_MULT = 6.5
    # Upstream TRAINER.LINEAR_PROBE.TEST_TIME_FUSION: False tests the trained classes on the head alone.
    cfg.TRAINER.DEPT.TEST_TIME_FUSION = True


class ChannelWiseHead(nn.Module):
    """DePT's cwT (one FiLM for image and one for text features) and linear classifier."""

    def __init__(self, dim: int, n_cls: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.image_scale = nn.Parameter(torch.ones(dim))
        self.image_bias = nn.Parameter(torch.zeros(dim))
        self.text_scale = nn.Parameter(torch.ones(dim))
        self.text_bias = nn.Parameter(torch.zeros(dim))
        self.classifier = nn.Linear(dim, n_cls).to(dtype)

    @staticmethod
    def _film(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return scale.to(x.dtype) * x + bias.to(x.dtype)

    def transform_image(self, features: torch.Tensor) -> torch.Tensor:
        return self._film(features, self.image_scale, self.image_bias)

    def transform_text(self, features: torch.Tensor) -> torch.Tensor:
        return self._film(features, self.text_scale, self.text_bias)

    def forward(self, transformed: torch.Tensor) -> torch.Tensor:
        return self.classifier(transformed)


class DePTCLIP(PromptCLIP):
    """CoOp's ``PromptCLIP`` and the head."""

    def __init__(self, clip_model: nn.Module, prompt_learner: PromptLearner, head: ChannelWiseHead) -> None:
        super().__init__(clip_model, prompt_learner)
        self.head = head


@TRAINER_REGISTRY.register()
class DePT(PromptTrainer):
    CFG_NODE = "DEPT"
    #: Upstream DePT reads CoOp's node (``TRAINER.COOP.*``).
    CONFIG_ALIASES = {key: f"TRAINER.COOP.{key}" for key in ("N_CTX", "CTX_INIT", "CSC", "CLASS_TOKEN_POSITION", "PREC")}

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        node = cfg.TRAINER.DEPT
        if not 0.0 <= float(node.HEAD_WEIGHT) <= 1.0:
            raise ValueError(f"TRAINER.DEPT.HEAD_WEIGHT={node.HEAD_WEIGHT}: the head's share must be in [0, 1]")
        if not float(node.HEAD_LR_MULT) > 0:
            raise ValueError(f"TRAINER.DEPT.HEAD_LR_MULT={node.HEAD_LR_MULT}: the head's learning-rate factor must be > 0")

    # -- model ----------------------------------------------------------------
    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        self.weight = float(self.method_cfg.HEAD_WEIGHT)
        #: The classes the head was trained on (set by before_train or from the checkpoint).
        self.head_classnames: List[str] = []
        head = ChannelWiseHead(text_feature_width(clip_model), len(classnames), clip_model.dtype)
        return DePTCLIP(clip_model, self.build_prompt_learner(classnames, clip_model), head)

    def trainable_modules(self) -> Dict[str, nn.Module]:
        return {"prompt_learner": self.model.prompt_learner, HEAD: self.model.head}

    def lr_multipliers(self) -> Dict[str, float]:
        return {HEAD: float(self.method_cfg.HEAD_LR_MULT)}

    @property
    def head_applies(self) -> bool:
        """Whether the head classifies the current classes (it was trained on exactly them)."""
        return list(self.head_classnames) == list(self.dm.dataset.classnames)

    # -- training -------------------------------------------------------------
    def before_train(self) -> None:
        super().before_train()
        self.head_classnames = list(self.dm.dataset.classnames)

    def compute_loss(self, image: torch.Tensor, label: torch.Tensor) -> LossOutput:
        model, w = self.model, self.weight
        image_features = model.encode_image(image, normalize=False)
        text_features = model.text_features(normalize=False)
        logits = model.logits(F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1))
        head_input = torch.cat([model.head.transform_text(text_features)[label], model.head.transform_image(image_features)])
        head_logits = model.head(head_input)
        losses = {
            "loss_ce": (1 - w) * F.cross_entropy(logits, label),
            "loss_head": w * F.cross_entropy(head_logits, torch.cat([label, label])),
        }
        return losses, {"acc": compute_accuracy(logits, label)[0]}

    # -- evaluation -----------------------------------------------------------
    def before_test(self) -> None:
        super().before_test()
        if self.head_applies:
            fusion = "fused with" if self.method_cfg.TEST_TIME_FUSION else "instead of"
            print(f"DePT: the head ({self.weight:g}) is {fusion} CoOp's logits on the classes it was trained on")
        else:
            print("DePT: the classes differ from those the head was trained on: CoOp's logits alone")

    def model_inference(self, image: torch.Tensor) -> torch.Tensor:
        model = self.model
        with self.precision.autocast():
            image_features = model.encode_image(image, normalize=False)
            logits = model.logits(F.normalize(image_features, dim=-1), self._eval_text_features)
            if not self.head_applies:
                return logits
            head_logits = model.head(model.head.transform_image(image_features))
            if not self.method_cfg.TEST_TIME_FUSION:
                return head_logits
            return (1 - self.weight) * logits + self.weight * head_logits

    # -- checkpoints ----------------------------------------------------------
    def checkpoint_extras(self) -> Dict[str, Any]:
        extras = dict(super().checkpoint_extras())
        extras["head_classnames"] = list(self.head_classnames)
        return extras

    def before_load_state_dict(self, name: str, extras: Dict[str, Any]) -> None:
        super().before_load_state_dict(name, extras)
        if name != HEAD:
            return
        if "head_classnames" not in extras:
            raise KeyError(f"The {HEAD} checkpoint records no head_classnames: it was not written by DePT")
        self.head_classnames = list(extras["head_classnames"])
        ignored = tuple(k for k in self.ignored_checkpoint_keys if k not in CLASSIFIER_KEYS)
        if not self.head_applies:  # a classifier over other classes: not loaded, not used
            ignored += CLASSIFIER_KEYS
        self.ignored_checkpoint_keys = ignored


__all__ = ["ChannelWiseHead", "DePT", "DePTCLIP", "dept_config"]
