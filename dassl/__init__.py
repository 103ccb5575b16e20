"""A small Dassl-compatible engine for prompt learning on CLIP.

It offers the API surface of upstream Dassl (KaiyangZhou/Dassl.pytorch) that the
CoOp family of trainers uses, so that a trainer written for upstream runs unchanged.
"""
__version__ = "0.6.3+sempt"
