"""Trainer config nodes: each method registers a function that adds its ``TRAINER.<X>`` node.

    @register_config
    def _mymethod(cfg):
        cfg.TRAINER.MYMETHOD = CfgNode()
        cfg.TRAINER.MYMETHOD.PREC = "fp16"

``extend_cfg(cfg)`` (called by ``train.py`` after ``get_cfg_default()``) imports every
trainer module, so all registered nodes exist before the YAMLs are merged.
"""
from __future__ import annotations

from typing import Callable, List

ConfigFn = Callable[[object], None]
_CONFIG_FNS: List[ConfigFn] = []


def register_config(fn: ConfigFn) -> ConfigFn:
    """Decorator: ``fn(cfg)`` adds config keys; applied by :func:`extend_cfg`."""
    if fn not in _CONFIG_FNS:
        _CONFIG_FNS.append(fn)
    return fn


def extend_cfg(cfg) -> None:
    """Add every registered trainer node to ``cfg`` (in registration order)."""
    import trainers  # noqa: F401  (importing the package registers every trainer and config)

    for fn in _CONFIG_FNS:
        fn(cfg)


__all__ = ["register_config", "extend_cfg"]
