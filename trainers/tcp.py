"""TCP (Yao et al., CVPR 2024): textual-based class-aware prompt tuning.

KgCoOp plus class-aware tokens. The prompt of class ``c`` is the dataset's template with
its leading words replaced by ``N_CTX`` learnable context vectors
(``[SOS] [ctx_1 .. ctx_M] name, a type of pet. [EOS]``). TKE, the textual knowledge
embedding, maps the class's normalised zero-shot text feature ``t_c^zs`` (CLIP with a
hand-crafted template) to ``M`` class tokens: ``meta_net = Linear(D, D/4) - QuickGELU -
Linear(D/4, M * width)``. Before text block ``INSERT_LAYER`` the prompt positions become
``W * class_tokens + (1 - W) * current``; blocks before it see the shared context only.
Loss = CE + KG_WEIGHT * (1 - mean_c cos(t_c, t_c^zs)) (KgCoOp's term, ``t_c^zs`` as knowledge).
New classes get their own class tokens from their own zero-shot features.

Upstream: htyao89/Textual-based_Class-aware_prompt_tuning ``trainers/tcp.py``,
``trainers/clip_text/model.py``. The class-aware tokens are the part
``trainers/parts/class_aware_tokens.py``, the loss ``trainers/parts/knowledge_guidance.py``. Differences (docs/upstream-differences.md, "TCP"): a
``TRAINER.TCP`` node (upstream reads ``TRAINER.COOP.*``, still honoured: ``CONFIG_ALIASES``); ``W`` is used
(upstream overwrites it with 1.0) and the loss weight and insertion block are keys
(upstream hard-codes 8.0 and block 8); the context length cannot misalign the template;
widths come from the loaded CLIP; one CLIP, one precision; ``amp`` and ``CSC`` work.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dassl.engine import TRAINER_REGISTRY

from .common.templates import template_for
from .common.text_encoder import TextEncoder
from .common.trainer import LossOutput, PromptTrainer
from .config import prompt_config_node, register_config
from .parts.class_aware_tokens import DEFAULT_PROMPT_TEMPLATE, KNOWLEDGE_TEMPLATES, PROMPT_TEMPLATES, TCPPromptLearner
from .parts.knowledge_guidance import KnowledgeGuidedCLIP, knowledge_guided_losses


@register_config
def tcp_config(cfg) -> None:
    # Upstream's script values (N_CTX 4, random init, CSC False, end) and config (fp16).
    cfg.TRAINER.TCP = prompt_config_node(n_ctx=4, ctx_init="", prec="fp16")
    cfg.TRAINER.TCP.W = 1.0  # weight of the class-aware tokens in the mix at INSERT_LAYER
    cfg.TRAINER.TCP.KG_WEIGHT = 8.0  # weight of the knowledge-guidance term of the loss
    cfg.TRAINER.TCP.INSERT_LAYER = 8  # text block whose input receives the class-aware tokens


@TRAINER_REGISTRY.register()
class TCP(PromptTrainer):
    """KgCoOp's loss on TCP's class-aware prompts."""

    CFG_NODE = "TCP"
    PROMPT_LEARNER = TCPPromptLearner
    #: Upstream TCP reads these from ``TRAINER.COOP`` (its scripts pass them there).
    CONFIG_ALIASES = {key: f"TRAINER.COOP.{key}" for key in ("N_CTX", "CTX_INIT", "CSC", "CLASS_TOKEN_POSITION", "PREC", "W")}

    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        node = self.method_cfg
        self.w = float(node.KG_WEIGHT)
        print(f"Class-aware tokens enter text block {node.INSERT_LAYER} with weight W = {node.W}; "
              f"knowledge-guidance weight KG_WEIGHT = {self.w}")

        learner = self.build_prompt_learner(
            classnames, clip_model,
            template=PROMPT_TEMPLATES.get(cfg.DATASET.NAME, DEFAULT_PROMPT_TEMPLATE),
            insert_layer=node.INSERT_LAYER, fusion_weight=node.W,
        )
        template = template_for(cfg.DATASET.NAME, KNOWLEDGE_TEMPLATES)
        text_features = self.hand_crafted_features(TextEncoder(clip_model), classnames, [template])
        learner.set_class_knowledge(text_features)
        return KnowledgeGuidedCLIP(clip_model, learner, text_features)

    def compute_loss(self, image: torch.Tensor, label: torch.Tensor) -> LossOutput:
        return knowledge_guided_losses(self.model, image, label, self.w)


__all__ = ["TCP", "tcp_config"]
