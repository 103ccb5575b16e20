"""CoCoOp (Zhou et al., CVPR 2022): context conditioned on each image by a small meta-net.

The prompt of image ``x`` is ``ctx + meta_net(f(x))`` (``f`` = normalised image
feature), so every image needs its own pass of all class prompts through the text
encoder. Exact as the reference, but the per-image loop is batched: images are
encoded in chunks of up to ``MAX_TEXT_SEQUENCES`` prompts per text-encoder call,
each running only up to the last EOT position. The model always returns logits;
the trainer computes the loss (no loss-or-logits switch on ``.training``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dassl.engine import TRAINER_REGISTRY

from .common.model import PromptCLIP
from .common.prompt_learner import PromptLearner
from .common.trainer import PromptTrainer
from .config import prompt_config_node, register_config

# Prompts per text-encoder call at most (images x classes): bounds evaluation memory.
MAX_TEXT_SEQUENCES = 4096


@register_config
def cocoop_config(cfg) -> None:
    cfg.TRAINER.COCOOP = prompt_config_node(n_ctx=16, ctx_init="", prec="fp16")


class CoCoOpPromptLearner(PromptLearner):
    """Generic context + ``meta_net`` (Linear-ReLU-Linear, hidden = vis_dim // 16)."""

    def __init__(self, classnames: Sequence[str], clip_model: nn.Module, n_ctx: int = 16, ctx_init: str = "") -> None:
        super().__init__(classnames, clip_model, n_ctx=n_ctx, ctx_init=ctx_init)
        vis_dim = clip_model.visual.output_dim
        ctx_dim = self.ctx.shape[-1]
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
        ])).to(self.ctx.dtype)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """``(B, dim)`` normalised image features -> ``(B, n_cls, L, d)`` prompts."""
        bias = self.meta_net(image_features)  # (B, d)
        ctx = self.ctx.unsqueeze(0) + bias.unsqueeze(1)  # (B, n_ctx, d)
        return self.compose(ctx.unsqueeze(1))


class CoCoOpCLIP(PromptCLIP):
    def text_features(self) -> torch.Tensor:
        raise TypeError("CoCoOp text features depend on the image: call model(image)")

    def forward(self, image: torch.Tensor, text_features: Optional[torch.Tensor] = None) -> torch.Tensor:
        image_features = self.encode_image(image)
        learner = self.prompt_learner
        n_cls = learner.n_cls
        per_call = max(1, MAX_TEXT_SEQUENCES // n_cls)
        scale = self.logit_scale.exp()
        logits = []
        for feats in image_features.split(per_call):
            prompts = learner(feats).flatten(0, 1)  # (b * n_cls, L, d)
            tokenized = learner.tokenized_prompts.repeat(feats.shape[0], 1)
            text = F.normalize(self.text_encoder(prompts, tokenized), dim=-1)
            text = text.view(feats.shape[0], n_cls, -1)
            logits.append(scale * torch.einsum("bd,bcd->bc", feats, text.to(feats.dtype)))
        return torch.cat(logits)


@TRAINER_REGISTRY.register()
class CoCoOp(PromptTrainer):
    CFG_NODE = "COCOOP"

    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        node = self.method_cfg
        learner = CoCoOpPromptLearner(classnames, clip_model, n_ctx=node.N_CTX, ctx_init=node.CTX_INIT)
        return CoCoOpCLIP(clip_model, learner)

    def compute_loss(self, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.model(image), label)

    def compute_eval_text_features(self) -> None:
        return None  # per image: computed inside the model
