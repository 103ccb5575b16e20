"""KgCoOp (Yao et al., CVPR 2023): CoOp + a knowledge-guidance term.

Loss = CE(logits, y) + W * (1 - mean_c cos(t_c, t_c^clip)), where ``t_c`` are the
learned class text features and ``t_c^clip`` the features of the dataset's
hand-crafted template (``CUSTOM_TEMPLATES_KG``) from the same, already-loaded CLIP,
computed once per class set.

Differences from the reference code (docs/upstream-differences.md, "KgCoOp"): its own ``TRAINER.KGCOOP`` node
(``TRAINER.COOP.W``, the upstream spelling of lambda, overrides ``KGCOOP.W`` when
given); ``CTX_INIT`` is honoured (upstream always used "a photo of a"); no unused
parameters; CSC and the class-token position work as in CoOp.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy

from .common.model import PromptCLIP
from .common.prompt_learner import PromptLearner
from .common.text_encoder import TextEncoder
from .common.templates import CUSTOM_TEMPLATES_KG, template_for
from .common.trainer import LossOutput, PromptTrainer
from .config import prompt_config_node, register_config


@register_config
def kgcoop_config(cfg) -> None:
    cfg.TRAINER.KGCOOP = prompt_config_node(n_ctx=4, ctx_init="a photo of a", prec="fp16")
    cfg.TRAINER.KGCOOP.W = 8.0  # lambda of the knowledge-guidance term


class KgCoOpCLIP(PromptCLIP):
    """``PromptCLIP`` + the frozen hand-crafted class features ``kg_text_features``."""

    def __init__(self, clip_model: nn.Module, prompt_learner: PromptLearner, kg_text_features: torch.Tensor) -> None:
        super().__init__(clip_model, prompt_learner)
        self.register_buffer("kg_text_features", kg_text_features, persistent=False)

    def kg_score(self, text_features: torch.Tensor) -> torch.Tensor:
        """``1 - mean_c cos(t_c, t_c^clip)`` (the reference's CosineSimilarity, eps 1e-7)."""
        cos = F.cosine_similarity(text_features, self.kg_text_features.to(text_features.dtype), dim=-1, eps=1e-7)
        return 1.0 - cos.mean()


@TRAINER_REGISTRY.register()
class KgCoOp(PromptTrainer):
    CFG_NODE = "KGCOOP"

    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        coop_w = cfg.TRAINER.get("COOP", {}).get("W", None)
        self.w = float(coop_w) if coop_w is not None else float(self.method_cfg.W)
        source = "TRAINER.COOP.W" if coop_w is not None else "TRAINER.KGCOOP.W"
        print(f"Knowledge-guidance weight W = {self.w} (from {source})")

        prompt_learner = self.build_prompt_learner(classnames, clip_model)
        template = template_for(cfg.DATASET.NAME, CUSTOM_TEMPLATES_KG)
        kg_features = self.hand_crafted_features(TextEncoder(clip_model), classnames, [template])
        return KgCoOpCLIP(clip_model, prompt_learner, kg_features)

    def compute_loss(self, image: torch.Tensor, label: torch.Tensor) -> LossOutput:
        text_features = self.model.text_features()
        logits = self.model.logits(self.model.encode_image(image), text_features)
        losses = {"loss_ce": F.cross_entropy(logits, label), "loss_kg": self.w * self.model.kg_score(text_features)}
        return losses, {"acc": compute_accuracy(logits, label)[0]}
