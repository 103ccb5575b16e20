"""Independent vision-language deep prompts (IVLP's prompts; also PromptSRC's and SemPT's
``promptsrc`` label branch), from muzairkhattak/multimodal-prompt-learning
``trainers/independentVL.py`` and the IVLP blocks of its ``clip/model.py``.

Text tower: ``n_ctx_text`` context vectors after SOS (the first ``n_ctx_text`` tokens of
``ctx_init`` learn, the rest of its words stay frozen text; more than 4 tokens start random),
replaced in blocks ``1 .. depth_text-1`` by fresh vectors. Image tower (if ``depth_vision > 0``):
``n_ctx_vision`` tokens appended after the patch tokens, replaced in blocks
``1 .. depth_vision-1``. ``translate_upstream_state_dict`` maps upstream model-zoo keys:

| upstream key | here (in ``VLPromptLearner``) |
|---|---|
| ``prompt_learner.ctx`` | ``ctx`` |
| ``text_encoder.transformer.resblocks.<i>.VPT_shallow`` | ``deep_text_ctx.<i>`` |
| ``image_encoder.VPT`` | ``visual_ctx`` |
| ``image_encoder.transformer.resblocks.<i>.VPT_shallow`` | ``deep_visual_ctx.<i>`` |
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from dassl.config import CfgNode

from ..common.image_encoder import ImageEncoder
from ..common.prompt_learner import PromptLearner, init_context
from ..common.text_encoder import DeepPrompts

#: The checkpoint folder of IVLP and PromptSRC (upstream's ``register_model`` name).
CHECKPOINT_NAME = "VLPromptLearner"
#: Upstream initialises the text context from CTX_INIT only for contexts this short
#: (``independentVL.py``: ``if ctx_init and n_ctx <= 4``); longer ones start random.
MAX_INIT_TOKENS = 4
#: Standard deviation of the random prompt init (upstream: ``nn.init.normal_(std=0.02)``).
PROMPT_INIT_STD = 0.02


def vl_prompt_config_node(
    n_ctx_text: int,
    n_ctx_vision: int,
    depth_text: int,
    depth_vision: int,
    ctx_init: str = "a photo of a",
    prec: str = "fp16",
) -> CfgNode:
    """The keys of upstream's ``TRAINER.IVLP`` / ``TRAINER.PROMPTSRC`` nodes."""
    node = CfgNode()
    node.N_CTX_TEXT = n_ctx_text  # context vectors of the text tower (per prompted block)
    node.N_CTX_VISION = n_ctx_vision  # prompt tokens of the image tower (per prompted block)
    node.CTX_INIT = ctx_init  # initialisation words of the text context (used if N_CTX_TEXT <= 4)
    node.PREC = prec  # fp16, fp32, amp or bf16 (GPU); the CPU always runs fp32
    node.PROMPT_DEPTH_TEXT = depth_text  # prompted text blocks, >= 1 (1: the input only)
    node.PROMPT_DEPTH_VISION = depth_vision  # prompted image blocks, >= 0 (0: no visual prompts)
    return node


def _random_prompts(depth: int, n_tokens: int, width: int) -> nn.ParameterDict:
    """One ``(n_tokens, width)`` float32 prompt per block ``1 .. depth-1``, keyed by the block
    index (float32 as upstream, whose ``convert_weights`` leaves these parameters alone)."""
    return nn.ParameterDict({
        str(block): nn.Parameter(torch.randn(n_tokens, width) * PROMPT_INIT_STD) for block in range(1, depth)
    })


class VLPromptLearner(PromptLearner):
    """Independent deep prompts for the text and the image tower (IVLP, PromptSRC).

    Parameters: ``ctx`` (text input context, in CLIP's dtype as upstream), ``deep_text_ctx[i]``
    for text blocks ``i = 1 .. depth_text-1``; ``visual_ctx`` and ``deep_visual_ctx[i]`` for
    image blocks ``1 .. depth_vision-1`` when the image tower is prompted.
    ``config_prefix`` names the config node in error messages.
    """

    def __init__(
        self,
        classnames: Sequence[str],
        clip_model: nn.Module,
        n_ctx_text: int = 2,
        n_ctx_vision: int = 2,
        depth_text: int = 9,
        depth_vision: int = 9,
        ctx_init: str = "a photo of a",
        config_prefix: str = "TRAINER.IVLP",
        verbose: bool = True,
    ) -> None:
        text_blocks = len(clip_model.transformer.resblocks)
        if not 1 <= depth_text <= text_blocks:
            raise ValueError(
                f"{config_prefix}.PROMPT_DEPTH_TEXT={depth_text}: the text prompt depth must be between 1 (the "
                f"input prompt only) and the {text_blocks} blocks of this CLIP's text tower"
            )
        if n_ctx_text < 1:
            raise ValueError(f"{config_prefix}.N_CTX_TEXT={n_ctx_text}: the text context needs at least 1 vector")
        if depth_vision < 0 or n_ctx_vision < 0:
            raise ValueError(
                f"{config_prefix}.PROMPT_DEPTH_VISION={depth_vision}, N_CTX_VISION={n_ctx_vision}: "
                "both must be >= 0 (0: no visual prompts)"
            )
        prompts_image = depth_vision > 0 and n_ctx_vision > 0
        if prompts_image:
            image_encoder = ImageEncoder(clip_model.visual)  # a ResNet CLIP fails here, naming the fix
            if depth_vision > image_encoder.n_blocks:
                raise ValueError(
                    f"{config_prefix}.PROMPT_DEPTH_VISION={depth_vision}: at most the {image_encoder.n_blocks} "
                    "blocks of this CLIP's image tower"
                )
        super().__init__(classnames, clip_model, n_ctx=n_ctx_text, ctx_init=ctx_init, keep_n_ctx=True, verbose=verbose)
        self.depth_text = depth_text
        self.depth_vision = depth_vision if prompts_image else 0
        self.deep_text_ctx = _random_prompts(depth_text, n_ctx_text, self.ctx.shape[-1])
        if prompts_image:
            vision_width = image_encoder.width
            self.visual_ctx = nn.Parameter(torch.randn(n_ctx_vision, vision_width) * PROMPT_INIT_STD)
            self.deep_visual_ctx = _random_prompts(depth_vision, n_ctx_vision, vision_width)
        else:
            self.register_parameter("visual_ctx", None)
            self.deep_visual_ctx = nn.ParameterDict()
        # Read by PromptCLIP: image features depend on the prompts only if the tower is prompted.
        self.prompts_image_tower = prompts_image
        if verbose:
            print(f"Independent V-L prompts: text {n_ctx_text} tokens x {depth_text} blocks, "
                  f"image {n_ctx_vision if prompts_image else 0} tokens x {self.depth_vision} blocks")

    def initial_context(
        self, clip_model: nn.Module, n_ctx: int, ctx_init: str, n_cls: Optional[int], keep_n_ctx: bool
    ) -> Tuple[torch.Tensor, str]:
        if n_ctx > MAX_INIT_TOKENS:
            ctx_init = ""
        return init_context(clip_model, n_ctx, ctx_init, n_cls, keep_n_ctx)

    @staticmethod
    def _per_block(deep: nn.ParameterDict, depth: int) -> Optional[DeepPrompts]:
        """``[None, prompt of block 1, ...]``: block 0's prompts are the input ones."""
        if depth <= 1:
            return None
        return [None, *(deep[str(block)] for block in range(1, depth))]

    def text_deep_prompts(self) -> Optional[DeepPrompts]:
        return self._per_block(self.deep_text_ctx, self.depth_text)

    def visual_prompts(self) -> Optional[torch.Tensor]:
        return self.visual_ctx

    def visual_deep_prompts(self) -> Optional[DeepPrompts]:
        return self._per_block(self.deep_visual_ctx, self.depth_vision)


# Upstream (CustomCLIP registered whole) key -> ours, for the prompt tensors; every other
# upstream key is frozen CLIP (both towers, PromptSRC's ZS_image_encoder) or a class buffer.
_UPSTREAM_KEYS = (
    (re.compile(r"prompt_learner\.ctx"), "ctx"),
    (re.compile(r"text_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow"), r"deep_text_ctx.\1"),
    (re.compile(r"image_encoder\.VPT"), "visual_ctx"),
    (re.compile(r"image_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow"), r"deep_visual_ctx.\1"),
)
_UPSTREAM_PREFIXES = ("prompt_learner.", "text_encoder.", "image_encoder.", "logit_scale")


def translate_upstream_state_dict(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """An upstream IVLP/PromptSRC checkpoint's state dict -> this learner's keys.

    Keys already in this repository's form are returned unchanged. Frozen CLIP weights and
    class buffers are dropped, and so are the empty prompts upstream creates for
    ``N_CTX_VISION 0`` (this learner has none).
    """
    keys = [key[len("module."):] if key.startswith("module.") else key for key in state_dict]  # DataParallel
    if not any(key.startswith(_UPSTREAM_PREFIXES) for key in keys):
        return state_dict
    translated: Dict[str, torch.Tensor] = {}
    dropped = 0
    for key, value in zip(keys, state_dict.values()):
        for pattern, ours in _UPSTREAM_KEYS:
            if pattern.fullmatch(key):
                if value.numel():
                    translated[pattern.sub(ours, key)] = value
                break
        else:
            dropped += 1
    print(f"Upstream checkpoint: {len(translated)} prompt tensors kept, {dropped} frozen CLIP / class tensors dropped")
    return translated


def build_vl_prompt_learner(
    classnames: Sequence[str],
    clip_model: nn.Module,
    node: CfgNode,
    config_prefix: str,
    learner_class: Optional[type] = None,
    **overrides,
) -> VLPromptLearner:
    """A ``VLPromptLearner`` (or ``learner_class``) from a node with the IVLP keys
    (``TRAINER.IVLP``, ``TRAINER.PROMPTSRC``; ``config_prefix`` names it in errors)."""
    kwargs = dict(
        n_ctx_text=node.N_CTX_TEXT,
        n_ctx_vision=node.N_CTX_VISION,
        depth_text=node.PROMPT_DEPTH_TEXT,
        depth_vision=node.PROMPT_DEPTH_VISION,
        ctx_init=node.CTX_INIT,
        config_prefix=config_prefix,
    )
    kwargs.update(overrides)
    return (learner_class or VLPromptLearner)(classnames, clip_model, **kwargs)


__all__: List[str] = [
    "CHECKPOINT_NAME",
    "MAX_INIT_TOKENS",
    "PROMPT_INIT_STD",
    "VLPromptLearner",
    "build_vl_prompt_learner",
    "translate_upstream_state_dict",
    "vl_prompt_config_node",
]
