"""Config: ``get_cfg_default()`` returns a fresh copy of the engine defaults."""
from .defaults import _C as cfg_default
from .node import CfgNode, ConfigError


def get_cfg_default() -> CfgNode:
    """A mutable clone of the defaults (upstream Dassl's ``dassl/config/defaults.py`` + the project keys)."""
    return cfg_default.clone()


__all__ = ["get_cfg_default", "CfgNode", "ConfigError"]
