"""Running averages for the training log (upstream ``AverageMeter`` / ``MetricMeter``)."""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Union

import torch

__all__ = ["AverageMeter", "MetricMeter"]


class AverageMeter:
    """Current value and running average (``ema=True``: exponential moving average)."""

    def __init__(self, ema: bool = False) -> None:
        self.ema = ema
        self.reset()

    def reset(self) -> None:
        self.val = 0.0
        self.avg = 0.0
        self.sum = 0.0
        self.count = 0

    def update(self, val: Union[float, torch.Tensor], n: int = 1) -> None:
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        if self.ema:
            self.avg = self.avg * 0.9 + self.val * 0.1
        else:
            self.avg = self.sum / self.count


class MetricMeter:
    """A group of named ``AverageMeter``; ``str()`` is ``name val (avg)`` joined by spaces."""

    def __init__(self, delimiter: str = " ") -> None:
        self.meters: Dict[str, AverageMeter] = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict: Dict[str, Union[float, torch.Tensor]]) -> None:
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError("MetricMeter.update() expects a dict of floats, e.g. {'loss': 0.3, 'acc': 90.0}")
        for k, v in input_dict.items():
            self.meters[k].update(v)

    def __str__(self) -> str:
        return self.delimiter.join(f"{name} {m.val:.4f} ({m.avg:.4f})" for name, m in self.meters.items())
