"""Per-epoch learning-rate schedules in closed form (docs/upstream-differences.md, "Learning-rate schedule").

Upstream chained torch schedulers inside a warm-up wrapper; that breaks on recent
torch, pickles objects into checkpoints and, after a resume, drives a copy of the
optimizer (the LR freezes). Here the LR of epoch ``e`` is a pure function of ``e``
and the config, and the state is one integer, so a resumed run recomputes the
right LR. The values equal those of upstream Dassl's ``dassl/optim/lr_scheduler.py``, e.g. constant warm-up of
``W`` epochs then ``LR * (1 + cos(pi * (e - W) / MAX_EPOCH)) / 2``.
"""
from __future__ import annotations

import bisect
import math
from typing import Any, Dict, List

import torch

__all__ = ["build_lr_scheduler", "ClosedFormLRScheduler", "AVAI_SCHEDS"]

AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]
AVAI_WARMUPS = ["constant", "linear"]


class ClosedFormLRScheduler:
    """Sets each param group's LR from the epoch count; ``step()`` once per epoch.

    API-compatible with what trainers use from torch schedulers: ``step()``,
    ``get_last_lr()``, ``last_epoch``, ``state_dict()``/``load_state_dict()``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, optim_cfg) -> None:
        self.optimizer = optimizer
        self.name = optim_cfg.LR_SCHEDULER
        self.max_epoch = optim_cfg.MAX_EPOCH
        self.gamma = optim_cfg.GAMMA
        self.warmup_epoch = max(optim_cfg.WARMUP_EPOCH, 0)
        self.warmup_type = optim_cfg.WARMUP_TYPE
        self.warmup_cons_lr = optim_cfg.WARMUP_CONS_LR
        self.warmup_min_lr = optim_cfg.WARMUP_MIN_LR
        self.warmup_recount = optim_cfg.WARMUP_RECOUNT
        self.stepsize = self._parse_stepsize(optim_cfg.STEPSIZE)
        # The LR each group was built with is the base of its schedule.
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def _parse_stepsize(self, stepsize) -> Any:
        if self.name == "single_step":
            if isinstance(stepsize, (list, tuple)):
                stepsize = stepsize[-1]
            if not isinstance(stepsize, int):
                raise TypeError(f"OPTIM.STEPSIZE must be an int (or a list ending in one), got {stepsize!r}")
            return stepsize if stepsize > 0 else self.max_epoch
        if self.name == "multi_step":
            if not isinstance(stepsize, (list, tuple)) or not all(isinstance(s, int) for s in stepsize):
                raise TypeError(f"OPTIM.STEPSIZE must be a list of ints for multi_step, e.g. (30, 60), got {stepsize!r}")
            return sorted(stepsize)
        return stepsize

    def _main_lr(self, base_lr: float, t: int) -> float:
        """The LR of the main schedule ``t`` epochs after it starts."""
        if self.name == "cosine":
            return base_lr * (1 + math.cos(math.pi * t / self.max_epoch)) / 2
        if self.name == "single_step":
            return base_lr * self.gamma ** (t // self.stepsize)
        return base_lr * self.gamma ** bisect.bisect_right(self.stepsize, t)

    def lr_at(self, epoch: int) -> List[float]:
        """Per-group LR for 0-based ``epoch``."""
        w = self.warmup_epoch
        if w > 0 and epoch < w:
            if self.warmup_type == "constant":
                return [self.warmup_cons_lr for _ in self.base_lrs]
            if epoch == 0:
                return [self.warmup_min_lr for _ in self.base_lrs]
            return [base * epoch / w for base in self.base_lrs]
        t = epoch - w if self.warmup_recount else epoch
        return [self._main_lr(base, t) for base in self.base_lrs]

    def _apply(self) -> None:
        self._last_lr = self.lr_at(self.last_epoch)
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def step(self) -> None:
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self) -> List[float]:
        return list(self._last_lr)

    def state_dict(self) -> Dict[str, Any]:
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.last_epoch = int(state_dict["last_epoch"])
        self._apply()


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg) -> ClosedFormLRScheduler:
    """The ``OPTIM.LR_SCHEDULER`` schedule with optional ``OPTIM.WARMUP_*`` warm-up."""
    if optim_cfg.LR_SCHEDULER not in AVAI_SCHEDS:
        raise ValueError(f'OPTIM.LR_SCHEDULER "{optim_cfg.LR_SCHEDULER}" is not supported; choose from {AVAI_SCHEDS}')
    if optim_cfg.WARMUP_EPOCH > 0 and optim_cfg.WARMUP_TYPE not in AVAI_WARMUPS:
        raise ValueError(f'OPTIM.WARMUP_TYPE "{optim_cfg.WARMUP_TYPE}" is not supported; choose from {AVAI_WARMUPS}')
    if optim_cfg.MAX_EPOCH < 1:
        raise ValueError(f"OPTIM.MAX_EPOCH must be >= 1, got {optim_cfg.MAX_EPOCH}")
    return ClosedFormLRScheduler(optimizer, optim_cfg)
