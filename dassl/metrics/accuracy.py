"""Top-k accuracy (upstream Dassl's ``dassl/metrics/accuracy.py``)."""
from __future__ import annotations

from typing import List, Sequence, Union

import torch

__all__ = ["compute_accuracy"]


def compute_accuracy(
    output: Union[torch.Tensor, Sequence[torch.Tensor]], target: torch.Tensor, topk: Sequence[int] = (1,)
) -> List[torch.Tensor]:
    """Top-k accuracies in percent, one 1-element tensor per ``k``.

    ``output`` is ``(batch, num_classes)`` logits (a tuple/list: its first item).
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    maxk = max(topk)
    batch_size = target.size(0)
    _, pred = output.topk(maxk, 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
    return [correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / batch_size) for k in topk]
