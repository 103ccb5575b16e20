"""TCP's class-aware tokens (Yao et al., CVPR 2024; htyao89/Textual-based_Class-aware_prompt_tuning
``trainers/tcp.py``): TKE maps each class's normalised zero-shot text feature to ``n_ctx``
class tokens, mixed into the prompt positions before one text block.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from ..common.openai_clip import clip
from ..common.prompt_learner import PromptLearner
from ..common.templates import CUSTOM_TEMPLATES_KG
from ..common.text_encoder import BlendedPrompt, DeepPrompts, text_feature_width


# The prompt after its context (upstream CUSTOM_TEMPLATES of trainers/tcp.py without their
# four leading words, "X X X X" or "a photo of a", which the context vectors replace). The
# context is N_CTX vectors followed by this text, so no N_CTX can misalign the template.
PROMPT_TEMPLATES: Dict[str, str] = {
    "OxfordPets": "{}, a type of pet.",
    "OxfordFlowers": "{}, a type of flower.",
    "FGVCAircraft": "{}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "{}.",
    "StanfordCars": "{}, a type of car",  # no period, as upstream
    "Food101": "{}, a type of food.",
    "SUN397": "{}.",
    "Caltech101": "{}.",
    "UCF101": "person doing {}.",
    "ImageNet": "{}.",
    "ImageNetSketch": "{}.",
    "ImageNetV2": "{}.",
    "ImageNetA": "{}.",
    "ImageNetR": "{}.",
}
DEFAULT_PROMPT_TEMPLATE = "{}."

# TKE's input, the zero-shot features (upstream CUSTOM_TEMPLATES_ori): KgCoOp's templates
# but for two wordings.
KNOWLEDGE_TEMPLATES: Dict[str, str] = {
    **CUSTOM_TEMPLATES_KG,
    "FGVCAircraft": "a photo of an aircraft {}.",
    "Food101": "a photo of a {}, a type of food.",
}

class TCPPromptLearner(PromptLearner):
    """Context + template text, and TKE (``meta_net``) turning each class's zero-shot feature
    into the class-aware tokens handed to text block ``insert_layer``.

    The zero-shot features come from the text tower after the learner is built (computing
    them moves the tower to the training device): hand them over with
    :meth:`set_class_knowledge` before the first forward.
    """

    def __init__(
        self,
        classnames: Sequence[str],
        clip_model: nn.Module,
        template: str = DEFAULT_PROMPT_TEMPLATE,
        insert_layer: int = 8,
        fusion_weight: float = 1.0,
        **kwargs,
    ) -> None:
        self.template = template  # read by prompt_text inside PromptLearner.__init__
        super().__init__(classnames, clip_model, **kwargs)
        n_blocks = len(clip_model.transformer.resblocks)
        if not 0 <= insert_layer < n_blocks:
            raise ValueError(
                f"TRAINER.TCP.INSERT_LAYER={insert_layer}, but this CLIP's text tower has blocks 0 .. "
                f"{n_blocks - 1}; set TRAINER.TCP.INSERT_LAYER to one of them (upstream uses block 8 of "
                f"ViT-B/16's 12, two thirds of the depth: {2 * n_blocks // 3} here)"
            )
        self.insert_layer = insert_layer
        self.fusion_weight = float(fusion_weight)
        dim = text_feature_width(clip_model)  # the zero-shot features' width
        width = self.ctx.shape[-1]
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(dim, dim // 4)),
            ("gelu", clip.model.QuickGELU()),
            ("linear2", nn.Linear(dim // 4, self.n_ctx * width)),
        ])).to(self.ctx.dtype)
        # Upstream's name (prompt_learner.text_features); rebuilt for every class set, never saved.
        self.register_buffer("text_features", None, persistent=False)

    def prompt_text(self, classname: str) -> str:
        return f"{self.prompt_prefix} {self.template.format(classname)}"

    def set_class_knowledge(self, text_features: torch.Tensor) -> None:
        """The normalised zero-shot features ``(n_cls, D)`` of this learner's classes."""
        expected = (self.n_cls, self.meta_net.linear1.in_features)
        if tuple(text_features.shape) != expected:
            raise ValueError(f"class knowledge of shape {tuple(text_features.shape)}, expected {expected}")
        self.text_features = text_features.to(self.ctx.dtype)

    def class_tokens(self) -> torch.Tensor:
        """TKE: ``(n_cls, n_ctx, width)`` class-aware tokens."""
        if self.text_features is None:
            raise RuntimeError("TCPPromptLearner needs the zero-shot class features: call set_class_knowledge first")
        return self.meta_net(self.text_features).view(self.n_cls, self.n_ctx, -1)

    def text_deep_prompts(self) -> Optional[DeepPrompts]:
        tokens = self.class_tokens()
        entry = tokens if self.fusion_weight == 1.0 else BlendedPrompt(tokens, self.fusion_weight)
        return [None] * self.insert_layer + [entry]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, insert_layer={self.insert_layer}, fusion_weight={self.fusion_weight}"


__all__ = ["DEFAULT_PROMPT_TEMPLATE", "KNOWLEDGE_TEMPLATES", "PROMPT_TEMPLATES", "TCPPromptLearner"]
