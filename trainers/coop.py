"""CoOp (Zhou et al., IJCV 2022): learnable context vectors, cross-entropy on the class logits."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from dassl.engine import TRAINER_REGISTRY

from .common.model import PromptCLIP
from .common.trainer import PromptTrainer
from .config import prompt_config_node, register_config


@register_config
def coop_config(cfg) -> None:
    cfg.TRAINER.COOP = prompt_config_node(n_ctx=16, ctx_init="", prec="fp16")
    # KgCoOp's and TCP's lambda in the upstream spelling (their scripts pass TRAINER.COOP.W 8.0),
    # an alias in their CONFIG_ALIASES. None = unset. CoOp itself ignores it.
    cfg.TRAINER.COOP.W = None


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    """Context Optimization: only the prompt context trains; loss = CE(logits, label)."""

    CFG_NODE = "COOP"

    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        return PromptCLIP(clip_model, self.build_prompt_learner(classnames, clip_model))
