"""KgCoOp (Yao et al., CVPR 2023): CoOp + a knowledge-guidance term.

Loss = CE(logits, y) + W * (1 - mean_c cos(t_c, t_c^clip)), where ``t_c`` are the
learned class text features and ``t_c^clip`` the features of the dataset's
hand-crafted template (``CUSTOM_TEMPLATES_KG``) from the same, already-loaded CLIP,
computed once per class set.

The term is the part ``trainers/parts/knowledge_guidance.py``.
Differences from the reference code (docs/upstream-differences.md, "KgCoOp"): its own ``TRAINER.KGCOOP`` node
(``TRAINER.COOP.W``, the upstream spelling of lambda, is an alias of ``KGCOOP.W``:
``CONFIG_ALIASES``); ``CTX_INIT`` is honoured (upstream always used "a photo of a"); no unused
parameters; CSC and the class-token position work as in CoOp.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dassl.engine import TRAINER_REGISTRY

from .common.templates import CUSTOM_TEMPLATES_KG, template_for
from .common.text_encoder import TextEncoder
from .common.trainer import LossOutput, PromptTrainer
from .config import prompt_config_node, register_config
from .parts.knowledge_guidance import KnowledgeGuidedCLIP, knowledge_guided_losses


@register_config
def kgcoop_config(cfg) -> None:
    cfg.TRAINER.KGCOOP = prompt_config_node(n_ctx=4, ctx_init="a photo of a", prec="fp16")
    cfg.TRAINER.KGCOOP.W = 8.0  # lambda of the knowledge-guidance term


@TRAINER_REGISTRY.register()
class KgCoOp(PromptTrainer):
    CFG_NODE = "KGCOOP"
    CONFIG_ALIASES = {"W": "TRAINER.COOP.W"}  # upstream scripts pass TRAINER.COOP.W 8.0

    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        self.w = float(self.method_cfg.W)
        print(f"Knowledge-guidance weight W = {self.w} (from {self.config_sources['W']})")

        prompt_learner = self.build_prompt_learner(classnames, clip_model)
        template = template_for(cfg.DATASET.NAME, CUSTOM_TEMPLATES_KG)
        kg_features = self.hand_crafted_features(TextEncoder(clip_model), classnames, [template])
        return KnowledgeGuidedCLIP(clip_model, prompt_learner, kg_features)

    def compute_loss(self, image: torch.Tensor, label: torch.Tensor) -> LossOutput:
        return knowledge_guided_losses(self.model, image, label, self.w)
