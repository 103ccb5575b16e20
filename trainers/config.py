"""Trainer config nodes: each method registers a function that adds its ``TRAINER.<X>`` node.

    @register_config
    def mymethod_config(cfg):
        cfg.TRAINER.MYMETHOD = prompt_config_node(n_ctx=4, ctx_init="a photo of a")
        cfg.TRAINER.MYMETHOD.MY_WEIGHT = 1.0

``extend_cfg(cfg)`` (called by ``train.py`` after ``get_cfg_default()``) imports every
trainer module, so all registered nodes exist before the YAMLs are merged.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping

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


def default_cfg() -> CfgNode:
    """The engine defaults with every registered node: a config before any YAML or option."""
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    extend_cfg(cfg)
    return cfg


_MISSING = object()


def _lookup(cfg: CfgNode, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, CfgNode) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _assign(cfg: CfgNode, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[leaf] = value


def resolve_config_aliases(cfg: CfgNode, node_name: str, aliases: Mapping[str, str]) -> Dict[str, str]:
    """Write the upstream spellings a config sets into the method's own node, in place.

    ``aliases`` maps a key of ``TRAINER.<node_name>`` (dots for sub-nodes) to the full key of
    its other spelling, e.g. ``{"N_CTX": "TRAINER.COOP.N_CTX", "LAMBDA": "LOSS.LAMBDA"}``
    (a trainer's ``CONFIG_ALIASES``). A key counts as set when its value differs from its
    registered default (``default_cfg``): yacs cannot tell a value written equal to the default
    from none. An alias that is set overwrites the own key; when both are set, to different
    values, that is a ``ValueError`` naming both. Returns ``{own key: the full key its value
    came from}`` for every key of the aliases (its own full key where no alias applied).
    """
    defaults = default_cfg()
    sources: Dict[str, str] = {}
    changes: Dict[str, Any] = {}
    for own, alias in aliases.items():
        own_full = f"TRAINER.{node_name}.{own}"
        own_value = _lookup(cfg, own_full)
        if own_value is _MISSING:
            raise KeyError(f"CONFIG_ALIASES of TRAINER.{node_name} names {own_full}, which the config does not define")
        sources[own] = own_full
        alias_value = _lookup(cfg, alias)
        if alias_value is _MISSING or alias_value == _lookup(defaults, alias):
            continue  # the alias's node is not defined, or the alias is not set
        own_default = _lookup(defaults, own_full)
        if own_value != own_default and own_value != alias_value:
            raise ValueError(
                f"{alias}={alias_value!r} and {own_full}={own_value!r} are two spellings of one setting "
                f"(upstream's and this repository's), set to different values; set only one of them"
            )
        changes[own_full] = alias_value
        sources[own] = alias
    if changes:
        frozen = cfg.is_frozen()
        cfg.defrost()
        for key, value in changes.items():
            _assign(cfg, key, value)
        if frozen:
            cfg.freeze()
    return sources


__all__ = ["register_config", "prompt_config_node", "extend_cfg", "default_cfg", "resolve_config_aliases"]
