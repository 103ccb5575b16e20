"""TCP (Yao et al., CVPR 2024): textual-based class-aware prompt tuning.

KgCoOp plus class-aware tokens. The prompt of class ``c`` is the dataset's template with
its leading words replaced by ``N_CTX`` learnable context vectors
(``[SOS] [ctx_1 .. ctx_M] name, a type of pet. [EOS]``). TKE, the textual knowledge
embedding, maps the class's normalised zero-shot text feature ``t_c^zs`` (CLIP with a
hand-crafted template) to ``M`` class tokens: ``meta_net = Linear(D, D/4) - QuickGELU -
Linear(D/4, M * width)``. Before text block ``INSERT_LAYER`` the prompt positions become
``W * class_tokens + (1 - W) * current``; blocks before it see the shared context only.
Loss = CE + KG_WEIGHT * (1 - mean_c cos(t_c, t_c^zs)) (KgCoOp's term, ``t_c^zs`` as knowledge).
New classes get their own class tokens from their own zero-shot features.

Upstream: htyao89/Textual-based_Class-aware_prompt_tuning ``trainers/tcp.py``,
``trainers/clip_text/model.py``. Differences (docs/upstream-differences.md, "TCP"): a
``TRAINER.TCP`` node (upstream reads ``TRAINER.COOP.*``, still honoured); ``W`` is used
(upstream overwrites it with 1.0) and the loss weight and insertion block are keys
(upstream hard-codes 8.0 and block 8); the context length cannot misalign the template;
widths come from the loaded CLIP; one CLIP, one precision; ``amp`` and ``CSC`` work.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Optional, Sequence

import torch
from torch import nn

from dassl.config import CfgNode
from dassl.engine import TRAINER_REGISTRY

from .common.openai_clip import clip
from .common.prompt_learner import PromptLearner
from .common.templates import CUSTOM_TEMPLATES_KG, template_for
from .common.text_encoder import BlendedPrompt, DeepPrompts, TextEncoder, text_feature_width
from .config import prompt_config_node, register_config
from .coop import coop_config
from .kgcoop import KgCoOp, KgCoOpCLIP

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

#: The keys upstream TCP reads from ``TRAINER.COOP`` (its scripts pass them there).
UPSTREAM_KEYS = ("N_CTX", "CTX_INIT", "CSC", "CLASS_TOKEN_POSITION", "PREC", "W")


@register_config
def tcp_config(cfg) -> None:
    # Upstream's script values (N_CTX 4, random init, CSC False, end) and config (fp16).
    cfg.TRAINER.TCP = prompt_config_node(n_ctx=4, ctx_init="", prec="fp16")
    cfg.TRAINER.TCP.W = 1.0  # weight of the class-aware tokens in the mix at INSERT_LAYER
    cfg.TRAINER.TCP.KG_WEIGHT = 8.0  # weight of the knowledge-guidance term of the loss
    cfg.TRAINER.TCP.INSERT_LAYER = 8  # text block whose input receives the class-aware tokens


def upstream_overrides(cfg) -> Dict[str, Any]:
    """The ``TRAINER.COOP.<key>`` values an upstream TCP script or YAML set: those that differ
    from CoOp's defaults (a value equal to the default cannot be told apart from none)."""
    coop = cfg.TRAINER.get("COOP")
    if coop is None:
        return {}
    defaults = CfgNode()
    defaults.TRAINER = CfgNode()
    coop_config(defaults)
    return {key: coop[key] for key in UPSTREAM_KEYS if key in coop and coop[key] != defaults.TRAINER.COOP[key]}


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


@TRAINER_REGISTRY.register()
class TCP(KgCoOp):
    """KgCoOp's loss (``compute_loss``) on TCP's class-aware prompts."""

    CFG_NODE = "TCP"
    PROMPT_LEARNER = TCPPromptLearner

    @property
    def method_cfg(self) -> CfgNode:
        """``TRAINER.TCP`` with the upstream spellings ``TRAINER.COOP.<key>`` applied on top."""
        node = getattr(self, "_method_cfg", None)
        if node is None:
            node = self.cfg.TRAINER.TCP.clone()
            node.defrost()
            node.update(upstream_overrides(self.cfg))
            node.freeze()
            self._method_cfg = node
        return node

    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        for key, value in upstream_overrides(cfg).items():
            print(f"TRAINER.COOP.{key} = {value!r} (upstream spelling) overrides TRAINER.TCP.{key}")
        node = self.method_cfg
        # KgCoOp.compute_loss weighs the knowledge-guidance term by self.w.
        self.w = float(node.KG_WEIGHT)
        print(f"Class-aware tokens enter text block {node.INSERT_LAYER} with weight W = {node.W}; "
              f"knowledge-guidance weight KG_WEIGHT = {self.w}")

        learner = self.build_prompt_learner(
            classnames, clip_model,
            template=PROMPT_TEMPLATES.get(cfg.DATASET.NAME, DEFAULT_PROMPT_TEMPLATE),
            insert_layer=node.INSERT_LAYER, fusion_weight=node.W,
        )
        template = template_for(cfg.DATASET.NAME, KNOWLEDGE_TEMPLATES)
        text_features = self.hand_crafted_features(TextEncoder(clip_model), classnames, [template])
        learner.set_class_knowledge(text_features)
        return KgCoOpCLIP(clip_model, learner, text_features)
