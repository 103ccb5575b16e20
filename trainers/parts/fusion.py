"""Visually guided attribute weighting and attribute-enhanced logits (SemPT).

Notation (README, "Method"): ``f`` image embeddings ``[B, D]``,
``t`` label embeddings ``[C, D]``, ``E`` description embeddings ``[C, K, D]``, all
L2-normalised. For every image and class the attributes are weighted by
``alpha = softmax_k(<f, e_ck> / T_w)`` (or ``1/K``), ``a_c = sum_k alpha_ck e_ck``, and
the attribute-enhanced embedding is ``g_c = normalize(t_c + beta * a_c)`` (``add``)
or ``normalize(a_c)`` (``attribute_only``).

``attribute_logits`` never builds the ``[B, C, D]`` (let alone ``[B, C, K, D]``)
tensor of per-image class embeddings: every quantity it needs is an inner product,

    <f, g_c> = (<f, t_c> + beta * sum_k alpha_ck <f, e_ck>) / n_c
    n_c^2   = 1 + 2 beta sum_k alpha_ck <t_c, e_ck> + beta^2 alpha_c^T G_c alpha_c

with ``G_c = E_c E_c^T`` (``K x K``), so memory is ``O(B*C*K + C*K^2)``.
``naive_attribute_logits`` is the plain formula, kept as the reference for tests.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

WEIGHTINGS = ("visual", "uniform")
FUSIONS = ("add", "attribute_only")


def _check_modes(weighting: str, fusion: str) -> None:
    if weighting not in WEIGHTINGS:
        raise ValueError(f"TRAINER.SEMPT.WEIGHTING must be one of {WEIGHTINGS}, got {weighting!r}")
    if fusion not in FUSIONS:
        raise ValueError(f"TRAINER.SEMPT.FUSION must be one of {FUSIONS}, got {fusion!r}")


def attribute_weights(
    image_desc_sim: torch.Tensor, weight_temp: float, weighting: str = "visual"
) -> torch.Tensor:
    """``alpha [B, C, K]`` from the image-description similarities ``s [B, C, K]``."""
    if weighting == "uniform":
        return torch.full_like(image_desc_sim, 1.0 / image_desc_sim.shape[-1])
    if weighting != "visual":
        raise ValueError(f"TRAINER.SEMPT.WEIGHTING must be one of {WEIGHTINGS}, got {weighting!r}")
    return torch.softmax(image_desc_sim / weight_temp, dim=-1)


def description_gram(desc_emb: torch.Tensor) -> torch.Tensor:
    """``G_c = E_c E_c^T`` for every class: ``[C, K, K]`` (constant for frozen descriptions)."""
    return desc_emb @ desc_emb.transpose(1, 2)


def attribute_logits(
    image_features: torch.Tensor,
    label_features: torch.Tensor,
    desc_emb: torch.Tensor,
    logit_scale: torch.Tensor | float,
    weight_temp: float,
    fusion_weight: float = 1.0,
    weighting: str = "visual",
    fusion: str = "add",
    gram: Optional[torch.Tensor] = None,
    return_weights: bool = False,
):
    """Attribute logits ``z^A [B, C] = tau <f, g_c(f)>``, exact and memory-bounded.

    ``gram`` may be passed when the descriptions are frozen (precomputed once).
    With ``return_weights`` the attribute weights ``alpha [B, C, K]`` are returned too.
    """
    _check_modes(weighting, fusion)
    f = image_features
    sim = torch.einsum("bd,ckd->bck", f, desc_emb)  # <f, e_ck>
    alpha = attribute_weights(sim, weight_temp, weighting)
    if gram is None:
        gram = description_gram(desc_emb)
    f_dot_a = (alpha * sim).sum(-1)  # <f, a_c>         [B, C]
    a_sq = (torch.einsum("bck,ckl->bcl", alpha, gram) * alpha).sum(-1)  # ||a_c||^2
    if fusion == "attribute_only":
        cos = f_dot_a / a_sq.clamp_min(1e-12).sqrt()
    else:
        beta = fusion_weight
        f_dot_t = f @ label_features.t()  # [B, C]
        t_dot_e = torch.einsum("cd,ckd->ck", label_features, desc_emb)  # [C, K]
        t_dot_a = (alpha * t_dot_e.unsqueeze(0)).sum(-1)  # [B, C]
        t_sq = (label_features * label_features).sum(-1)  # 1 for unit t; kept for exactness
        norm_sq = t_sq.unsqueeze(0) + 2 * beta * t_dot_a + beta * beta * a_sq
        cos = (f_dot_t + beta * f_dot_a) / norm_sq.clamp_min(1e-12).sqrt()
    logits = logit_scale * cos
    return (logits, alpha) if return_weights else logits


def naive_attribute_logits(
    image_features: torch.Tensor,
    label_features: torch.Tensor,
    desc_emb: torch.Tensor,
    logit_scale: torch.Tensor | float,
    weight_temp: float,
    fusion_weight: float = 1.0,
    weighting: str = "visual",
    fusion: str = "add",
) -> torch.Tensor:
    """The plain formula, materialising ``g_c(x)`` for every image: reference only."""
    _check_modes(weighting, fusion)
    sim = torch.einsum("bd,ckd->bck", image_features, desc_emb)
    alpha = attribute_weights(sim, weight_temp, weighting)
    weighted = alpha.unsqueeze(-1) * desc_emb.unsqueeze(0)  # [B, C, K, D]
    a = weighted.sum(2)  # [B, C, D]
    if fusion == "attribute_only":
        g = F.normalize(a, dim=-1)
    else:
        g = F.normalize(label_features.unsqueeze(0) + fusion_weight * a, dim=-1)
    return logit_scale * torch.einsum("bd,bcd->bc", image_features, g)


def select_by_exposure(
    label_logits: torch.Tensor, attr_logits: torch.Tensor, seen_mask: torch.Tensor, mode: str = "auto"
) -> torch.Tensor:
    """Exposure-aware inference: one logit per class, inside one softmax.

    ``auto``: label logits for classes seen in training, attribute logits for the
    others; ``label`` / ``attribute``: one branch for all; ``ensemble``: their mean.
    """
    if mode == "auto":
        return torch.where(seen_mask.to(label_logits.device).unsqueeze(0), label_logits, attr_logits)
    if mode == "label":
        return label_logits
    if mode == "attribute":
        return attr_logits
    if mode == "ensemble":
        return 0.5 * (label_logits + attr_logits)
    raise ValueError(
        f"TRAINER.SEMPT.INFERENCE must be one of ('auto', 'label', 'attribute', 'ensemble'), got {mode!r}"
    )
