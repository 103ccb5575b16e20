"""Trainer config nodes: each method registers a function that adds its ``TRAINER.<X>`` node.

    @register_config
    def mymethod_config(cfg):
        cfg.TRAINER.MYMETHOD = prompt_config_node(n_ctx=4, ctx_init="a photo of a")
        cfg.TRAINER.MYMETHOD.MY_WEIGHT = 1.0

``extend_cfg(cfg)`` (called by ``train.py`` after ``get_cfg_default()``) imports every
trainer module, so all registered nodes exist before the YAMLs are merged.
"""
from __future__ import annotations

from typing import Callable, List

from dassl.config import CfgNode

ConfigFn = Callable[[object], None]
_CONFIG_FNS: List[ConfigFn] = []


def register_config(fn: ConfigFn) -> ConfigFn:
    """Decorator: ``fn(cfg)`` adds config keys; applied by :func:`extend_cfg`."""
    if fn not in _CONFIG_FNS:
        _CONFIG_FNS.append(fn)
    return fn


def prompt_config_node(
    n_ctx: int = 16,
    ctx_init: str = "",
    csc: bool = False,
    class_token_position: str = "end",
    prec: str = "fp16",
) -> CfgNode:
    """A method's node with the keys every prompt learner reads (defaults as upstream CoOp)."""
    node = CfgNode()
    node.N_CTX = n_ctx  # number of context vectors (CoOp: overridden by CTX_INIT's token count)
    node.CTX_INIT = ctx_init  # initialisation words, e.g. "a photo of a"
    node.CSC = csc  # class-specific context
    node.CLASS_TOKEN_POSITION = class_token_position  # end, middle or front
    node.PREC = prec  # fp16, fp32, amp or bf16 (GPU); the CPU always runs fp32
    return node


@register_config
def model_memory_config(cfg) -> None:
    # Recompute the encoders' activations in the backward pass instead of keeping them:
    # memory bounded on large label spaces (ImageNet) for methods that train through the
    # towers, at the cost of a second forward. Results are the same.
    cfg.MODEL.ACT_CHECKPOINT = False


@register_config
def feature_cache_config(cfg) -> None:
    # Exact, shared caches of frozen image features (docs/feature-cache.md): used by every
    # method whose image encoder is frozen; changes no number (ENABLED False computes the
    # same features without reading or writing the cache).
    cfg.FEATURE_CACHE = CfgNode()
    cfg.FEATURE_CACHE.ENABLED = True
    cfg.FEATURE_CACHE.DIR = ""  # "" = $SEMPT_CACHE_DIR/features or ~/.cache/sempt/features
    cfg.FEATURE_CACHE.MAX_SIZE_GB = 20.0  # least recently used features go beyond it; <= 0: no limit
    # Images per image-encoder call: features depend on it in the last bits, so it is part
    # of the cache key. Larger is faster on a GPU; the last chunk of a pass is padded.
    cfg.FEATURE_CACHE.CHUNK = 32


def extend_cfg(cfg) -> None:
    """Add every registered trainer node to ``cfg`` (in registration order)."""
    import trainers

    trainers.register_all()
    for fn in _CONFIG_FNS:
        fn(cfg)


__all__ = ["register_config", "prompt_config_node", "extend_cfg"]
