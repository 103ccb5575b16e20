"""Zero-shot CLIP: class features from hand-crafted templates, computed once at build time.

``ZeroshotCLIP`` uses the dataset's template (``CUSTOM_TEMPLATES``);
``ZeroshotCLIP2`` ensembles ``IMAGENET_TEMPLATES_SELECT`` (+ the dataset template
unless ImageNet). Nothing trains: the scripts run ``--eval-only``; ``train.py``
without it runs no epoch and evaluates the same way (``PromptTrainer.train``). They read
``TRAINER.COOP.PREC``, since they run with the CoOp configs.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

from torch import nn

from dassl.engine import TRAINER_REGISTRY

from .common.model import FixedTextCLIP
from .common.templates import CUSTOM_TEMPLATES, IMAGENET_TEMPLATES_SELECT, template_for
from .common.text_encoder import TextEncoder
from .common.trainer import PromptTrainer


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(PromptTrainer):
    CFG_NODE = "COOP"

    def templates(self, dataset_name: str) -> List[str]:
        return [template_for(dataset_name, CUSTOM_TEMPLATES)]

    def build_custom_model(self, cfg, classnames: Sequence[str], clip_model: nn.Module) -> nn.Module:
        templates = self.templates(cfg.DATASET.NAME)
        print(f"Prompt templates: {templates}")
        features = self.hand_crafted_features(TextEncoder(clip_model), classnames, templates)
        return FixedTextCLIP(clip_model, features)

    def trainable_modules(self) -> Dict[str, nn.Module]:
        return {}


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """Prompt ensembling over ``IMAGENET_TEMPLATES_SELECT``."""

    def templates(self, dataset_name: str) -> List[str]:
        templates = list(IMAGENET_TEMPLATES_SELECT)  # a copy: the module list stays as published
        if dataset_name != "ImageNet":
            templates.append(template_for(dataset_name, CUSTOM_TEMPLATES))
        return templates
