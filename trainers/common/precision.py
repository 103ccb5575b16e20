"""Numeric precision of a CLIP prompt trainer, decided in one place.

``TRAINER.<X>.PREC`` means, as upstream CoOp:

* ``fp16``: CLIP weights and the learnable parameters are kept in half precision
  (what ``clip.build_model`` produces); plain SGD on fp16 parameters.
* ``fp32``: everything in float32.
* ``amp``: float32 weights, forward under ``torch.autocast(float16)``, loss scaled
  with ``torch.amp.GradScaler``.
* ``bf16``: float32 weights, forward under ``torch.autocast(bfloat16)``; no scaler
  (bfloat16 has the float32 exponent range).

On CPU every mode runs in float32 by default: half-precision CPU kernels are slow, and
float32 makes CPU runs a faithful reference (docs/upstream-differences.md, "CPU and
precision"). ``MODEL.PREC_ON_CPU True`` applies ``PREC`` on the CPU exactly as on a GPU
(fp16 weights, ``torch.autocast("cpu", ...)``, ``torch.amp.GradScaler("cpu")``): to test
the half-precision paths, or to check a config before a GPU job.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager, Optional

import torch
from torch import nn

from .openai_clip import clip

PRECISIONS = ("fp16", "fp32", "amp", "bf16")


@dataclass(frozen=True)
class Precision:
    """The effective precision on one device."""

    requested: str
    name: str  # effective mode: ``requested`` on GPU (or with PREC_ON_CPU), else "fp32" on CPU
    device_type: str
    weight_dtype: torch.dtype  # dtype of the CLIP weights and of new learnable tensors
    autocast_dtype: Optional[torch.dtype]  # None: no autocast

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the forward pass computes in (the autocast dtype, else the weights'):
        what identifies the precision of cached encoder outputs."""
        return self.autocast_dtype or self.weight_dtype

    @property
    def uses_grad_scaler(self) -> bool:
        return self.autocast_dtype is torch.float16

    def autocast(self) -> ContextManager:
        """The context every forward pass runs in (a no-op unless amp/bf16)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)

    def exact_autocast(self) -> ContextManager:
        """Autocast as this precision says whatever the surrounding code set: a computation
        whose result must not depend on where it is called from (cached image features)."""
        if self.autocast_dtype is None:
            return torch.autocast(self.device_type, enabled=False)
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)

    def grad_scaler(self) -> Optional[torch.amp.GradScaler]:
        return torch.amp.GradScaler(self.device_type) if self.uses_grad_scaler else None

    def apply(self, clip_model: nn.Module) -> nn.Module:
        """Cast a CLIP model (fp16 weights as built by ``clip.build_model``) to ``weight_dtype``.

        Only the fp16 mode keeps the mixed fp16/fp32 layout of ``build_model``
        (LayerNorm and embeddings stay fp32); other modes make everything fp32.
        """
        if self.weight_dtype is torch.float32:
            clip_model.float()
        elif self.weight_dtype is torch.float16 and clip_model.dtype is not torch.float16:
            # An open_clip model is built in float32: give it build_model's fp16 layout.
            clip.model.convert_weights(clip_model)
        return clip_model

    def cache_variant(self) -> str:
        """What, besides the compute dtype, a cached output depends on: the mode (fp16 weights
        vs autocast) and the device's kernels."""
        return f"{self.name}-{self.device_type}"

    def describe(self) -> str:
        if self.requested != self.name:
            return (f"Precision: {self.name} on {self.device_type} (PREC={self.requested} applies "
                    "on GPU only; MODEL.PREC_ON_CPU True applies it here)")
        if self.device_type != "cuda" and self.name != "fp32":
            return f"Precision: {self.name} on {self.device_type} (MODEL.PREC_ON_CPU: as on a GPU)"
        return f"Precision: {self.name} on {self.device_type}"


def resolve_precision(prec: str, device: torch.device | str, on_cpu: bool = False) -> Precision:
    """Map a ``PREC`` config value and a device to the :class:`Precision` to run with.

    Off CUDA the result is float32 unless ``on_cpu`` (``MODEL.PREC_ON_CPU``) asks for
    ``prec`` as on a GPU.
    """
    prec = str(prec).lower()
    if prec not in PRECISIONS:
        raise ValueError(
            f"Unknown precision PREC={prec!r}; set TRAINER.<NAME>.PREC to one of {list(PRECISIONS)}"
        )
    device_type = torch.device(device).type
    if device_type != "cuda" and not on_cpu:
        return Precision(prec, "fp32", device_type, torch.float32, None)
    if prec == "fp16":
        return Precision(prec, prec, device_type, torch.float16, None)
    if prec == "amp":
        return Precision(prec, prec, device_type, torch.float32, torch.float16)
    if prec == "bf16":
        return Precision(prec, prec, device_type, torch.float32, torch.bfloat16)
    return Precision(prec, prec, device_type, torch.float32, None)


__all__ = ["PRECISIONS", "Precision", "resolve_precision"]
