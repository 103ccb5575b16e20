"""KgCoOp's knowledge-guidance term (Yao et al., CVPR 2023; htyao89/KgCoOp ``trainers/kgcoop.py``):
keep the learned class text features close to those of a hand-crafted template, computed once
with the same frozen CLIP. Used by KgCoOp, TCP and SemPT (``KG_WEIGHT``).
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from dassl.metrics import compute_accuracy

from ..common.model import PromptCLIP
from ..common.prompt_learner import PromptLearner


def knowledge_guidance_loss(text_features: torch.Tensor, reference_features: torch.Tensor) -> torch.Tensor:
    """``1 - mean_c cos(t_c, t_c^clip)`` in ``text_features``' dtype (the reference's
    CosineSimilarity, eps 1e-7)."""
    cos = F.cosine_similarity(text_features, reference_features.to(text_features.dtype), dim=-1, eps=1e-7)
    return 1.0 - cos.mean()


class KnowledgeGuidedCLIP(PromptCLIP):
    """``PromptCLIP`` + the frozen hand-crafted class features ``kg_text_features`` (a
    non-persistent buffer: rebuilt for every class set, never saved)."""

    def __init__(self, clip_model: nn.Module, prompt_learner: PromptLearner, kg_text_features: torch.Tensor) -> None:
        super().__init__(clip_model, prompt_learner)
        self.register_buffer("kg_text_features", kg_text_features, persistent=False)

    def kg_score(self, text_features: torch.Tensor) -> torch.Tensor:
        return knowledge_guidance_loss(text_features, self.kg_text_features)


def knowledge_guided_losses(
    model: KnowledgeGuidedCLIP, image: torch.Tensor, label: torch.Tensor, weight: float
) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """KgCoOp's objective: ``CE(logits, y) + weight * kg_score``, and the batch accuracy to log."""
    text_features = model.text_features()
    logits = model.logits(model.encode_image(image), text_features)
    losses = {"loss_ce": F.cross_entropy(logits, label), "loss_kg": weight * model.kg_score(text_features)}
    return losses, {"acc": compute_accuracy(logits, label)[0]}


__all__ = ["KnowledgeGuidedCLIP", "knowledge_guidance_loss", "knowledge_guided_losses"]
