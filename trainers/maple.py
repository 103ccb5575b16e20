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

import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from dassl.engine import TRAINER_REGISTRY

from .common.image_encoder import ImageEncoder
from .common.model import PromptCLIP
from .common.prompt_learner import PromptLearner
from .common.text_encoder import DeepPrompts
from .common.trainer import PromptTrainer
from .config import prompt_config_node, register_config

#: Upstream initialises the context from CTX_INIT only for N_CTX <= 4 (trainers/maple.py).
MAX_WORD_INIT_CTX = 4
#: Upstream registers its whole CustomCLIP under this name: the checkpoint folder.
CHECKPOINT_NAME = "MultiModalPromptLearner"
#: Frozen CLIP weights that upstream checkpoints carry next to the prompts.
UPSTREAM_FROZEN_PREFIXES = ("image_encoder.", "text_encoder.", "logit_scale")
UPSTREAM_LEARNER_PREFIX = "prompt_learner."


@register_config
def maple_config(cfg) -> None:
    cfg.TRAINER.MAPLE = prompt_config_node(n_ctx=2, ctx_init="a photo of a", prec="fp16")
    # Blocks that get prompts, the input counting as the first (1 = shallow MaPLe). At most
    # the number of blocks of either tower (12 for ViT-B/16).
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9


class MultiModalPromptLearner(PromptLearner):
    """Text context, its projection to the image tower and the deep compound prompts.

    Parameter names are upstream's: ``ctx``, ``proj``, ``compound_prompts_text.<i>``,
    ``compound_prompt_projections.<i>``. ``ctx`` and ``proj`` take CLIP's dtype and the
    compound prompts and projections float32, as upstream (fp16 CLIP: the deep prompts are
    cast to fp16 where they enter a block).
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
        **kwargs,
    ) -> None:
        if csc:
            raise ValueError(
                "MaPLe has one context shared by all classes (its image prompts are projected from it); "
                "set TRAINER.MAPLE.CSC False"
            )
        image_encoder = ImageEncoder(clip_model.visual)  # a ResNet CLIP fails here, naming the fix
        text_blocks, vision_blocks = len(clip_model.transformer.resblocks), image_encoder.n_blocks
        if not 1 <= prompt_depth <= min(text_blocks, vision_blocks):
            raise ValueError(
                f"TRAINER.MAPLE.PROMPT_DEPTH={prompt_depth}, but this CLIP has {text_blocks} text and "
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
