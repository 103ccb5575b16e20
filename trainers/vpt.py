"""VPT (Jia et al., ECCV 2022) on CLIP, as the MaPLe paper's baseline: deep visual prompts,
the text side frozen (muzairkhattak/multimodal-prompt-learning ``trainers/vpt.py`` and the
IVLP blocks of its ``clip/model.py``, ``configs/trainers/VPT/vit_b16_c2_ep5_batch4_4.yaml``).

Image tower: ``N_CTX_VISION`` prompt tokens appended after the patch tokens (no positional
embedding), replaced by fresh ones in blocks ``1 .. PROMPT_DEPTH_VISION-1``. Text side: the
frozen CLIP features of one hand-crafted sentence per class, computed once per class set.
Loss: cross-entropy of the CLIP logits. Only the visual prompts train; they hold nothing
class-dependent, so a prompt trained on the base classes evaluates on the new ones.

Differences from upstream (docs/upstream-differences.md, "VPT"): the sentence is the dataset's
hand-crafted template (``TEMPLATE`` "" = CoOp's ``CUSTOM_TEMPLATES``; upstream always writes
"a photo of a {}.", which ``TEMPLATE "a photo of a {}."`` reproduces); ``CTX_INIT`` is kept for
upstream configs and unused, as upstream; prompts enter the tower in its own precision
(upstream rounds them to fp16 and runs CLIP in fp32 whatever ``PREC``); checkpoints hold the
prompts only, and upstream checkpoints (all of CLIP) load through ``translate_checkpoint``.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from dassl.config import CfgNode
from dassl.engine import TRAINER_REGISTRY

from .common.image_encoder import ImageEncoder
from .common.model import FixedTextCLIP
from .common.templates import template_for
from .common.text_encoder import TextEncoder
from .common.trainer import PromptTrainer
from .config import register_config

#: Standard deviation of the random prompt init (upstream: ``nn.init.normal_(std=0.02)``).
PROMPT_INIT_STD = 0.02


@register_config
def vpt_config(cfg) -> None:
    # Defaults as upstream train.py (shallow prompting); the shipped configs set every key.
    node = CfgNode()
    node.N_CTX_VISION = 2  # prompt tokens per prompted image block
    node.CTX_INIT = "a photo of a"  # read by upstream configs, unused (as upstream)
    node.PREC = "fp16"  # fp16, fp32, amp or bf16 (GPU); the CPU always runs fp32
    node.PROMPT_DEPTH_VISION = 1  # prompted image blocks, >= 1 (1: the input only)
    node.TEMPLATE = ""  # the frozen text side's sentence; "" = the dataset's hand-crafted template
    cfg.TRAINER.VPT = node


class DeepVisualPrompts(nn.Module):
    """``ctx`` (the input prompt tokens) and ``deep_ctx[i]``, replacing them before image block
    ``i = 1 .. depth-1``; float32, as upstream."""

    def __init__(self, width: int, n_tokens: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.ctx = nn.Parameter(torch.randn(n_tokens, width) * PROMPT_INIT_STD)
        self.deep_ctx = nn.ParameterDict({
            str(block): nn.Parameter(torch.randn(n_tokens, width) * PROMPT_INIT_STD) for block in range(1, depth)
        })

    def deep_prompts(self) -> Optional[List[Optional[torch.Tensor]]]:
        if self.depth <= 1:
            return None
        return [None, *(self.deep_ctx[str(block)] for block in range(1, self.depth))]


class VPTCLIP(FixedTextCLIP):
    """Fixed class text features against the features of the visually prompted image tower."""

    def __init__(self, clip_model: nn.Module, text_features: torch.Tensor, prompts: DeepVisualPrompts) -> None:
        super().__init__(clip_model, text_features)
        self.visual_prompts = prompts

    @property
    def image_features_are_fixed(self) -> bool:
        return False  # the prompts reach the image tower

    def encode_image(self, image: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.image_encoder(image, prompts=self.visual_prompts.ctx,
                                      deep_prompts=self.visual_prompts.deep_prompts())
        return nn.functional.normalize(features, dim=-1) if normalize else features


# Upstream registers its whole CustomCLIP: prompt keys -> ours; the rest is frozen CLIP.
_UPSTREAM_KEYS = (
    (re.compile(r"image_encoder\.VPT"), "ctx"),
    (re.compile(r"image_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow"), r"deep_ctx.\1"),
)


@TRAINER_REGISTRY.register()
class VPT(PromptTrainer):
    CFG_NODE = "VPT"

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        node = cfg.TRAINER.VPT
        if node.PROMPT_DEPTH_VISION < 1:
            raise ValueError(
                f"TRAINER.VPT.PROMPT_DEPTH_VISION={node.PROMPT_DEPTH_VISION}: VPT prompts at least the "
                "input of the image tower (1: shallow, up to the number of image blocks: deep)"
            )
        if node.N_CTX_VISION < 1:
            raise ValueError(f"TRAINER.VPT.N_CTX_VISION={node.N_CTX_VISION}: at least 1 prompt token")

    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        node = self.method_cfg
        image_encoder = ImageEncoder(clip_model.visual)  # a ResNet CLIP fails here, naming the fix
        if node.PROMPT_DEPTH_VISION > image_encoder.n_blocks:
            raise ValueError(
                f"TRAINER.VPT.PROMPT_DEPTH_VISION={node.PROMPT_DEPTH_VISION}: at most the "
                f"{image_encoder.n_blocks} blocks of this CLIP's image tower"
            )
        template = node.TEMPLATE or template_for(cfg.DATASET.NAME)
        print(f'Frozen text side: "{template}"; visual prompts: {node.N_CTX_VISION} tokens x '
              f"{node.PROMPT_DEPTH_VISION} blocks")
        text_features = self.hand_crafted_features(TextEncoder(clip_model), classnames, [template])
        prompts = DeepVisualPrompts(image_encoder.width, node.N_CTX_VISION, node.PROMPT_DEPTH_VISION)
        model = VPTCLIP(clip_model, text_features, prompts)
        # MODEL.ACT_CHECKPOINT: the image blocks recompute their activations in the backward pass.
        model.image_encoder.checkpointing = bool(cfg.MODEL.get("ACT_CHECKPOINT", False))
        return model

    def trainable_modules(self) -> Dict[str, nn.Module]:
        return {"prompt_learner": self.model.visual_prompts}  # upstream's checkpoint folder

    def translate_checkpoint(self, name: str, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """An upstream checkpoint (all of CLIP, its prompts named ``VPT``/``VPT_shallow``) -> the
        prompts' keys; our own checkpoints pass unchanged."""
        if not any(key.startswith("image_encoder.") for key in state_dict):
            return state_dict
        translated = {}
        for key, value in state_dict.items():
            for pattern, ours in _UPSTREAM_KEYS:
                if pattern.fullmatch(key):
                    translated[pattern.sub(ours, key)] = value
        return translated


__all__ = ["DeepVisualPrompts", "VPT", "VPTCLIP", "vpt_config"]
