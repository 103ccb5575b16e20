"""CuPL: customized prompts via language models (Pratt et al., ICCV 2023; upstream sarahpratt/CuPL).

Zero-shot: the class vector is ``w_c = normalize(mean_s normalize(E_T(s)))`` over the
class's LLM sentences, the score ``<f̂(x), w_c>`` (upstream ``classify_imagenet.py``,
``zeroshot_classifier_gpt``), here multiplied by CLIP's logit scale (argmax unchanged).
The sentences are this repository's attribute descriptions by default, or an upstream
prompt file (``ATTRIBUTE_FILE`` pointing to e.g. ``all_prompts/full_prompts/texture_prompts_full.json``),
used as they are. Differences from upstream: docs/upstream-differences.md, "CuPL". Nothing trains.
"""
from __future__ import annotations

from dassl.engine import TRAINER_REGISTRY

from .config import register_config
from .parts.description_classifier import DescriptionClassifier, description_config_node


@register_config
def cupl_config(cfg) -> None:
    cfg.TRAINER.CUPL = description_config_node(prec="fp16")  # upstream: clip.load, fp16 on CUDA


@TRAINER_REGISTRY.register()
class CuPL(DescriptionClassifier):
    CFG_NODE = "CUPL"
    RENORMALIZE = True
