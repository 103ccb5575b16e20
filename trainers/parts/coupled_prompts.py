"""MaPLe's coupled prompts (Khattak et al., CVPR 2023; muzairkhattak/multimodal-prompt-learning
``trainers/maple.py``): a text context whose projection is the image tower's prompt, and deep
compound prompts, each coupled to the image tower by its own linear function. Used by MaPLe and
by SemPT's ``maple`` label branch.
"""
from __future__ import annotations

import copy
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from dassl.config import CfgNode

from ..common.image_encoder import ImageEncoder
from ..common.prompt_learner import PromptLearner
from ..common.text_encoder import DeepPrompts
from ..config import prompt_config_node


def coupled_prompt_config_node(prec: str = "fp16") -> CfgNode:
    """The keys of upstream's ``TRAINER.MAPLE`` node, with its defaults."""
    node = prompt_config_node(n_ctx=2, ctx_init="a photo of a", prec=prec)
    # Blocks that get prompts, the input counting as the first (1 = shallow MaPLe). At most
    # the number of blocks of either tower (12 for ViT-B/16).
    node.PROMPT_DEPTH = 9
    return node


#: Upstream initialises the context from CTX_INIT only for N_CTX <= 4 (trainers/maple.py).
MAX_WORD_INIT_CTX = 4
#: Upstream registers its whole CustomCLIP under this name: the checkpoint folder.
CHECKPOINT_NAME = "MultiModalPromptLearner"


class MultiModalPromptLearner(PromptLearner):
    """Text context, its projection to the image tower and the deep compound prompts.

    Parameter names are upstream's: ``ctx``, ``proj``, ``compound_prompts_text.<i>``,
    ``compound_prompt_projections.<i>``. ``ctx`` and ``proj`` take CLIP's dtype and the
    compound prompts and projections float32, as upstream (fp16 CLIP: the deep prompts are
    cast to fp16 where they enter a block). ``config_prefix`` names the config node in errors.
    """

    prompts_image_tower = True

    def __init__(
        self,
        classnames: Sequence[str],
        clip_model: nn.Module,
        n_ctx: int = 2,
        ctx_init: str = "a photo of a",
        prompt_depth: int = 9,
        csc: bool = False,
        config_prefix: str = "TRAINER.MAPLE",
        **kwargs,
    ) -> None:
        if csc:
            raise ValueError(
                "MaPLe has one context shared by all classes (its image prompts are projected from it); "
                f"set {config_prefix}.CSC False"
            )
        image_encoder = ImageEncoder(clip_model.visual)  # a ResNet CLIP fails here, naming the fix
        text_blocks, vision_blocks = len(clip_model.transformer.resblocks), image_encoder.n_blocks
        if not 1 <= prompt_depth <= min(text_blocks, vision_blocks):
            raise ValueError(
                f"{config_prefix}.PROMPT_DEPTH={prompt_depth}, but this CLIP has {text_blocks} text and "
                f"{vision_blocks} image transformer blocks: set PROMPT_DEPTH between 1 and "
                f"{min(text_blocks, vision_blocks)} (9 for ViT-B/16 as upstream; the synthetic tiny CLIP takes at most 3)"
            )
        super().__init__(classnames, clip_model, n_ctx=n_ctx, ctx_init=ctx_init, keep_n_ctx=True, **kwargs)
        self.prompt_depth = prompt_depth
        text_width, vision_width = self.ctx.shape[-1], image_encoder.width
        self.proj = nn.Linear(text_width, vision_width).to(self.ctx.dtype)
        self.compound_prompts_text = nn.ParameterList(
            nn.Parameter(nn.init.normal_(torch.empty(self.n_ctx, text_width), std=0.02))
            for _ in range(prompt_depth - 1)
        )
        # Upstream deep-copies one Linear, so every coupling function starts from the same weights.
        coupling = nn.Linear(text_width, vision_width)
        self.compound_prompt_projections = nn.ModuleList(copy.deepcopy(coupling) for _ in range(prompt_depth - 1))

    def initial_context(
        self, clip_model: nn.Module, n_ctx: int, ctx_init: str, n_cls: Optional[int], keep_n_ctx: bool
    ) -> Tuple[torch.Tensor, str]:
        if ctx_init and n_ctx > MAX_WORD_INIT_CTX:
            print(f"N_CTX={n_ctx} > {MAX_WORD_INIT_CTX}: random context init, CTX_INIT unused (as upstream MaPLe)")
            ctx_init = ""
        return super().initial_context(clip_model, n_ctx, ctx_init, n_cls, keep_n_ctx)

    def text_deep_prompts(self) -> DeepPrompts:
        return [None, *self.compound_prompts_text]

    def visual_prompts(self) -> torch.Tensor:
        return self.proj(self.ctx)

    def visual_deep_prompts(self) -> DeepPrompts:
        return [None, *self.projected_compound_prompts()]

    def projected_compound_prompts(self) -> List[torch.Tensor]:
        """The image tower's deep prompts: each text prompt through its own coupling function."""
        return [proj(p) for proj, p in zip(self.compound_prompt_projections, self.compound_prompts_text)]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, prompt_depth={self.prompt_depth}"


__all__ = ["CHECKPOINT_NAME", "MAX_WORD_INIT_CTX", "MultiModalPromptLearner", "coupled_prompt_config_node"]
