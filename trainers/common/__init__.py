"""CLIP pieces written once and composed by every trainer.

| module | what |
|---|---|
| ``clip_loader`` | CLIP by name (cache/download) or checkpoint path; ``load_clip_to_cpu(cfg)`` |
| ``precision`` | PREC fp16/fp32/amp/bf16 -> dtypes, autocast, grad scaler (fp32 on CPU) |
| ``text_encoder`` | ``TextEncoder`` (runs only up to the last EOT), ``class_text_features`` |
| ``prompt_learner`` | ``PromptLearner`` (generic/CSC ctx, CTX_INIT, class-token position) |
| ``templates`` | ``CUSTOM_TEMPLATES``, ``CUSTOM_TEMPLATES_KG``, ``IMAGENET_TEMPLATES_SELECT`` |
| ``model`` | ``CLIPClassifier``, ``FixedTextCLIP``, ``PromptCLIP``; ``encode_image(image, normalize=True)`` |
| ``feature_cache`` | ``attach_feature_server``: the engine's feature server (``dassl/features``) on a frozen image tower |
| ``cache_identity`` | where caches live; what identifies a backbone and a computation of image features |
| ``trainer`` | ``PromptTrainer``, the shared trainer base (imports the engine) |

``trainer`` is not imported here so that the CLIP pieces work without the engine.
"""
from .clip_loader import clip_cache_dir, load_clip, load_clip_to_cpu, resolve_clip_checkpoint
from .model import CLIPClassifier, FixedTextCLIP, PromptCLIP
from .precision import Precision, resolve_precision
from .prompt_learner import PromptLearner, bpe_length, init_context
from .templates import CUSTOM_TEMPLATES, CUSTOM_TEMPLATES_KG, IMAGENET_TEMPLATES_SELECT, template_for
from .text_encoder import TextEncoder, class_text_features, tokenize

__all__ = [
    "clip_cache_dir",
    "load_clip",
    "load_clip_to_cpu",
    "resolve_clip_checkpoint",
    "CLIPClassifier",
    "FixedTextCLIP",
    "PromptCLIP",
    "Precision",
    "resolve_precision",
    "PromptLearner",
    "bpe_length",
    "init_context",
    "CUSTOM_TEMPLATES",
    "CUSTOM_TEMPLATES_KG",
    "IMAGENET_TEMPLATES_SELECT",
    "template_for",
    "TextEncoder",
    "class_text_features",
    "tokenize",
]
