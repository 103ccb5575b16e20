"""MaPLe (Khattak et al., CVPR 2023): multi-modal prompts, the vision prompts coupled to the text ones.

Upstream: muzairkhattak/multimodal-prompt-learning ``trainers/maple.py`` and the MaPLe
blocks of its ``clip/model.py``. With ``N_CTX`` context tokens and depth ``J``:

* text input: ``[SOS] ctx_1..ctx_n <rest of CTX_INIT> <class name> . [EOS]``; the first
  ``n`` tokens of ``CTX_INIT`` learn, its remaining words stay frozen in the prompt
  (``N_CTX 2`` with "a photo of a": "a photo" learns, "of a" stays);
* image input: ``proj(ctx)`` appended after the patch tokens, without positional embedding;
* blocks ``i = 1 .. J-1``: text positions ``1..n`` are replaced by
  ``compound_prompts_text[i-1]`` and the last ``n`` image tokens by
  ``compound_prompt_projections[i-1](compound_prompts_text[i-1])``;
* loss: cross-entropy of the CLIP logits.

Differences from upstream (docs/upstream-differences.md, "MaPLe"): every PREC works (upstream
hard-codes fp16 casts, so fp32 and amp crash); widths come from the loaded CLIP (upstream
hard-codes 512/768); a depth the towers cannot hold, a class-specific context and a
``N_CTX`` that would swallow the class name are errors or fixed instead of silent;
checkpoints hold the prompt learner only, and upstream model-zoo checkpoints (the whole
CLIP) load through ``translate_checkpoint``.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import nn

from dassl.engine import TRAINER_REGISTRY

from .common.model import PromptCLIP
from .common.trainer import PromptTrainer
from .config import register_config
from .parts.coupled_prompts import CHECKPOINT_NAME, MultiModalPromptLearner, coupled_prompt_config_node

#: Frozen CLIP weights that upstream checkpoints carry next to the prompts.
UPSTREAM_FROZEN_PREFIXES = ("image_encoder.", "text_encoder.", "logit_scale")
UPSTREAM_LEARNER_PREFIX = "prompt_learner."


@register_config
def maple_config(cfg) -> None:
    cfg.TRAINER.MAPLE = coupled_prompt_config_node()


@TRAINER_REGISTRY.register()
class MaPLe(PromptTrainer):
    CFG_NODE = "MAPLE"
    PROMPT_LEARNER = MultiModalPromptLearner

    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        learner = self.build_prompt_learner(classnames, clip_model, prompt_depth=self.method_cfg.PROMPT_DEPTH)
        return PromptCLIP(clip_model, learner)

    def trainable_modules(self) -> Dict[str, nn.Module]:
        return {CHECKPOINT_NAME: self.model.prompt_learner}

    def translate_checkpoint(self, name: str, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """An upstream checkpoint (the whole ``CustomCLIP``: ``prompt_learner.*`` plus the frozen
        CLIP) -> the prompt learner's keys; the frozen CLIP is dropped after checking that its
        shapes are those of the loaded CLIP (a prompt trained on another backbone has the same
        shapes for ViT-B/16 and B/32). Our own checkpoints pass unchanged."""
        if not any(key.startswith(UPSTREAM_LEARNER_PREFIX) for key in state_dict):
            return state_dict
        ours = self.model.state_dict()
        learner: Dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            if key.startswith(UPSTREAM_LEARNER_PREFIX):
                learner[key[len(UPSTREAM_LEARNER_PREFIX):]] = value
            elif key.startswith(UPSTREAM_FROZEN_PREFIXES):
                # Upstream's image_encoder is CLIP's visual tower itself; ours wraps it as .visual.
                our_key = key.replace("image_encoder.", "image_encoder.visual.", 1)
                if our_key in ours and ours[our_key].shape != value.shape:
                    raise ValueError(
                        f"The checkpoint's frozen CLIP weight {key} has shape {tuple(value.shape)}, the loaded "
                        f"CLIP's {tuple(ours[our_key].shape)}: it was trained on another backbone; set "
                        f"MODEL.BACKBONE.NAME to the one it was trained with"
                    )
            else:
                learner[key] = value  # unknown: load_model reports it as unexpected
        return learner
