"""IVLP: independent deep prompts in both CLIP towers (the MaPLe paper's baseline,
muzairkhattak/multimodal-prompt-learning ``trainers/independentVL.py`` and the IVLP blocks of
its ``clip/model.py``).

Text tower: ``N_CTX_TEXT`` context vectors after SOS (CoOp's prompt, MaPLe's init rule: the
first ``N_CTX_TEXT`` tokens of ``CTX_INIT`` learn, the rest of its words stay in the prompt
as frozen text; more than 4 tokens start random), and in blocks ``1 .. PROMPT_DEPTH_TEXT-1``
a fresh set of vectors replaces those positions. Image tower (if ``PROMPT_DEPTH_VISION > 0``):
``N_CTX_VISION`` tokens appended after the patch tokens (no positional embedding), replaced
in blocks ``1 .. PROMPT_DEPTH_VISION-1``. The two towers' prompts are independent (no
coupling, unlike MaPLe). Loss: cross-entropy. Only the prompts train.

The prompts are the part ``trainers/parts/vl_prompts.py`` (shared with PromptSRC), registered
as ``VLPromptLearner``, the upstream checkpoint folder; ``translate_checkpoint`` loads the
upstream model zoo's files (which hold all of CLIP) by mapping their prompt keys (see the part).

Differences from upstream (docs/upstream-differences.md, "IVLP"): prompts are inserted in the
tower's own precision (upstream rounds them to fp16 even with ``PREC fp32``); a depth beyond
the model's blocks, or a text depth of 0, is an error naming the key.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torch import nn

from dassl.engine import TRAINER_REGISTRY

from .common.model import PromptCLIP
from .common.trainer import PromptTrainer
from .config import register_config
from .parts.vl_prompts import (
    CHECKPOINT_NAME,
    VLPromptLearner,
    build_vl_prompt_learner,
    translate_upstream_state_dict,
    vl_prompt_config_node,
)


@register_config
def ivlp_config(cfg) -> None:
    # Defaults as upstream train.py; the shipped configs set every key.
    cfg.TRAINER.IVLP = vl_prompt_config_node(n_ctx_text=2, n_ctx_vision=2, depth_text=9, depth_vision=9)


@TRAINER_REGISTRY.register()
class IVLP(PromptTrainer):
    CFG_NODE = "IVLP"
    PROMPT_LEARNER = VLPromptLearner

    def build_prompt_learner(self, classnames: Sequence[str], clip_model: nn.Module, **overrides) -> VLPromptLearner:
        return build_vl_prompt_learner(
            classnames, clip_model, self.method_cfg, f"TRAINER.{self.CFG_NODE}", self.PROMPT_LEARNER, **overrides
        )

    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        return PromptCLIP(clip_model, self.build_prompt_learner(classnames, clip_model))

    def trainable_modules(self) -> Dict[str, nn.Module]:
        return {CHECKPOINT_NAME: self.model.prompt_learner}

    def translate_checkpoint(self, name: str, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return translate_upstream_state_dict(state_dict)


__all__: List[str] = ["IVLP", "ivlp_config"]
